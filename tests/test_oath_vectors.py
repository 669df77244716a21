"""RFC 4226 and RFC 6238 vectors through the OATH core and both kernel backends."""

from __future__ import annotations

import numpy as np
import pytest

from tests.vectors import RFC4226_KEY, RFC4226_VECTORS, RFC6238_KEYS, RFC6238_VECTORS
from vtoken.oath import hotp, hotp_value, time_step, totp


@pytest.mark.parametrize(("counter", "value31", "code"), RFC4226_VECTORS)
def test_rfc4226_core(counter: int, value31: int, code: str) -> None:
    assert hotp(RFC4226_KEY, counter) == code
    # 10 digits keep the whole 31-bit truncated value (RFC 4226 App. D "Decimal").
    assert hotp_value(RFC4226_KEY, counter, digits=10) == value31


@pytest.mark.parametrize(("counter", "value31", "code"), RFC4226_VECTORS)
def test_rfc4226_kernel(backend, counter: int, value31: int, code: str) -> None:
    six = backend.prepare(RFC4226_KEY, digits=6)
    ten = backend.prepare(RFC4226_KEY, digits=10)
    assert int(six.generate(counter, 1)[0]) == int(code)
    assert int(ten.generate(counter, 1)[0]) == value31
    assert six.find(0, 10, code) == (counter,)


def test_rfc4226_kernel_bulk(backend) -> None:
    codes = backend.prepare(RFC4226_KEY).generate(0, 10)
    assert codes.dtype == np.uint32
    assert [f"{int(c):06d}" for c in codes] == [code for _, _, code in RFC4226_VECTORS]


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS)
def test_rfc6238_core(at: int, algorithm: str, code: str) -> None:
    assert totp(RFC6238_KEYS[algorithm], at, digits=8, algorithm=algorithm) == code


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS)
def test_rfc6238_kernel(backend, at: int, algorithm: str, code: str) -> None:
    prepared = backend.prepare(RFC6238_KEYS[algorithm], algorithm=algorithm, digits=8)
    step = time_step(at)
    assert f"{int(prepared.generate(step, 1)[0]):08d}" == code
    start = max(0, step - 5)
    assert prepared.find(start, 11, code) == (step,)


def test_rfc6238_step_beyond_32_bits() -> None:
    # 20000000000 s is past 2038 and its step still fits; a step past 2^32 works too.
    assert time_step(20000000000) == 666666666
    big = 2**32 * 30 + 59
    assert time_step(big) == 2**32 + 1
    assert totp(RFC4226_KEY, big) == hotp(RFC4226_KEY, 2**32 + 1)


def test_period_and_t0() -> None:
    key = RFC4226_KEY
    assert totp(key, 1000 + 59, period=60, t0=1000) == hotp(key, 0)
    assert totp(key, 1000 + 60, period=60, t0=1000) == hotp(key, 1)
    assert time_step(89.9, period=30) == 2
