"""Bad input to the OATH core: a ValueError subclass whose message names the problem."""

from __future__ import annotations

import pytest

from vtoken import errors
from vtoken.oath import hotp, parse_algorithm, parse_code, parse_key, time_step, totp

KEY = b"12345678901234567890"


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: hotp(b"", 0), errors.InvalidKeyError, "empty"),
        (lambda: hotp("3132", 0), errors.InvalidKeyError, "bytes"),
        (lambda: hotp(KEY, 0, digits=5), errors.InvalidDigitsError, "between 6 and 10"),
        (lambda: hotp(KEY, 0, digits=11), errors.InvalidDigitsError, "between 6 and 10"),
        (lambda: hotp(KEY, 0, digits=6.0), errors.InvalidDigitsError, "integer"),
        (lambda: hotp(KEY, 0, algorithm="md5"), errors.UnknownAlgorithmError, "unknown algorithm"),
        (lambda: hotp(KEY, -1), errors.InvalidCounterError, "negative"),
        (lambda: hotp(KEY, 2**64), errors.InvalidCounterError, "64 bits"),
        (lambda: hotp(KEY, True), errors.InvalidCounterError, "integer"),
        (lambda: totp(KEY, -1), errors.InvalidTimeError, "negative"),
        (lambda: totp(KEY, 10, t0=20), errors.InvalidTimeError, "before T0"),
        (lambda: totp(KEY, float("nan")), errors.InvalidTimeError, "finite"),
        (lambda: totp(KEY, 10, period=0), errors.InvalidPeriodError, "positive"),
        (lambda: totp(KEY, "now"), errors.InvalidTimeError, "Unix seconds"),
        (lambda: parse_code("12a456", 6), errors.InvalidCodeError, "digits 0-9"),
        (lambda: parse_code("１２３４５６", 6), errors.InvalidCodeError, "digits 0-9"),
        (lambda: parse_code("12345", 6), errors.InvalidCodeError, "exactly 6 digits"),
        (lambda: parse_code("1234567", 6), errors.InvalidCodeError, "exactly 6 digits"),
        (lambda: parse_code(1000000, 6), errors.InvalidCodeError, "6 digits"),
        (lambda: parse_code(" 123456", 6), errors.InvalidCodeError, "digits 0-9"),
        (lambda: parse_key("abc"), errors.InvalidKeyError, "odd number"),
        (lambda: parse_key("zz"), errors.InvalidKeyError, "0-9 and a-f"),
        (lambda: parse_key("   "), errors.InvalidKeyError, "empty"),
        (lambda: parse_key("18!!", "base32"), errors.InvalidKeyError, "base32"),
        (lambda: parse_key("00", "base64"), errors.InvalidKeyError, "encoding"),
    ],
)
def test_bad_input_is_a_named_value_error(call, exc, words: str) -> None:
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, errors.VTokenError)
    assert words in str(info.value)


def test_parse_key_forms() -> None:
    assert parse_key("3132 3334") == b"1234"
    with pytest.raises(errors.InvalidKeyError):
        parse_key("GEZDGNBV")  # base32 text is not hex: hex is the default and is never guessed
    assert parse_key("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "base32") == KEY
    assert parse_key("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "base32") == KEY
    assert parse_key("MFRGG", "base32") == b"abc"  # padding omitted


def test_key_text_never_echoed() -> None:
    secret = "ZZ" + "41" * 10
    with pytest.raises(errors.InvalidKeyError) as info:
        parse_key(secret)
    assert secret not in str(info.value)
    assert "41414141" not in str(info.value)


def test_algorithm_names() -> None:
    assert parse_algorithm("SHA-256").value == "sha256"
    assert parse_algorithm("sha512").block_size == 128


def test_codes_keep_leading_zeros() -> None:
    assert parse_code("012345", 6) == 12345
    assert time_step(0) == 0
