"""What a load run is asked to do, checked before anything is sent."""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from pathlib import Path

from vtoken.errors import InvalidInputError, VTokenError

#: ``--api`` choices: vtoken's ``/v1`` JSON API, or privacyIDEA's ``/validate/check``.
API_VTOKEN = "vtoken"
API_PRIVACYIDEA = "privacyidea"
APIS = (API_VTOKEN, API_PRIVACYIDEA)

#: Closed-loop clients when neither ``--concurrency`` nor ``--rate`` is given.
DEFAULT_CONCURRENCY = 16
#: Requests when neither ``--requests`` nor ``--duration`` is given.
DEFAULT_REQUESTS = 10_000
DEFAULT_REPLAYS = 0.10
DEFAULT_RANDOM = 0.05
#: Open loop: at most this many requests in flight (later ones wait, and their wait counts as latency).
DEFAULT_MAX_IN_FLIGHT = 256
#: One request may take this long before it counts as an HTTP error.
DEFAULT_TIMEOUT_S = 30.0
MAX_CONCURRENCY = 10_000


class LoadgenError(VTokenError):
    """The load generator cannot run: validator unreachable, import or registration failed, fleet unusable."""


@dataclasses.dataclass(frozen=True)
class LoadConfig:
    """One run: where, with which fleet, how hard, what mix."""

    url: str
    fleet: Path
    api: str = API_VTOKEN
    #: Closed loop: this many clients, each sending its next request when the last is answered.
    concurrency: int | None = None
    #: Open loop: requests per second, at most ``max_in_flight`` outstanding.
    rate: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    replays: float = DEFAULT_REPLAYS
    random: float = DEFAULT_RANDOM
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    register: bool = True
    import_fleet: bool = False
    password: str | None = dataclasses.field(default=None, repr=False)
    psk: bytes | None = dataclasses.field(default=None, repr=False)
    #: Tokens set aside for random codes (None: a few, when ``random`` > 0).
    decoys: int | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Where the tokens' counters and steps are kept between runs (None: ``<fleet>/loadgen-state.json``).
    state_path: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Seeds the choice of random codes (None: from the OS).
    seed: int | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInputError(f"the validator URL must be http://HOST:PORT or https://…, not {self.url!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.api not in APIS:
            raise InvalidInputError(f"--api must be one of {', '.join(APIS)}, not {self.api!r}")
        if self.concurrency is not None and self.rate is not None:
            raise InvalidInputError("give --concurrency (closed loop) or --rate (open loop), not both")
        if self.concurrency is None and self.rate is None:
            object.__setattr__(self, "concurrency", DEFAULT_CONCURRENCY)
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InvalidInputError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise InvalidInputError(f"--rate must be a positive number of requests per second, not {self.rate}")
        if self.requests is None and self.duration_s is None:
            object.__setattr__(self, "requests", DEFAULT_REQUESTS)
        if self.requests is not None and self.requests < 1:
            raise InvalidInputError(f"--requests must be at least 1, not {self.requests}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise InvalidInputError(f"--duration must be a positive number of seconds, not {self.duration_s}")
        for name, value in (("--replays", self.replays), ("--random", self.random)):
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise InvalidInputError(f"{name} must be a fraction between 0 and 1, not {value}")
        if self.replays + self.random > 1:
            raise InvalidInputError(f"--replays {self.replays} and --random {self.random} add up to more than 1")
        if self.replays > self.genuine:
            raise InvalidInputError(
                f"--replays {self.replays} exceeds the genuine share {self.genuine:.4g}: "
                "every replay repeats one accepted genuine code"
            )
        if self.decoys is not None and self.decoys < 0:
            raise InvalidInputError(f"--decoys must not be negative, not {self.decoys}")
        if self.random > 0 and self.decoys == 0:
            raise InvalidInputError("random codes go to decoy tokens: --decoys 0 needs --random 0")
        if self.max_in_flight < 1:
            raise InvalidInputError(f"--max-in-flight must be at least 1, not {self.max_in_flight}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise InvalidInputError(f"the request timeout must be positive, not {self.timeout_s}")
        if self.password is not None and self.psk is not None:
            raise InvalidInputError("give --password or --psk for the PSKC file, not both")
        if self.import_fleet and self.api != API_VTOKEN:
            raise InvalidInputError("--import uploads to vtoken's /v1/import; load a privacyIDEA server with its own tools")
        if self.import_fleet and not self.admin_token:
            raise InvalidInputError("--import needs --admin-token (POST /v1/import is an administrator call)")
        if self.register and self.api == API_PRIVACYIDEA and not self.admin_token:
            raise InvalidInputError(
                "--api privacyidea registers tokens through /token/resync, which needs --admin-token; "
                "or pass --no-register (a privacyIDEA server takes PSKC-imported tokens without registration)"
            )

    @property
    def genuine(self) -> float:
        """The share of genuine codes."""
        return max(0.0, 1.0 - self.replays - self.random)

    @property
    def clients(self) -> int:
        """Requests in flight at most (the connection pool's size)."""
        return self.concurrency if self.concurrency is not None else self.max_in_flight

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"

    def state_file(self) -> Path:
        return self.state_path if self.state_path is not None else self.fleet / STATE_FILENAME


STATE_FILENAME = "loadgen-state.json"

__all__ = ["API_PRIVACYIDEA", "API_VTOKEN", "APIS", "LoadConfig", "LoadgenError", "STATE_FILENAME"]


class FleetTooSmallError(InvalidInputError):
    """The fleet cannot carry the requested load without breaking the validator's rules."""


__all__ += ["FleetTooSmallError"]
