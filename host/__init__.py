"""Host side: the client library for a token on a serial port, and the ``vtoken`` CLI."""
