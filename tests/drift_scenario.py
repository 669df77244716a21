"""Five simulated years of a drifting fleet against the validator.

A fleet made by ``firmware_sim`` (crystals off by up to ±50 ppm, seasonal
temperature profiles, some aging) is imported from its PSKC file, registered
on day 0 with two codes read off each token, and then used weekly or monthly
for five years. Every genuine code must be accepted (after a next-code round
where the server asks for one), every replay refused, and random codes are
counted. The drift model's prediction is compared with each token's true
offset before every use.

Run ``python -m tests.drift_scenario`` for the numbers behind the closing note.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import tempfile
from pathlib import Path

from firmware_sim.factory import Physics, manufacture
from firmware_sim.fleet import FleetSpec, build_pskc, derive_device_key, derive_seed
from firmware_sim.models import get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.token import Token
from validator.importer import import_file
from validator.sealing import Keyring, generate_master_key
from validator.service import Reason, Validator
from validator.store import SQLiteStore
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock

START_NS = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
YEAR_NS = 365 * NS_PER_DAY
MONTH_NS = 30 * NS_PER_DAY
WEEK_NS = 7 * NS_PER_DAY
#: The user types the code this long after pressing.
TYPING_DELAY_NS = 4 * NS_PER_SECOND


@dataclasses.dataclass
class ScenarioStats:
    """What happened over the run."""

    uses: int = 0
    accepted_alone: int = 0
    accepted_after_next_code: int = 0
    false_refusals: int = 0
    replays_refused: int = 0
    replays_accepted: int = 0
    random_tries: int = 0
    random_accepted: int = 0
    prediction_errors_s: list[float] = dataclasses.field(default_factory=list)
    true_offsets_s: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        """A one-paragraph report."""
        errors = [abs(e) for e in self.prediction_errors_s]
        return (
            f"{self.uses} genuine uses: {self.accepted_alone} accepted alone, "
            f"{self.accepted_after_next_code} after a next-code round, {self.false_refusals} false refusals; "
            f"replays refused {self.replays_refused}, accepted {self.replays_accepted}; "
            f"random codes accepted {self.random_accepted} of {self.random_tries}; "
            f"drift-model error |predicted - true offset|: median {statistics.median(errors):.2f} s, "
            f"95th pct {sorted(errors)[int(0.95 * len(errors))]:.2f} s, max {max(errors):.2f} s; "
            f"true offsets reached {min(self.true_offsets_s):+.0f} .. {max(self.true_offsets_s):+.0f} s"
        )


def seasonal_profile(rng: random.Random, years: int) -> TemperatureProfile:
    """Monthly temperature steps: a keyring that lives indoors, in a car, or outdoors."""
    mean = rng.choice([22, 18, 10])
    swing = rng.choice([3, 10, 18])
    steps = []
    for month in range(12 * years + 1):
        season = [-1.0, -0.8, -0.4, 0.1, 0.6, 1.0, 1.0, 0.7, 0.2, -0.3, -0.7, -1.0][month % 12]
        steps.append((START_NS + month * MONTH_NS, round(mean + swing * season + rng.uniform(-2, 2), 1)))
    return TemperatureProfile.schedule(steps)


def make_tokens(spec: FleetSpec, clock: SimulatedClock, rng: random.Random, years: int) -> list[Token]:
    """The fleet's tokens, each with its own temperature profile and aging."""
    tokens = []
    for serial in spec.serials():
        ppm = rng.uniform(-50, 50)
        tokens.append(
            manufacture(
                model=spec.model,
                seed=derive_seed(spec.batch_secret, serial),
                serial=serial,
                device_key=derive_device_key(spec.batch_secret, serial),
                clock=clock,
                physics=Physics(
                    ppm=f"{ppm:.2f}",
                    temperature=seasonal_profile(rng, years),
                    aging_ppm_per_year=f"{rng.uniform(-2, 2):.2f}",
                    battery_years=years + 2,
                ),
            )
        )
    return tokens


def next_code(token: Token, clock: SimulatedClock, shown: str) -> str:
    """Wait until the display changes, as a user told to do so would, then press."""
    clock.advance(token.flash.period * NS_PER_SECOND)
    code = token.press()
    while code == shown:
        clock.advance(NS_PER_SECOND)
        code = token.press()
    return code


def run(
    *, tokens: int = 8, years: int = 5, seed: int = 2026, model: str = "totp30", workdir: Path | None = None
) -> ScenarioStats:
    """Run the scenario and return its statistics."""
    rng = random.Random(seed)
    clock = SimulatedClock(START_NS)
    spec = FleetSpec(batch_secret=rng.randbytes(32), model=get_model(model), count=tokens)
    fleet = make_tokens(spec, clock, rng, years)
    stats = ScenarioStats()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(workdir or tmp)
        pskc_path = folder / "tokens.pskc"
        build_pskc(spec, created_ns=START_NS, password="scenario").write(str(pskc_path))
        keyring = Keyring(generate_master_key())
        with SQLiteStore(folder / "validator.db") as store:
            import_file(store, keyring, pskc_path, password="scenario")
            validator = Validator(store, keyring, clock)
            # Day 0: register every token with two consecutive codes.
            for token in fleet:
                clock.advance(rng.randrange(60, 600) * NS_PER_SECOND)
                code1 = token.press()
                code2 = next_code(token, clock, code1)
                result = validator.register(token.serial, code1, code2, clock.now_ns() + TYPING_DELAY_NS)
                assert result.accepted, result
            # Then weekly (even tokens) or monthly (odd tokens) use, with some jitter.
            schedule = []
            for i, token in enumerate(fleet):
                interval = WEEK_NS if i % 2 == 0 else MONTH_NS
                at = START_NS + interval
                while at < START_NS + years * YEAR_NS:
                    schedule.append((at + rng.randrange(0, 8 * 3600) * NS_PER_SECOND, i))
                    at += interval
            schedule.sort()
            for at, i in schedule:
                token = fleet[i]
                clock.set(max(at, clock.now_ns()))
                _use(validator, token, clock, rng, stats)
    return stats


def _use(validator: Validator, token: Token, clock: SimulatedClock, rng: random.Random, stats: ScenarioStats) -> None:
    status = validator.status(token.serial, clock.now_ns())
    true_offset = token.offset_ns()
    stats.prediction_errors_s.append((status.offset_ns - true_offset) / NS_PER_SECOND)
    stats.true_offsets_s.append(true_offset / NS_PER_SECOND)
    # Someone tries a random code first (it must not be accepted, bar the odds of the window).
    stats.random_tries += 1
    guess = f"{rng.randrange(10**6):06d}"
    if validator.check(token.serial, guess, clock.now_ns()).accepted:
        stats.random_accepted += 1
    clock.advance(3 * NS_PER_SECOND)  # past the one-second throttle that failure earned
    code = token.press()
    stats.uses += 1
    result = validator.check(token.serial, code, clock.now_ns() + TYPING_DELAY_NS)
    if result.reason is Reason.NEXT_CODE_REQUIRED:
        code = next_code(token, clock, code)
        result = validator.check(token.serial, code, clock.now_ns() + TYPING_DELAY_NS)
        if result.accepted:
            stats.accepted_after_next_code += 1
    elif result.accepted:
        stats.accepted_alone += 1
    if not result.accepted:
        stats.false_refusals += 1
        return
    clock.advance(TYPING_DELAY_NS + NS_PER_SECOND)
    replay = validator.check(token.serial, code, clock.now_ns())
    if replay.accepted:
        stats.replays_accepted += 1
    elif replay.reason is Reason.REPLAY:
        stats.replays_refused += 1
    clock.advance(3 * NS_PER_SECOND)


if __name__ == "__main__":  # pragma: no cover
    print(run().summary())
