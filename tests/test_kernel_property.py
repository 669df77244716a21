"""Property tests: C == Python == pyotp for random keys, counters, digits, algorithms."""

from __future__ import annotations

import base64

import pyotp
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.kernel import python_backend
from vtoken.oath import MAX_COUNTER, hotp

keys = st.binary(min_size=1, max_size=200)
counters = st.integers(min_value=0, max_value=MAX_COUNTER - 64)
digit_counts = st.integers(min_value=6, max_value=10)
algorithms = st.sampled_from(["sha1", "sha256", "sha512"])


class AnyLengthHOTP(pyotp.HOTP):
    """pyotp's HOTP without its 112-bit minimum, so 1-byte keys can be cross-checked."""

    min_secret_length_bits = 8


def pyotp_code(key: bytes, counter: int, digits: int, algorithm: str) -> str:
    """pyotp's answer, as an independent implementation.

    pyotp computes ``int % 10**digits`` and zero-pads the result the same way as
    RFC 4226; it takes the key as base32 text.
    """
    secret = base64.b32encode(key).decode("ascii")
    return AnyLengthHOTP(secret, digits=digits, digest=algorithm).at(counter)


@settings(max_examples=300, deadline=None)
@given(key=keys, counter=counters, digits=digit_counts, algorithm=algorithms)
def test_core_matches_pyotp(key: bytes, counter: int, digits: int, algorithm: str) -> None:
    assert hotp(key, counter, digits=digits, algorithm=algorithm) == pyotp_code(key, counter, digits, algorithm)


@settings(max_examples=300, deadline=None)
@given(key=keys, counter=counters, digits=digit_counts, algorithm=algorithms)
def test_c_equals_python_equals_pyotp(cbackend, key: bytes, counter: int, digits: int, algorithm: str) -> None:
    c_codes = cbackend.prepare(key, algorithm=algorithm, digits=digits).generate(counter, 8)
    py_codes = python_backend().prepare(key, algorithm=algorithm, digits=digits).generate(counter, 8)
    assert c_codes.tolist() == py_codes.tolist()
    assert f"{int(c_codes[0]):0{digits}d}" == pyotp_code(key, counter, digits, algorithm)


@settings(max_examples=150, deadline=None)
@given(key=keys, counter=counters, digits=digit_counts, algorithm=algorithms, data=st.data())
def test_window_scans_agree(cbackend, key: bytes, counter: int, digits: int, algorithm: str, data) -> None:
    c_key = cbackend.prepare(key, algorithm=algorithm, digits=digits)
    py_key = python_backend().prepare(key, algorithm=algorithm, digits=digits)
    window = 40
    codes = py_key.generate(counter, window + 1).tolist()
    i = data.draw(st.integers(min_value=0, max_value=window - 1))
    assert c_key.find(counter, window, codes[i]) == py_key.find(counter, window, codes[i])
    assert counter + i in c_key.find(counter, window, codes[i])
    pair = c_key.find_pair(counter, window, codes[i], codes[i + 1])
    assert pair == py_key.find_pair(counter, window, codes[i], codes[i + 1])
    assert counter + i in pair
    noise = data.draw(st.integers(min_value=0, max_value=10**digits - 1))
    assert c_key.find(counter, window, noise) == py_key.find(counter, window, noise)
