"""vtoken's device-agnostic core: the OATH algorithms and the exception tree.

Nothing in this package reads a clock, opens a port, or prints.
"""

from vtoken.errors import VTokenError
from vtoken.oath import Algorithm, hotp, parse_code, parse_key, time_step, totp

__version__ = "0.1.0"

__all__ = ["Algorithm", "VTokenError", "__version__", "hotp", "parse_code", "parse_key", "time_step", "totp"]
