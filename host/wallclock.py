"""The wall clock, read only at the edges (CLI, transports), never in the core."""

from __future__ import annotations

import time


def wall_time_ns() -> int:
    """Nanoseconds since the Unix epoch, from the system clock."""
    return time.time_ns()
