"""docs/protocol.md and vtoken.wire cannot drift apart: every example in the document is parsed here.

An example is a ```hex block after a marker line ``<!-- example: KIND ARG -->``:

* ``request CMD``      — a valid request for command CMD
* ``response CMD``     — an ACK to CMD
* ``nak CODE``         — a NAK with that code
* ``bad-request CODE`` — a damaged request the device must refuse with that code

Inside the block, ``body:`` starts the frame body and ``wire:`` the COBS-framed bytes; unlabelled lines
continue the previous label.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from vtoken import wire
from vtoken.wire import Command, FrameDecodeError, Status

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_EXAMPLE = re.compile(r"<!-- example: (?P<kind>[a-z-]+) (?P<arg>[A-Z_]+) -->\n(?P<between>.*?)```hex\n(?P<hex>.*?)```",
                      re.DOTALL)
KINDS = {"request", "response", "nak", "bad-request"}


@dataclasses.dataclass(frozen=True)
class Example:
    kind: str
    arg: str
    body: bytes | None
    wire: bytes
    line: int

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.kind}-{self.arg}"


def _parse_hex(text: str) -> dict[str, bytes]:
    parts: dict[str, list[str]] = {}
    label = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = re.match(r"(body|wire):\s*(.*)", line)
        if match:
            label, line = match.group(1), match.group(2)
            assert label not in parts, f"two {label} lines"
            parts[label] = []
        assert label is not None, f"hex before a label: {raw!r}"
        parts[label].append(line)
    return {name: bytes.fromhex(" ".join(chunks)) for name, chunks in parts.items()}


def load_examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    examples = []
    for match in _EXAMPLE.finditer(text):
        assert "```" not in match.group("between"), f"marker without its own hex block: {match.group(0)[:60]}"
        parts = _parse_hex(match.group("hex"))
        assert "wire" in parts, f"example without wire bytes at {match.group(0)[:60]}"
        line = text.count("\n", 0, match.start()) + 1
        examples.append(Example(match.group("kind"), match.group("arg"), parts.get("body"), parts["wire"], line))
    return examples


EXAMPLES = load_examples()


def test_the_document_has_examples_and_every_marker_is_parsed() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(EXAMPLES) == text.count("<!-- example:")
    assert text.count("```hex") == len(EXAMPLES)
    assert {e.kind for e in EXAMPLES} <= KINDS


def test_every_command_has_a_request_and_a_response_example() -> None:
    requests = {e.arg for e in EXAMPLES if e.kind == "request"}
    responses = {e.arg for e in EXAMPLES if e.kind == "response"}
    names = {c.name for c in Command}
    assert requests == names and responses == names


def test_every_nak_code_has_an_example() -> None:
    naks = {e.arg for e in EXAMPLES if e.kind == "nak"}
    assert naks == {s.name for s in Status if s is not Status.OK}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_wire_bytes_are_the_framed_body(example: Example) -> None:
    assert example.wire.endswith(b"\x00") and 0 not in example.wire[:-1]
    if example.body is not None:
        assert wire.unframe(example.wire) == example.body
        assert wire.frame(example.body) == example.wire
    else:
        assert example.kind == "bad-request", "only damaged examples may lack a body"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "request"], ids=lambda e: e.id)
def test_request_examples_parse_and_re_encode(example: Example) -> None:
    assert example.body is not None
    request = wire.decode_request(example.body)
    assert request.command is Command[example.arg]
    fields = {f.name: getattr(request.payload, f.name) for f in dataclasses.fields(request.payload)}
    assert wire.encode_request_body(request.seq, request.command, **fields) == example.body


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind in ("response", "nak")], ids=lambda e: e.id)
def test_response_examples_parse_and_re_encode(example: Example) -> None:
    assert example.body is not None
    response = wire.decode_response(example.body)
    if example.kind == "response":
        assert response.ok and response.command is Command[example.arg]
        assert isinstance(response.payload, wire.response_type(response.command))
    else:
        assert response.status is Status[example.arg] and response.message
    assert wire.encode_response_body(response) == example.body


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "bad-request"], ids=lambda e: e.id)
def test_damaged_examples_fail_with_their_code(example: Example) -> None:
    items = wire.FrameReader().feed(example.wire)
    assert len(items) == 1
    item = items[0]
    if isinstance(item, bytes):
        with pytest.raises(FrameDecodeError) as info:
            wire.decode_request(item)
        item = info.value
    assert item.reason is Status[example.arg]


def test_responses_answer_the_requests_shown_before_them() -> None:
    pending: dict[int, int] = {}
    for example in EXAMPLES:
        if example.kind in ("request", "bad-request") and example.body is not None:
            pending[int.from_bytes(example.body[1:3], "big")] = example.body[3]
        elif example.kind in ("response", "nak"):
            assert example.body is not None
            response = wire.decode_response(example.body)
            if response.seq != wire.UNSEQUENCED and response.command is not None:
                assert pending.get(response.seq) == response.command, example.id


def test_tables_name_every_command_and_status_with_its_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    for command in Command:
        assert f"| `0x{command.value:02X}` | [{command.name}]" in text, command
        assert f"### {command.name} (0x{command.value:02X})" in text, command
    for status in Status:
        assert f"| `0x{status.value:02X}` | {status.name} |" in text, status


def test_constants_and_crc_check_value_match_the_document() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert wire.crc16(b"123456789") == 0x29B1 and "**`0x29B1`**" in text
    assert f"**{wire.MAX_FRAME_SIZE} bytes**" in text
    assert f"at most {wire.MAX_ENCODED_FRAME_SIZE} bytes of COBS" in text
    assert f"{wire.MAX_REQUEST_PAYLOAD} bytes in a request, {wire.MAX_RESPONSE_PAYLOAD} in a response" in text
    assert f"n ≤ {wire.MAX_TEXT_LENGTH}" in text and f"N ≤ {wire.MAX_MESSAGE_LENGTH}" in text
    assert f"`0x{wire.PROTOCOL_VERSION:02x}` (protocol version {wire.PROTOCOL_VERSION})" in text


def test_the_cobs_walk_through_is_right() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"PRESS request body `([0-9a-f ]+)`.*?so the wire bytes are `([0-9a-f ]+)`", text, re.DOTALL)
    assert match
    body, framed = bytes.fromhex(match.group(1)), bytes.fromhex(match.group(2))
    assert wire.frame(body) == framed
    assert any(e.body == body and e.kind == "request" for e in EXAMPLES)


def test_document_is_what_the_generator_produces(tmp_path) -> None:
    """docs/protocol.md is generated from docs/protocol.md.in by a real token session; keep them in step."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "protocol.md"
    subprocess.run(
        [sys.executable, str(root / "docs" / "generate_protocol_md.py"), str(root / "docs" / "protocol.md.in"), str(out)],
        cwd=root, check=True, capture_output=True,
    )
    assert out.read_text() == (root / "docs" / "protocol.md").read_text()


# --- issue 14: sessions, the resend rule, the time a press takes ------------------------------------------


def test_the_session_example_repeats_a_request_byte_for_byte_and_it_is_executed() -> None:
    """Section "Sessions": session 2's PRESS is session 1's last request, and gets a new code after HELLO."""
    text = DOC.read_text(encoding="utf-8")

    def line_of(heading: str) -> int:
        return text.count("\n", 0, text.index(heading)) + 1

    start, end = line_of("## Sessions: HELLO"), line_of("## Sequence numbers and retries")
    section = [e for e in EXAMPLES if start < e.line < end]
    kinds = [(e.kind, e.arg) for e in section]
    assert kinds == [("request", "PRESS"), ("response", "PRESS"), ("request", "HELLO"), ("response", "HELLO"),
                     ("request", "PRESS"), ("response", "PRESS")]
    first_press, first_code, hello, _, second_press, second_code = section
    assert first_press.body == second_press.body  # the same seq and bytes
    assert wire.decode_request(hello.body).command is Command.HELLO  # type: ignore[arg-type]
    codes = [wire.decode_response(e.body).payload.text for e in (first_code, second_code)]  # type: ignore[arg-type]
    assert codes[0] != codes[1]  # executed, not answered from memory
    assert "**Begin every session with\n[HELLO](#hello-0x07)**" in text


def test_the_host_loop_resends_only_after_frame_level_naks() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "any NAK with seq 0" not in text
    assert "**`BAD_FRAME`, `BAD_CRC`, or `BAD_LENGTH` with command 0**" in text
    assert "Every other NAK is final, **whatever its seq**" in text
    assert {s for s in Status if s.is_frame_error} == {Status.BAD_FRAME, Status.BAD_CRC, Status.BAD_LENGTH}


def test_the_time_a_press_takes_is_documented_and_true() -> None:
    from firmware_sim.button import DEBOUNCE_NS, LONG_PRESS_MARGIN_NS, LONG_PRESS_NS, NS_PER_MS
    from firmware_sim.token import PRESS_HOLD_NS

    text = DOC.read_text(encoding="utf-8")
    press_ms = (PRESS_HOLD_NS + DEBOUNCE_NS) // NS_PER_MS
    long_ms = (LONG_PRESS_NS + LONG_PRESS_MARGIN_NS + DEBOUNCE_NS) // NS_PER_MS
    assert f"**A PRESS takes {press_ms} ms of the token's true time**" in text
    assert f"held {PRESS_HOLD_NS // NS_PER_MS} ms" in text and f"{DEBOUNCE_NS // NS_PER_MS} ms debounce" in text
    assert f"**{long_ms / 1000:g} s**" in text
    assert (press_ms, long_ms) == (120, 6120)


def test_busy_is_documented_with_its_message() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"message `{wire.BUSY_MESSAGE}`" in text
    busy = [e for e in EXAMPLES if e.kind == "nak" and e.arg == "BUSY"]
    assert len(busy) == 1 and wire.decode_response(busy[0].body).message == wire.BUSY_MESSAGE  # type: ignore[arg-type]
