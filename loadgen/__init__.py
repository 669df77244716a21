"""``vtoken loadgen``: benchmark any validator over HTTP with a fleet of virtual tokens.

An edge package like :mod:`server`: it reads a fleet folder (``vtoken fleet
create`` output), computes codes with the check kernel, drives a validator over
HTTP (vtoken's ``/v1`` API or privacyIDEA's ``/validate/check``) and checks
every answer against what it must be. It imports :mod:`vtoken`,
:mod:`validator.kernel` and :mod:`firmware_sim`, never :mod:`server` or :mod:`host`.

Modules: :mod:`loadgen.fleet` (reading the fleet and the run state),
:mod:`loadgen.tokens` (codes per token), :mod:`loadgen.schedule` (who gets
which request, and the mix), :mod:`loadgen.api` (the two HTTP dialects),
:mod:`loadgen.driver` (the asyncio/aiohttp runner), :mod:`loadgen.report`
(tally, percentiles, text and JSON).
"""

from __future__ import annotations

from typing import Any

from loadgen.config import LoadConfig, LoadgenError

__all__ = ["LoadConfig", "LoadgenError", "Report", "run_load"]


def __getattr__(name: str) -> Any:
    """``run_load`` and ``Report`` on first use: importing :mod:`loadgen.config` (the CLI's option
    defaults) must not pull in aiohttp at every start of ``vtoken``."""
    if name == "run_load":
        from loadgen.driver import run_load

        return run_load
    if name == "Report":
        from loadgen.report import Report

        return Report
    raise AttributeError(f"module 'loadgen' has no attribute {name!r}")
