"""Exit codes of the ``vtoken`` command."""

EXIT_OK = 0
#: A refusal (wrong code, locked token, ...) or an operational error.
EXIT_REFUSED = 1
#: Bad input: a malformed option or argument.
EXIT_BAD_INPUT = 2
