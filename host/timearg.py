"""Parse the times users type on the command line.

A time is either Unix seconds (``1700000000``, ``1700000000.25``) or ISO 8601
*with* a zone (``2026-01-01T00:00:00Z``, ``2026-01-01T09:00:00+09:00``). A time
without a zone is refused: local time would make codes differ between
machines.
"""

from __future__ import annotations

import datetime as _dt
import re
from fractions import Fraction

from vtoken.clock import NS_PER_SECOND
from vtoken.errors import InvalidTimeError

_UNIX_RE = re.compile(r"^\d+(\.\d{1,9})?$")


def parse_time_ns(text: str) -> int:
    """Parse ``text`` into integer nanoseconds since the Unix epoch."""
    text = text.strip()
    if _UNIX_RE.match(text):
        return int(Fraction(text) * NS_PER_SECOND)
    if text.startswith("-"):
        raise InvalidTimeError(f"time must not be before 1970: {text!r}")
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidTimeError(
            f"cannot read time {text!r}: give Unix seconds or ISO 8601 with a zone, e.g. 2026-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTimeError(
            f"time {text!r} has no time zone; add Z or an offset such as +01:00 (local time is not reproducible)"
        )
    delta = moment - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    ns = (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000
    if ns < 0:
        raise InvalidTimeError(f"time must not be before 1970: {text!r}")
    return ns


def parse_time(text: str) -> int:
    """Parse ``text`` into whole Unix seconds (fractions floored)."""
    return parse_time_ns(text) // NS_PER_SECOND


def format_time_ns(ns: int) -> str:
    """Render nanoseconds since the epoch as ISO 8601 UTC with a ``Z``."""
    seconds, rest = divmod(ns, NS_PER_SECOND)
    moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if rest:
        text += f".{rest:09d}".rstrip("0")
    return text + "Z"


#: Suffix of a JSON field holding integer nanoseconds since the epoch.
NS_SUFFIX = "_ns"


def time_fields(name: str, ns: int | None) -> dict[str, int | str | None]:
    """A time for ``--json``: ``{name}_ns`` (integer ns since the epoch) and ``name`` (ISO 8601 UTC).

    Both are None when the time is unset.
    """
    return {f"{name}{NS_SUFFIX}": ns, name: format_time_ns(ns) if ns is not None else None}
