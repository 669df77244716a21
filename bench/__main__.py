"""``python -m bench``: every benchmark in one process, each implementation on the same work, one table.

Run from the repository root (after ``pip install -e '.[test]'``; ``.[plot]`` for ``--plot``)::

    python -m bench                       # full run (a few minutes)
    python -m bench --quick               # under a minute
    python -m bench --json results.json --plot windows.png

Progress goes to stderr, the table to stdout. Implementations: vtoken's C kernel
on every CPU path this machine and build offer, vtoken's Python twin, pyotp,
stdlib hmac with prepared inner/outer states, and oathtool when it is installed.
Every implementation is checked against the RFC 4226 / RFC 6238 vectors and
against the Python twin on the benchmark's own work before it is timed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time

from bench import harness, operations


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="vtoken benchmarks: operation × implementation, median and spread, ratios to pyotp and the best peer.",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true", help="fewer repeats and smaller work (under a minute)")
    modes.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for the test suite
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw window-scan throughput against window size (PNG; needs matplotlib)")
    parser.add_argument("--only", metavar="TEXT", help="run only operations or implementations whose name contains TEXT")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def _loadavg() -> float | None:
    """The one-minute load average (None where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = operations.SMOKE if args.smoke else operations.QUICK if args.quick else operations.FULL
    if args.plot:  # fail before minutes of work, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'vtoken[plot]' (or pip install matplotlib)", file=sys.stderr)
            return 2
    started = time.time()
    meta = {
        "command": "python -m bench" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "mode": config.mode,
        "repeats": config.repeats,
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        **operations.machine_info(),
        "loadavg_start": _loadavg(),
    }
    if not args.quiet:
        paths = ", ".join(meta.get("c_paths") or []) or "none (C kernel not built)"
        print(f"vtoken benchmarks, {config.mode} mode, {config.repeats} samples each; C paths: {paths}; "
              f"oathtool: {meta['oathtool']}", file=sys.stderr)
    rows = operations.run(config, progress=not args.quiet, only=args.only)
    meta["seconds"] = round(time.time() - started, 1)
    meta["loadavg_end"] = _loadavg()
    busy = (meta["loadavg_end"] or 0) > 1.5
    if busy and not args.quiet:
        print(f"warning: the load average reached {meta['loadavg_end']:.2f}: other work shared the CPU, "
              "so these numbers are low and noisy; run again on a quiet machine", file=sys.stderr)
    print(harness.format_table(rows))
    if args.json:
        harness.write_json(rows, args.json, meta)
    if args.plot:
        harness.plot_windows(rows, args.plot)
    if not args.quiet:
        print(f"done in {meta['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
