"""The ``vtoken`` command-line tool (click). The only place that turns errors into exit codes."""
