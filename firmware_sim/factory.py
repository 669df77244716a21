"""The token factory: provision a seed, set the clock, fit a battery, lock.

Pure: the caller supplies the seed, the device key and the clock, so the same
arguments always make the same token.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from firmware_sim.battery import Battery
from firmware_sim.flash import DEVICE_KEY_SIZE, Flash
from firmware_sim.models import TokenModel
from firmware_sim.rtc import RTC, Calibration, CrystalParams, TemperatureProfile
from firmware_sim.token import Token
from vtoken.clock import Clock
from vtoken.errors import InvalidConfigError
from vtoken.oath import check_key

#: The MCU's unique key that encrypts the seed in flash (AES-256): the flash's own size.
DEVICE_KEY_BYTES = DEVICE_KEY_SIZE

#: Room temperature: a token sits here unless told otherwise.
ROOM_TEMPERATURE_C = 25


@dataclasses.dataclass(frozen=True)
class Physics:
    """A token's physical build: crystal, temperature, calibration and battery."""

    ppm: Fraction | float | int | str = 0
    temperature: TemperatureProfile | None = None
    aging_ppm_per_year: Fraction | float | int | str = 0
    calibration: Calibration = Calibration()
    battery_years: Fraction | float | int | str = 5
    battery_presses: int = 14_000


def manufacture(
    *,
    model: TokenModel,
    seed: bytes,
    serial: str,
    device_key: bytes,
    clock: Clock,
    physics: Physics = Physics(),
    device_time_ns: int | None = None,
    counter: int = 0,
    lock: bool = True,
) -> Token:
    """Build, provision and (by default) lock one token at the clock's current time.

    ``device_time_ns`` is what the RTC is set to at the factory (default: the true time).
    """
    seed = check_key(seed)
    if len(device_key) != DEVICE_KEY_BYTES:
        raise InvalidConfigError(f"device key must be {DEVICE_KEY_BYTES} bytes, not {len(device_key)}")
    now = clock.now_ns()
    crystal = CrystalParams(ppm_25=physics.ppm, aging_ppm_per_year=physics.aging_ppm_per_year)
    profile = physics.temperature or TemperatureProfile.constant(ROOM_TEMPERATURE_C)
    rtc = RTC(
        crystal=crystal,
        profile=profile,
        calibration=physics.calibration,
        factory_ns=now,
        ref_true_ns=now,
        ref_device_ns=now if device_time_ns is None else device_time_ns,
    )
    battery = Battery(capacity_years=physics.battery_years, capacity_presses=physics.battery_presses, installed_ns=now)
    flash = Flash.blank(device_key)
    flash.provision(
        seed=seed,
        serial=serial,
        model=model.name,
        kind=model.kind.value,
        algorithm=model.algorithm.value,
        digits=model.digits,
        period=model.period,
        t0=model.t0,
        counter=counter,
    )
    flash.set_calibration(physics.calibration.calm, physics.calibration.calp)
    if lock:
        flash.lock()
    return Token(model=model, flash=flash, device_key=device_key, rtc=rtc, battery=battery, clock=clock)
