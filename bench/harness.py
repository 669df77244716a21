"""Timing, statistics, the results table, JSON and the window-size plot for ``python -m bench``.

A measurement is a number of *samples*; each sample runs the same work one or
more times (enough loops to last ``min_time`` seconds, found by a calibration
run, so that timer resolution never matters) and yields a throughput in units
per second. A :class:`Row` keeps every sample's throughput; the table shows
their median and their spread (lowest–highest sample).

Ratios compare implementations on the same operation: ``× pyotp`` divides by
pyotp's median, ``× best peer`` by the best median among the peers (the
implementations that are not vtoken: pyotp, stdlib hmac, oathtool).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

#: Implementations that are not vtoken: the "peers" the ratios compare against.
PEER = "peer"
VTOKEN = "vtoken"
PYOTP = "pyotp"

OK = "ok"
#: Calibration never asks for more calls than this per sample.
MAX_LOOPS = 1 << 22


@dataclasses.dataclass
class Row:
    """One line of the table: one implementation doing one operation."""

    operation: str
    implementation: str
    #: ``vtoken`` or ``peer``.
    family: str
    #: What one unit of work is ("codes", "windows", "resyncs", "verifications", ...).
    unit: str
    #: Units of work per sample (before calibration loops), e.g. 1,000,000 codes.
    work: int = 0
    #: Throughput of each sample, units per second.
    samples: list[float] = dataclasses.field(default_factory=list)
    #: ``ok``, or why there is no number ("not installed", "not built", ...).
    status: str = OK
    note: str = ""
    #: Extra numbers for JSON (e.g. window size and codes per second of a scan).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    ratio_pyotp: float | None = None
    ratio_best_peer: float | None = None
    #: What the "work/sample" column says (default: ``work`` and ``unit``).
    work_label: str = ""
    #: Overrides the spread shown (lowest–highest sample), e.g. percentiles of single operations.
    spread: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK and bool(self.samples)

    @property
    def per_s(self) -> float | None:
        """Median throughput (units per second)."""
        return statistics.median(self.samples) if self.ok else None

    @property
    def per_s_min(self) -> float | None:
        """Low end of the spread: the slowest sample (or ``spread[0]``)."""
        if not self.ok:
            return None
        return self.spread[0] if self.spread else min(self.samples)

    @property
    def per_s_max(self) -> float | None:
        """High end of the spread: the fastest sample (or ``spread[1]``)."""
        if not self.ok:
            return None
        return self.spread[1] if self.spread else max(self.samples)

    @property
    def seconds_per_op(self) -> float | None:
        """Time per unit at the median throughput."""
        rate = self.per_s
        return 1.0 / rate if rate else None

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "implementation": self.implementation,
            "family": self.family,
            "unit": self.unit,
            "per_s": self.per_s,
            "per_s_min": self.per_s_min,
            "per_s_max": self.per_s_max,
            "seconds_per_op": self.seconds_per_op,
            "work": self.work,
            "samples": list(self.samples),
            "ratio_pyotp": self.ratio_pyotp,
            "ratio_best_peer": self.ratio_best_peer,
            "status": self.status,
            "note": self.note,
            **self.extra,
        }


# --- timing ----------------------------------------------------------------------------------------


def calibrate(fn: Callable[[], object], min_time: float) -> int:
    """How many calls of ``fn`` one sample needs to last at least ``min_time`` s.

    ``fn`` is called at least once, which also warms caches up.
    """
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or loops >= MAX_LOOPS:
            return loops
        if elapsed >= min_time / 20:
            return min(MAX_LOOPS, math.ceil(loops * min_time / elapsed))
        loops = min(MAX_LOOPS, loops * 10)


def measure(
    fn: Callable[[], object], units: int, *, repeats: int, min_time: float
) -> list[float]:
    """Throughputs (units/s) of ``repeats`` samples, each ``fn()`` run enough times to last ``min_time``."""
    loops = calibrate(fn, min_time)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        samples.append(units * loops / elapsed)
    return samples


# --- progress --------------------------------------------------------------------------------------


class Progress:
    """One line per measurement on stderr: ``[ 3/40] operation · implementation … result``."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.started = time.perf_counter()

    def start(self, operation: str, implementation: str) -> None:
        self.done += 1
        if self.enabled:
            width = len(str(self.total))
            print(
                f"[{self.done:>{width}}/{self.total}] {operation} · {implementation} … ",
                end="", file=self.stream, flush=True,
            )

    def finish(self, row: Row) -> None:
        if not self.enabled:
            return
        if row.ok:
            text = f"{si(row.per_s)} {row.unit}/s"
        else:
            text = row.status
        elapsed = time.perf_counter() - self.started
        print(f"{text}  ({elapsed:.0f} s)", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)


# --- ratios, formatting ------------------------------------------------------------------------------


def add_ratios(rows: Sequence[Row]) -> None:
    """Fill ``ratio_pyotp`` and ``ratio_best_peer`` of every row, per operation."""
    by_op: dict[str, list[Row]] = {}
    for row in rows:
        by_op.setdefault(row.operation, []).append(row)
    for op_rows in by_op.values():
        peers = [r for r in op_rows if r.family == PEER and r.ok]
        pyotp = next((r for r in peers if r.implementation == PYOTP), None)
        best = max(peers, key=lambda r: r.per_s, default=None)
        for row in op_rows:
            if not row.ok:
                continue
            row.ratio_pyotp = row.per_s / pyotp.per_s if pyotp else None
            row.ratio_best_peer = row.per_s / best.per_s if best else None


def si(value: float | None, digits: int = 3) -> str:
    """``12.3 M``, ``932 k``, ``1.05``: three significant digits with an SI prefix."""
    if value is None or not math.isfinite(value):
        return "–"
    for factor, prefix in ((1e9, " G"), (1e6, " M"), (1e3, " k"), (1.0, "")):
        if abs(value) >= factor:
            scaled = value / factor
            break
    else:
        scaled, prefix = value, ""
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(scaled))))) if scaled else 0
    return f"{scaled:.{decimals}f}{prefix}"


def duration(seconds: float | None) -> str:
    """``1.23 µs``, ``0.87 ms``, ``2.4 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if seconds >= factor:
            return f"{si(seconds / factor).strip()} {unit}"
    return f"{seconds * 1e9:.2f} ns"


def ratio(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


COLUMNS = ("operation", "implementation", "work/sample", "median /s", "spread /s", "per op", "× pyotp", "× best peer")


def table_cells(row: Row) -> list[str]:
    if not row.ok:
        return [row.operation, row.implementation, row.status, "–", "", "", "", ""]
    work = row.work_label or (f"{row.work:,} {row.unit}" if row.work else row.unit)
    return [
        row.operation,
        row.implementation,
        work,
        si(row.per_s),
        f"{si(row.per_s_min)}–{si(row.per_s_max)}",
        duration(row.seconds_per_op),
        ratio(row.ratio_pyotp),
        ratio(row.ratio_best_peer),
    ]


def format_table(rows: Iterable[Row], *, markdown: bool = True) -> str:
    """The results as a Markdown table (readable as plain text too), notes below it."""
    rows = list(rows)
    cells = [list(COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {3, 4, 5, 6, 7}

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "| " + " | ".join(parts) + " |"

    out = [line(cells[0])]
    out.append("|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
    out.extend(line(c) for c in cells[1:])
    # Notes, one per (operation, text), naming the implementations they apply to.
    notes: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r.note:
            notes.setdefault((r.operation, r.note), []).append(r.implementation)
    if notes:
        out.append("")
        out.extend(f"- {op} · {', '.join(impls)}: {text}" for (op, text), impls in notes.items())
    return "\n".join(out)


def write_json(rows: Sequence[Row], path: str, meta: dict[str, Any]) -> None:
    """A JSON list of rows, each with operation, implementation and per_s, and the run's facts under ``run``."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump([{**r.to_json(), "run": meta} for r in rows], fh, indent=2, ensure_ascii=False)
        fh.write("\n")


# --- plot -------------------------------------------------------------------------------------------


def plot_windows(rows: Sequence[Row], path: str) -> None:
    """Window scans: windows/s and codes/s against window size, one line per implementation (PNG).

    matplotlib is an optional extra (``pip install vtoken[plot]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(
            f"--plot needs matplotlib ({exc}); install it with: pip install 'vtoken[plot]' (or pip install matplotlib)"
        ) from None
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        window = row.extra.get("window")
        if window is None or not row.ok:
            continue
        series.setdefault(row.implementation, []).append((window, row.per_s, row.per_s * window))
    if not series:
        raise SystemExit("--plot: no window-scan results to draw")
    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(15, 5.2))
    for name, points in series.items():
        points.sort()
        xs = [p[0] for p in points]
        style = "-" if name.startswith("vtoken") else "--"
        ax_w.plot(xs, [p[1] for p in points], style, marker="o", label=name)
        ax_c.plot(xs, [p[2] for p in points], style, marker="o", label=name)
    for ax, what in ((ax_w, "windows scanned per second"), (ax_c, "codes checked per second")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("window size (counters), no match")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_w.set_title("Window scan throughput, one core")
    ax_c.set_title("Codes per second inside the scan")
    ax_c.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
