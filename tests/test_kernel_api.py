"""The kernel's interface: output arrays, windows, ambiguity, counter limits."""

from __future__ import annotations

import numpy as np
import pytest

from tests.vectors import RFC4226_KEY
from validator.kernel import get_backend, python_backend
from vtoken import errors
from vtoken.oath import MAX_COUNTER, hotp


def test_generate_into_given_array(backend) -> None:
    out = np.zeros(12, dtype=np.uint32)
    result = backend.prepare(RFC4226_KEY).generate(0, 10, out=out)
    assert result is out
    assert int(out[1]) == 287082 and int(out[10]) == 0


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros(10, dtype=np.int32), "dtype uint32"),
        (np.zeros(10, dtype=np.uint64), "dtype uint32"),
        (np.zeros(10, dtype=np.float64), "dtype uint32"),
        (np.zeros(20, dtype=np.uint32)[::2], "C-contiguous"),
        (np.zeros((2, 5), dtype=np.uint32), "one-dimensional"),
        (np.zeros(5, dtype=np.uint32), "holds 5 codes"),
        ([0] * 10, "numpy array"),
    ],
)
def test_bad_output_array_refused(backend, array, words: str) -> None:
    with pytest.raises(errors.InvalidArrayError, match=words):
        backend.prepare(RFC4226_KEY).generate(0, 10, out=array)


def test_read_only_array_refused(backend) -> None:
    out = np.zeros(10, dtype=np.uint32)
    out.flags.writeable = False
    with pytest.raises(errors.InvalidArrayError, match="writeable"):
        backend.prepare(RFC4226_KEY).generate(0, 10, out=out)


def test_find_reports_every_match_in_order(backend) -> None:
    prepared = backend.prepare(RFC4226_KEY)
    reference = python_backend().prepare(RFC4226_KEY)
    window = 50
    target = hotp(RFC4226_KEY, 7)
    hits = prepared.find(0, window, target)
    expected = tuple(c for c in range(window) if reference.code(c) == int(target))
    assert hits == expected and 7 in hits


def test_find_many_matches_beyond_initial_capacity(backend) -> None:
    # Search a window for the code that recurs most in it, and compare every hit with numpy.
    prepared = backend.prepare(b"\x01")
    codes = python_backend().prepare(b"\x01").generate(0, 3000)
    values, counts = np.unique(codes, return_counts=True)
    code = int(values[np.argmax(counts)])
    expected = tuple(int(i) for i in np.nonzero(codes == code)[0])
    assert prepared.find(0, 3000, code) == expected


def test_find_pair(backend) -> None:
    prepared = backend.prepare(RFC4226_KEY)
    assert prepared.find_pair(0, 9, "287082", "359152") == (1,)
    assert prepared.find_pair(0, 9, "359152", "287082") == ()
    assert prepared.find_pair(2, 7, "287082", "359152") == ()  # c=1 is outside the range
    assert prepared.find_pair(0, 1, "755224", "287082") == (0,)  # needs code(c+1) beyond the range


def test_empty_ranges(backend) -> None:
    prepared = backend.prepare(RFC4226_KEY)
    assert prepared.generate(5, 0).shape == (0,)
    assert prepared.find(5, 0, "755224") == ()
    assert prepared.find_pair(5, 0, "755224", "287082") == ()


def test_counter_limits(backend) -> None:
    prepared = backend.prepare(RFC4226_KEY)
    top = MAX_COUNTER
    assert int(prepared.generate(top, 1)[0]) == int(hotp(RFC4226_KEY, top))
    assert prepared.find(top - 2, 3, hotp(RFC4226_KEY, top)) == (top,)
    with pytest.raises(errors.InvalidCounterError, match="past 2\\^64-1"):
        prepared.generate(top, 2)
    with pytest.raises(errors.InvalidCounterError, match="past 2\\^64-1"):
        prepared.find_pair(top, 1, "000000", "000000")
    with pytest.raises(errors.InvalidCounterError):
        prepared.generate(-1, 1)
    with pytest.raises(errors.InvalidCounterError):
        prepared.find(0, -1, "000000")


def test_code_form_checked(backend) -> None:
    prepared = backend.prepare(RFC4226_KEY, digits=8)
    with pytest.raises(errors.InvalidCodeError):
        prepared.find(0, 10, "287082")  # six digits for an eight-digit key
    with pytest.raises(errors.InvalidCodeError):
        prepared.find_pair(0, 10, "12345678", "1234567x")


def test_prepare_checks(backend) -> None:
    with pytest.raises(errors.InvalidKeyError):
        backend.prepare(b"")
    with pytest.raises(errors.InvalidDigitsError):
        backend.prepare(RFC4226_KEY, digits=4)
    with pytest.raises(errors.UnknownAlgorithmError):
        backend.prepare(RFC4226_KEY, algorithm="sha3")


def test_repr_hides_key(backend) -> None:
    prepared = backend.prepare(b"SUPERSECRETSEED")
    assert "SUPERSECRET" not in repr(prepared) and "5355" not in repr(prepared)


def test_backend_selection() -> None:
    assert get_backend("python").name == "python"
    assert get_backend(environ={"VTOKEN_BACKEND": "python"}).name == "python"
    with pytest.raises(errors.BackendError, match="unknown backend"):
        get_backend("fortran")


def test_forced_c_backend(cbackend) -> None:
    assert get_backend("c").name == "c"
    assert get_backend("auto").name == "c"
    assert cbackend.cpu_path in cbackend.available_paths()
