"""Byte-level mutations for fuzz tests: one definition, used by the wire and the import fuzzers.

A mutation is ``(kind, where, value)``: flip a bit, set a byte, insert or
delete one, truncate, or repeat up to 63 bytes in place; ``where`` is taken
modulo the data's length, so any integer is a valid position.
"""

from __future__ import annotations

from hypothesis import strategies as st

KINDS = ("flip", "set", "insert", "delete", "truncate", "repeat")


def mutations(max_where: int) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """One to four mutations at positions drawn from 0..``max_where``."""
    return st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(0, max_where), st.integers(0, 255)), min_size=1, max_size=4
    )


def mutate(data: bytes, changes: list[tuple[str, int, int]]) -> bytes:
    """``data`` with ``changes`` applied in order."""
    out = bytearray(data)
    for kind, where, value in changes:
        at = where % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] ^= 1 << (value % 8)
        elif kind == "set" and out:
            out[at % len(out)] = value
        elif kind == "insert":
            out.insert(at, value)
        elif kind == "delete" and out:
            del out[at % len(out)]
        elif kind == "truncate":
            del out[at:]
        elif kind == "repeat":
            out[at:at] = out[at : at + value % 64]
    return bytes(out)
