"""A host client written from docs/protocol.md alone, against ``vtoken serve`` on a real pty.

Nothing here imports vtoken's protocol code or pyserial: COBS, the CRC, the frame
layout and the field encodings are written out from the document, as a hardware
team's own tool would be. If the document and the device disagree, this fails.
"""

from __future__ import annotations

import binascii
import os
import select
import struct
import termios
import time
import tty
from pathlib import Path

from tests.test_serve import SEED_HEX, make_hotp_token, start_serve
from vtoken.oath import hotp

VERSION = 0x01
INFO, PRESS = 0x01, 0x02
STATUS_OK = 0x00
TIMEOUT_S = 2.0


def cobs_encode(body: bytes) -> bytes:
    """COBS as the document's 'Encoding' paragraph describes it, then the 0x00 delimiter."""
    out, run = bytearray(), bytearray()
    for byte in body:
        if byte == 0:
            out += bytes([len(run) + 1]) + run
            run.clear()
        else:
            run.append(byte)
            if len(run) == 254:
                out += b"\xff" + run
                run.clear()
    out += bytes([len(run) + 1]) + run
    return bytes(out) + b"\x00"


def cobs_decode(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        assert code != 0 and i + code <= len(data) + (1 if code == 1 else 0)
        out += data[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def request(seq: int, command: int, payload: bytes = b"") -> bytes:
    head = struct.pack(">BHBH", VERSION, seq, command, len(payload)) + payload
    return b"\x00" + cobs_encode(head + struct.pack(">H", binascii.crc_hqx(head, 0xFFFF)))


def read_response(fd: int) -> tuple[int, int, int, bytes]:
    buf = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            buf += os.read(fd, 512)
        while b"\x00" in buf:
            frame, _, rest = bytes(buf).partition(b"\x00")
            buf = bytearray(rest)
            if frame:
                body = cobs_decode(frame)
                assert struct.unpack(">H", body[-2:])[0] == binascii.crc_hqx(body[:-2], 0xFFFF)
                version, seq, command, status, length = struct.unpack(">BHBBH", body[:7])
                assert version == VERSION and 7 + length + 2 == len(body)
                return seq, command, status, body[7 : 7 + length]
    raise AssertionError("no response")


def texts(payload: bytes, count: int) -> tuple[list[str], bytes]:
    """``count`` text fields (u8 length, then ASCII), and what follows them."""
    out = []
    for _ in range(count):
        out.append(payload[1 : 1 + payload[0]].decode("ascii"))
        payload = payload[1 + payload[0] :]
    return out, payload


def _open_pty(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def test_a_client_from_the_document_alone(tmp_path: Path) -> None:
    served = start_serve(make_hotp_token(tmp_path), "--sim")
    fd = _open_pty(served.lines["pty"])
    try:
        os.write(fd, request(0x0101, INFO))
        seq, command, status, payload = read_response(fd)
        assert (seq, command, status) == (0x0101, INFO, STATUS_OK)
        (serial, model, firmware), rest = texts(payload, 3)
        assert (serial, model) == ("1000000005", "hotp") and firmware
        kind, algorithm, digits, period, t0, counter = struct.unpack(">BBBIQQ", rest[:23])
        assert (kind, algorithm, digits, counter) == (2, 1, 6, 0)  # HOTP, HMAC-SHA-1
        for seq in (0x0102, 0x0103):
            os.write(fd, request(seq, PRESS))
            got_seq, command, status, payload = read_response(fd)
            assert (got_seq, command, status) == (seq, PRESS, STATUS_OK)
            (code,), _ = texts(payload, 1)
            assert code == hotp(bytes.fromhex(SEED_HEX), seq - 0x0102)
    finally:
        os.close(fd)
        served.stop()


HELLO = 0x07
STATUS_BUSY = 0x0C


def test_sessions_start_with_hello_as_the_document_says(tmp_path: Path) -> None:
    """Section "Sessions": session 2 repeats session 1's last PRESS (seq and bytes) after HELLO, and it presses."""
    served = start_serve(make_hotp_token(tmp_path), "--sim")
    codes = []
    try:
        for session in range(2):
            fd = _open_pty(served.lines["pty"])
            try:
                os.write(fd, request(0x29FF, HELLO))
                seq, command, status, payload = read_response(fd)
                assert (seq, command, status) == (0x29FF, HELLO, STATUS_OK)
                version, max_frame = struct.unpack(">BH", payload[:3])
                (firmware,), rest = texts(payload[3:], 1)
                assert (version, max_frame, rest) == (VERSION, 512, b"\x01") and firmware  # sim_control true
                os.write(fd, request(0x2A00, PRESS))  # byte for byte the same request in both sessions
                seq, command, status, payload = read_response(fd)
                assert (seq, command, status) == (0x2A00, PRESS, STATUS_OK)
                codes.append(texts(payload, 1)[0][0])
            finally:
                os.close(fd)
    finally:
        served.stop()
    assert codes == [hotp(bytes.fromhex(SEED_HEX), 0), hotp(bytes.fromhex(SEED_HEX), 1)]


def test_a_second_tcp_client_gets_busy_as_the_document_says(tmp_path: Path) -> None:
    import socket

    served = start_serve(make_hotp_token(tmp_path), "--sim", "--no-pty", "--tcp", "127.0.0.1:0")
    host, port = served.lines["tcp"].removeprefix("socket://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as first:
            first.sendall(request(1, HELLO))
            assert first.recv(512)
            with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as second:
                second.sendall(request(0x0C01, HELLO))
                data = b""
                while chunk := second.recv(512):  # one NAK, then the server hangs up
                    data += chunk
        body = cobs_decode(data.rstrip(b"\x00"))
        version, seq, command, status, length = struct.unpack(">BHBBH", body[:7])
        assert (seq, command, status) == (0x0C01, HELLO, STATUS_BUSY)
        assert body[7 : 7 + length] == b"device busy: another client is connected"
    finally:
        served.stop()
