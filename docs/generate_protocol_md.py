"""Generate docs/protocol.md from docs/protocol.md.in, filling in examples from a real token session.

Run from the repository root after changing the wire protocol:

    python docs/generate_protocol_md.py docs/protocol.md.in docs/protocol.md

tests/test_protocol_doc.py checks that the committed document is exactly what this produces.
"""
from __future__ import annotations
import re, sys
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from firmware_sim.device import DeviceController
from vtoken.clock import SimulatedClock, NS_PER_SECOND
from vtoken import wire
from vtoken.wire import Command, Status
from vserial.ports import busy_nak

T0 = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SEED = b"12345678901234567890"
DEVKEY = bytes(range(32))

def hexlines(label, data):
    out = []
    for i in range(0, len(data), 16):
        chunk = " ".join(f"{b:02x}" for b in data[i:i+16])
        out.append((f"{label}: " if i == 0 else " " * (len(label) + 2)) + chunk)
    return out

def block(marker, summary, body, wire_bytes):
    lines = [f"<!-- example: {marker} -->", summary, "", "```hex"]
    if body is not None:
        lines += hexlines("body", body)
    lines += hexlines("wire", wire_bytes)
    lines += ["```", ""]
    return "\n".join(lines)

def describe(obj):
    if isinstance(obj, wire.Request):
        p = obj.payload
        fields = ", ".join(f"{k}={v!r}" if k != "seed" else f"seed={v.hex()} (hex)" for k, v in vars(p).items())
        return f"seq {obj.seq}, {obj.command.name}" + (f": {fields}" if fields else ", no payload")
    r = obj
    cmd = r.command.name if r.command else "0 (unknown)"
    if r.ok:
        p = r.payload
        def show(k, v):
            if k == "masks":
                return "masks=" + " ".join(f"{m:02x}" for m in v) + " (hex)"
            return f"{k}={(v.value if hasattr(v, 'value') else v)!r}"
        fields = ", ".join(show(k, v) for k, v in vars(p).items())
        return f"seq {r.seq}, ACK to {cmd}" + (f": {fields}" if fields else ", no payload")
    return f"seq {r.seq}, NAK {r.status.name} to {cmd}: message {r.message!r}"

def fmt_summary(s):
    s = s.replace("<TokenKind.TOTP: 'totp'>", "'totp'").replace("<Algorithm.SHA1: 'sha1'>", "'sha1'")
    return "*" + s + "*"

EX = {}

def exchange(dev, seq, cmd, marker_req=None, marker_resp=None, **fields):
    wire_req = wire.encode_request(seq, cmd, **fields)
    body_req = wire.unframe(wire_req)
    wire_resp = dev.feed(wire_req)
    body_resp = wire.unframe(wire_resp)
    req = wire.decode_request(body_req); resp = wire.decode_response(body_resp)
    mr = marker_req or f"request {cmd.name}"
    ms = marker_resp or (f"response {cmd.name}" if resp.ok else f"nak {resp.status.name}")
    return (block(mr, fmt_summary("Request — " + describe(req)), body_req, wire_req),
            block(ms, fmt_summary("Response — " + describe(resp)), body_resp, wire_resp), body_req, body_resp)

clock = SimulatedClock(T0)
tok = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=DEVKEY, clock=clock)
dev = DeviceController(tok, sim_control=True)
seq = 0x0100
def nxt():
    global seq
    seq += 1
    return seq

# The session starts with HELLO (seq 0x0100); the commands below continue at 0x0101.
rq, rs, *_ = exchange(dev, seq, Command.HELLO)
EX["HELLO request"], EX["HELLO response"] = rq, rs

for cmd, fields in [
    (Command.INFO, {}), (Command.TIME_GET, {}), (Command.PRESS, {}), (Command.DISPLAY, {}), (Command.LONG_PRESS, {}),
    (Command.TIME_SET, {"device_time_ns": T0 + 60 * NS_PER_SECOND}),
    (Command.ADVANCE_TIME, {"ns": 30 * NS_PER_SECOND}),
    (Command.SET_TEMPERATURE, {"centi_celsius": -550}),
    (Command.SET_CRYSTAL_PPM, {"ppb": 20_000}),
    (Command.SET_BATTERY, {"per_mille": 80}),
    (Command.POWER_CYCLE, {}),
]:
    rq, rs, brq, brs = exchange(dev, nxt(), cmd, **fields)
    EX[f"{cmd.name} request"] = rq
    EX[f"{cmd.name} response"] = rs
    if cmd is Command.PRESS:
        EX["_press"] = (brq, brs)
    if cmd is Command.INFO:
        EX["_info"] = brs

# unlocked token for PROVISION / LOCK
clock2 = SimulatedClock(T0)
tok2 = manufacture(model=get_model("totp30"), seed=b"\x00" * 20, serial="1000000013", device_key=DEVKEY, clock=clock2, lock=False)
dev2 = DeviceController(tok2)
rq, rs, *_ = exchange(dev2, 0x0001, Command.PROVISION, serial="1000000013", model="totp30", kind="totp", algorithm="sha1",
                      digits=6, period=30, t0=0, counter=0, seed=SEED)
EX["PROVISION request"], EX["PROVISION response"] = rq, rs
rq, rs, *_ = exchange(dev2, 0x0002, Command.LOCK)
EX["LOCK request"], EX["LOCK response"] = rq, rs

# A new session whose first request repeats the previous session's last one, byte for byte (HOTP token)
clock_h = SimulatedClock(T0)
tok_h = manufacture(model=get_model("hotp"), seed=SEED, serial="1000000013", device_key=DEVKEY, clock=clock_h)
dev_h = DeviceController(tok_h)
rq, rs, *_ = exchange(dev_h, 0x2A00, Command.PRESS)
EX["S1 PRESS request"], EX["S1 PRESS response"] = rq, rs
rq, rs, *_ = exchange(dev_h, 0x29FF, Command.HELLO)
EX["S2 HELLO request"], EX["S2 HELLO response"] = rq, rs
rq, rs, *_ = exchange(dev_h, 0x2A00, Command.PRESS)
EX["S2 PRESS request"], EX["S2 PRESS response"] = rq, rs

# NAKs
def nak_from_wire(dev, title, wire_in, marker):
    out = dev.feed(wire_in)
    resp = wire.decode_response(wire.unframe(out))
    return block(f"nak {resp.status.name}", fmt_summary("Response — " + describe(resp)), wire.unframe(out), out)

def damaged(marker, summary, body):
    return block(f"bad-request {marker}", summary, body, wire.frame(body))

def fix_crc(content):
    return content + wire.crc16(content).to_bytes(2, "big")

clock3 = SimulatedClock(T0)
tok3 = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=DEVKEY, clock=clock3)
dev3 = DeviceController(tok3, sim_control=True)
good = wire.encode_request_body(0x0201, Command.PRESS)
# BAD_FRAME
bad_wire = bytes([0x05, 0x01, 0x00])
EX["bad BAD_FRAME"] = block("bad-request BAD_FRAME", "*Request — not valid COBS: the code byte 0x05 promises 4 more bytes before the delimiter, but only 1 follows.*", None, bad_wire)
EX["nak BAD_FRAME"] = nak_from_wire(dev3, "", bad_wire, "")
# BAD_CRC
b = good[:-1] + bytes([good[-1] ^ 0x01])
EX["bad BAD_CRC"] = damaged("BAD_CRC", "*Request — seq 513, PRESS, with one bit of its CRC flipped.*", b)
EX["nak BAD_CRC"] = nak_from_wire(dev3, "", wire.frame(b), "")
# BAD_LENGTH: TIME_SET with a 4-byte payload
b = fix_crc(bytes([1, 0x02, 0x02, Command.TIME_SET, 0x00, 0x04, 0x69, 0x55, 0xb9, 0x00]))
EX["bad BAD_LENGTH"] = damaged("BAD_LENGTH", "*Request — seq 514, TIME_SET with a 4-byte payload (it needs 8); the CRC is correct.*", b)
EX["nak BAD_LENGTH"] = nak_from_wire(dev3, "", wire.frame(b), "")
# BAD_VERSION
b = fix_crc(bytes([2]) + wire.encode_request_body(0x0203, Command.INFO)[1:-2])
EX["bad BAD_VERSION"] = damaged("BAD_VERSION", "*Request — seq 515, INFO, but protocol version 2; the CRC is correct.*", b)
EX["nak BAD_VERSION"] = nak_from_wire(dev3, "", wire.frame(b), "")
# UNKNOWN_COMMAND
b = fix_crc(bytes([1, 0x02, 0x04, 0x7E, 0x00, 0x00]))
EX["bad UNKNOWN_COMMAND"] = damaged("UNKNOWN_COMMAND", "*Request — seq 516, command 0x7E (not defined); the CRC is correct.*", b)
EX["nak UNKNOWN_COMMAND"] = nak_from_wire(dev3, "", wire.frame(b), "")
# BAD_VALUE: SET_BATTERY 1001
rq, rs, *_ = exchange(dev3, 0x0205, Command.SET_BATTERY, per_mille=1001)
EX["req BAD_VALUE"], EX["nak BAD_VALUE"] = rq, rs
# LOCKED: PROVISION on a locked token
rq, rs, *_ = exchange(dev3, 0x0206, Command.LOCK)
EX["req LOCKED"], EX["nak LOCKED"] = rq, rs

# WRONG_STATE: ADVANCE_TIME with a clock that is not simulated
class WallClockStandIn:
    def now_ns(self) -> int:
        return T0
tok4 = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=DEVKEY, clock=WallClockStandIn())
dev4 = DeviceController(tok4, sim_control=True)
rq, rs, *_ = exchange(dev4, 0x0207, Command.ADVANCE_TIME, ns=NS_PER_SECOND)
EX["req WRONG_STATE"], EX["nak WRONG_STATE"] = rq, rs
# NOT_ALLOWED: production token
dev5 = DeviceController(tok4, sim_control=False)
rq, rs, *_ = exchange(dev5, 0x0208, Command.SET_TEMPERATURE, centi_celsius=4000)
EX["req NOT_ALLOWED"], EX["nak NOT_ALLOWED"] = rq, rs
# BATTERY_DEAD
exchange(dev3, 0x0209, Command.SET_BATTERY, per_mille=0)
rq, rs, *_ = exchange(dev3, 0x020A, Command.TIME_SET, device_time_ns=T0)
EX["req BATTERY_DEAD"], EX["nak BATTERY_DEAD"] = rq, rs
# INTERNAL: the state could not be saved
def fail():
    raise OSError("disk full")
clock6 = SimulatedClock(T0)
tok6 = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=DEVKEY, clock=clock6)
dev6 = DeviceController(tok6, on_change=fail)
rq, rs, *_ = exchange(dev6, 0x020B, Command.PRESS)
EX["req INTERNAL"], EX["nak INTERNAL"] = rq, rs
# DEVICE_FAULT: one bit of the newest flash record rotted; the token refuses to operate
from firmware_sim.flash import Flash
tok7 = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=DEVKEY,
                   clock=SimulatedClock(T0))
rotted = bytearray(tok7.flash.image)
slot = 0 if tok7.flash.active_slot == "A" else len(rotted) // 2
rotted[slot + 40] ^= 0x02
tok7.flash = Flash.from_image(bytes(rotted), DEVKEY)
dev7 = DeviceController(tok7, sim_control=True)
rq, rs, *_ = exchange(dev7, 0x020C, Command.PRESS)
EX["req DEVICE_FAULT"], EX["nak DEVICE_FAULT"] = rq, rs
# BUSY: how a TCP server answers a second client's first frame (vserial.ports.TcpPort)
hello2 = wire.encode_request(0x0C01, Command.HELLO)
busy_wire = busy_nak(wire.unframe(hello2))
EX["req BUSY"] = block("request HELLO", fmt_summary("Request — " + describe(wire.decode_request(wire.unframe(hello2)))),
                       wire.unframe(hello2), hello2)
EX["nak BUSY"] = block("nak BUSY", fmt_summary("Response — " + describe(wire.decode_response(wire.unframe(busy_wire)))),
                       wire.unframe(busy_wire), busy_wire)

for k in EX:
    if not k.startswith("_"):
        EX[k] = EX[k].rstrip("\n")

# INFO breakdown
def info_breakdown(body):
    rows = []
    def take(n, what):
        nonlocal pos
        chunk = body[pos:pos + n]
        pos += n
        rows.append(f"| `{chunk.hex(' ')}` | {what} |")
        return chunk
    pos = 0
    take(1, "version 1"); take(2, "seq"); take(1, "command INFO"); take(1, "status OK"); take(2, "payload length")
    for name in ("serial", "model", "firmware_version"):
        n = take(1, f"{name}: length")[0]
        text = body[pos:pos + n].decode()
        take(n, f'{name} = `"{text}"`')
    kind = take(1, "kind")[0]
    rows[-1] = rows[-1][:-2] + f" = {kind} ({'TOTP' if kind == 1 else 'HOTP'}) |"
    alg = take(1, "algorithm")[0]
    rows[-1] = rows[-1][:-2] + f" = {alg} (SHA-1) |"
    for name, size in (("digits", 1), ("period", 4), ("t0", 8), ("counter", 8), ("battery_per_mille", 2)):
        value = int.from_bytes(body[pos:pos + size], "big")
        take(size, f"{name} = {value}")
    for name in ("battery_low", "provisioned", "locked", "sim_control"):
        take(1, f"{name} = {'true' if body[pos] else 'false'}")
    take(2, "CRC-16")
    assert pos == len(body)
    return "\n".join(["| bytes | field |", "|---|---|", *rows])

EX["INFO_BREAKDOWN"] = info_breakdown(EX.pop("_info"))

# COBS worked example
brq, brs = EX.pop("_press")
tmpl = open(sys.argv[1]).read()
def sub(m):
    key = m.group(1)
    if key == "PRESS_BYTES":
        return ""
    return EX[key]
used = set(re.findall(r"\{\{(.+?)\}\}", tmpl))
missing = [k for k in EX if k not in used]
if missing:
    print("unused examples:", missing, file=sys.stderr)
out = re.sub(r"\{\{(.+?)\}\}", sub, tmpl)
open(sys.argv[2], "w").write(out)
