"""``--json``: one machine-readable shape for every command that reports state or a result.

A command with ``@json_option`` prints exactly one JSON object on stdout (sorted
keys, one line, UTF-8) instead of its text, and nothing else on stdout. Errors
keep their text on stderr and their exit codes; a refusal that is a result (a
wrong code, a busy device) is a JSON object with ``"ok": false`` and exit 1.

Conventions for the objects (documented in README "Scripting with --json"):
times are integer nanoseconds since the epoch in fields ending ``_ns`` plus an
ISO 8601 UTC text in the same name without the suffix; serials are strings;
enums are their lower-case values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])



def json_option(func: F) -> F:
    """Add ``--json`` (parameter ``as_json``) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")(func)


def echo_json(data: Mapping[str, Any]) -> None:
    """Print ``data`` as one line of JSON on stdout."""
    click.echo(json.dumps(dict(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str))
