"""Accounting of every answer, and the result: throughput, latency percentiles, wrong answers, text and JSON."""

from __future__ import annotations

import array
import dataclasses
from typing import Any

import numpy as np

from loadgen.schedule import GENUINE, KINDS, RANDOM, REPLAY

#: Latency percentiles reported.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: The text report lists at most this many wrong answers one by one (JSON lists them all).
MAX_LISTED = 1000
#: What each kind's right answer is.
EXPECTED = {GENUINE: "accepted", REPLAY: "refused", RANDOM: "refused"}


@dataclasses.dataclass(frozen=True)
class WrongAnswer:
    """A genuine code refused, a replay or random code accepted, or an HTTP error."""

    serial: str
    kind: str
    #: HTTP status (0: no answer: connection error or timeout).
    status: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Tally:
    """Counts, latencies and wrong answers, appended to on the hot path."""

    def __init__(self) -> None:
        self.latencies = array.array("d")
        self.sent = dict.fromkeys(KINDS, 0)
        self.right = dict.fromkeys(KINDS, 0)
        self.reasons: dict[tuple[str, str], int] = {}
        self.wrong: list[WrongAnswer] = []
        self.registered = 0
        self.register_wrong: list[WrongAnswer] = []

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def record(self, kind: str, serial: str, seconds: float, status: int, accepted: bool | None, reason: str) -> bool:
        """Count one answer; return whether it was right."""
        self.latencies.append(seconds)
        self.sent[kind] += 1
        key = (kind, reason if accepted is not None else "error")
        self.reasons[key] = self.reasons.get(key, 0) + 1
        right = accepted is (kind == GENUINE)
        if right:
            self.right[kind] += 1
        else:
            self.wrong.append(WrongAnswer(serial, kind, status, reason))
        return right


def percentiles_ms(latencies: array.array | np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/p99.9, mean and max of ``latencies`` (seconds), in ms."""
    keys = [f"p{p:g}" for p in PERCENTILES]
    if len(latencies) == 0:
        return {**dict.fromkeys(keys), "mean": None, "max": None}
    values = np.frombuffer(latencies, dtype=np.float64) if isinstance(latencies, array.array) else latencies
    found = np.percentile(values, PERCENTILES)
    out: dict[str, float | None] = {k: round(float(v) * 1e3, 3) for k, v in zip(keys, found)}
    out["mean"] = round(float(values.mean()) * 1e3, 3)
    out["max"] = round(float(values.max()) * 1e3, 3)
    return out


@dataclasses.dataclass
class Report:
    """The result of a run."""

    url: str
    api: str
    mode: str
    concurrency: int | None
    rate: float | None
    fleet: str
    tokens: int
    decoys: int
    seconds: float
    tally: Tally
    notes: list[str] = dataclasses.field(default_factory=list)
    #: Seconds clients spent waiting for a token that may take a code (the fleet limited the run).
    starved_s: float = 0.0
    #: Open loop: the largest delay of a request behind its scheduled time.
    max_lag_s: float = 0.0
    #: CPU seconds the load generator itself used during the load.
    client_cpu_s: float = 0.0

    @property
    def wrong(self) -> list[WrongAnswer]:
        return self.tally.register_wrong + self.tally.wrong

    @property
    def ok(self) -> bool:
        return not self.wrong

    @property
    def requests(self) -> int:
        return self.tally.requests

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def genuine_accepted_per_s(self) -> float:
        return self.tally.right[GENUINE] / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self) -> dict[str, float | None]:
        return percentiles_ms(self.tally.latencies)

    def to_json(self) -> dict[str, Any]:
        t = self.tally
        by_kind = {}
        for kind in KINDS:
            reasons = {r: n for (k, r), n in sorted(t.reasons.items()) if k == kind}
            by_kind[kind] = {"sent": t.sent[kind], "right": t.right[kind], "expected": EXPECTED[kind],
                             "reasons": reasons}
        return {
            "url": self.url,
            "api": self.api,
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "fleet": self.fleet,
            "tokens": self.tokens,
            "decoys": self.decoys,
            "registered": t.registered,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "genuine_accepted_per_s": round(self.genuine_accepted_per_s, 1),
            "latency_ms": self.latency_ms(),
            "kinds": by_kind,
            "wrong": len(self.wrong),
            "wrong_answers": [w.to_json() for w in self.wrong],
            "starved_s": round(self.starved_s, 3),
            "max_lag_s": round(self.max_lag_s, 3),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "client_cpu_us_per_request": round(1e6 * self.client_cpu_s / self.requests, 1) if self.requests else None,
            "notes": list(self.notes),
            "ok": self.ok,
        }

    def render(self) -> str:
        """The human-readable result."""
        t = self.tally
        how = f"concurrency {self.concurrency}" if self.mode == "concurrency" else f"rate {self.rate:g}/s"
        lat = self.latency_ms()
        lines = [
            f"vtoken loadgen: {self.url} ({self.api} API), {self.fleet}, {self.decoys} of them decoys, {how}",
            f"requests   {self.requests:,} in {self.seconds:.2f} s: {self.throughput:,.0f}/s "
            f"(genuine accepted {self.genuine_accepted_per_s:,.0f}/s); load generator CPU "
            f"{1e6 * self.client_cpu_s / max(1, self.requests):,.0f} µs/request",
        ]
        if self.requests:
            lines.append("mix        " + "  ".join(
                f"{k} {t.sent[k]:,} ({100 * t.sent[k] / self.requests:.1f} %)" for k in KINDS))
            lines.append("latency    " + "  ".join(
                f"{k} {_ms(lat[k])}" for k in ("p50", "p90", "p99", "p99.9", "max")))
        for kind in KINDS:
            if not t.sent[kind]:
                continue
            reasons = ", ".join(f"{r} {n:,}" for (k, r), n in sorted(t.reasons.items()) if k == kind)
            lines.append(f"{kind:<10} {EXPECTED[kind]} {t.right[kind]:,} of {t.sent[kind]:,} ({reasons})")
        lines.extend(f"note       {n}" for n in self.notes)
        wrong = self.wrong
        lines.append(f"wrong      {len(wrong):,}")
        for w in wrong[:MAX_LISTED]:
            status = f"HTTP {w.status}" if w.status else "no answer"
            lines.append(f"  {w.serial}  {w.kind:<8} {status:<9} {w.reason}")
        if len(wrong) > MAX_LISTED:
            lines.append(f"  … and {len(wrong) - MAX_LISTED:,} more (--json lists every one)")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} ms" if value < 100 else f"{value:,.0f} ms"


def progress_line(elapsed: float, tally: Tally, recent: float, window: np.ndarray) -> str:
    """One status line: time, requests, current rate, recent p50/p99, wrong answers."""
    lat = percentiles_ms(window) if len(window) else {"p50": None, "p99": None}
    return (
        f"{elapsed:7.1f} s  {tally.requests:>10,} requests  {recent:>8,.0f}/s  "
        f"p50 {_ms(lat['p50'])}  p99 {_ms(lat['p99'])}  wrong {len(tally.wrong) + len(tally.register_wrong):,}"
    )


__all__ = ["EXPECTED", "MAX_LISTED", "PERCENTILES", "Report", "Tally", "WrongAnswer", "percentiles_ms", "progress_line"]
