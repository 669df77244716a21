"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Request latency buckets (s): group commit keeps most checks within a few ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Checks by outcome, latency, batch sizes, lockouts, commit failures."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "vtoken_decisions", "Checks and registrations decided, by operation and outcome",
            ("operation", "outcome"), registry=self.registry,
        )
        self.latency = Histogram(
            "vtoken_request_seconds", "Time from request to committed answer, by operation",
            ("operation",), buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "vtoken_batch_size", "Decisions per group commit", buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "vtoken_batch_seconds", "Time to decide and commit one batch",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.commit_failures = Counter(
            "vtoken_commit_failures", "Batches whose commit failed (nothing in them accepted)", registry=self.registry,
        )
        self.lockouts = Counter("vtoken_lockouts", "Tokens locked by failed attempts", registry=self.registry)
        self.ready = Gauge("vtoken_ready", "1 while the store answers and the kernel is loaded", registry=self.registry)

    def observe_batch(self, size: int, seconds: float, committed: bool) -> None:
        """The group committer's hook."""
        self.batch_size.observe(size)
        self.commit_seconds.observe(seconds)
        if not committed:
            self.commit_failures.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


__all__ = ["Metrics"]
