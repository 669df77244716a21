"""Exit codes of the ``vtoken`` command, and the one way a refusal ends a command under ``--json``.

The rule (README "Errors and exit codes"):

* 0: done; the result is on stdout.
* 1: refused (a wrong code, a locked token, a portal rule, no match) or an
  operational error found while running (no answer from a port, a corrupt
  token file, a database not yet initialised, an output file that exists).
* 2: bad input: a malformed option or argument, or a file named as input that
  does not exist, is not a file or cannot be read (as click reports for its
  own path checks).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from host.cli.jsonout import echo_json

EXIT_OK = 0
#: A refusal (wrong code, locked token, ...) or an operational error.
EXIT_REFUSED = 1
#: Bad input: a malformed option or argument, or an input file that is missing or unreadable.
EXIT_BAD_INPUT = 2


def exit_refused_json(reason: str, message: str, **fields: Any) -> NoReturn:
    """Print a refusal as one JSON object (``"ok": false``, ``reason``, ``message``, ``fields``) and exit 1."""
    echo_json({**fields, "ok": False, "reason": reason, "message": message})
    sys.exit(EXIT_REFUSED)
