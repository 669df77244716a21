"""Every CPU path of the C kernel gives the same answers as the portable path and the Python twin.

The C kernel dispatches at run time to ``avx512`` (16 messages per batch, 8 for SHA-512), ``sha-ni``
(x86 SHA extensions, two interleaved streams) or ``portable``. Each test here forces one path with
``CBackend.set_path`` (a fixture restores ``auto`` afterwards) and compares ``generate``, ``find`` and
``find_pair`` with the portable path and with :class:`validator._pykernel.PythonBackend`.

Which paths exist is checked against ``/proc/cpuinfo``. On a CPU without SHA-NI or AVX-512, the
test checks that the path is absent and that forcing it raises ``BackendError``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load_c_backend
from validator.kernel import python_backend
from validator._pykernel import PythonBackend
from vtoken.errors import BackendError, InvalidInputError
from vtoken.oath import MAX_COUNTER

pytestmark = pytest.mark.requires_c

ALL_PATHS = ("portable", "sha-ni", "avx512")
ALGORITHMS = ("sha1", "sha256", "sha512")
#: window lengths around the SIMD batch sizes (16 lanes; 8 for SHA-512) and the kernel's 256-code chunks
ODD_WINDOWS = (0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257)
RESYNC_WINDOW = 5761  # ±1 day of 30 s steps


def cpu_flags() -> set[str]:
    """The CPU feature flags the Linux kernel reports (empty when unknown or not x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def expected_paths() -> set[str]:
    """The paths this CPU should offer. Linux lists AVX-512 flags only when the OS saves the zmm state.

    The kernel's AVX-512 functions are compiled for AVX-512 F, BW and VL, so it needs all three;
    every CPU that has BW also has VL.
    """
    flags = cpu_flags()
    paths = {"portable"}
    if "sha_ni" in flags:
        paths.add("sha-ni")
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        paths.add("avx512")
    return paths


@pytest.fixture(scope="module")
def cb():
    return load_c_backend()


@pytest.fixture(params=ALL_PATHS)
def path(request: pytest.FixtureRequest, cb):
    """Force one CPU path for the test; restore the automatic choice afterwards."""
    name = request.param
    if name not in cb.available_paths():
        pytest.skip(f"CPU path {name} is not available on this machine")
    cb.set_path(name)
    try:
        yield name
    finally:
        cb.set_path("auto")


def on_path(cb, name: str, fn):
    """Run fn() with path `name` forced, then put back the path that was active."""
    was = cb.cpu_path
    cb.set_path(name)
    try:
        return fn()
    finally:
        cb.set_path(was)


# ---- which paths exist ----------------------------------------------------------------------


def test_available_paths_match_this_cpu(cb) -> None:
    available = set(cb.available_paths())
    expected = expected_paths()
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        assert available == expected
    else:
        assert available == {"portable"}
    for name in set(ALL_PATHS) - available:
        with pytest.raises(BackendError, match="not available"):
            cb.set_path(name)
    with pytest.raises(BackendError, match="unknown CPU path"):
        cb.set_path("neon")
    cb.set_path("auto")


def test_auto_picks_the_fastest_path(cb) -> None:
    cb.set_path("auto")
    available = cb.available_paths()
    best = next(p for p in ("avx512", "sha-ni", "portable") if p in available)
    assert cb.cpu_path == best


def test_forced_path_is_reported(cb, path) -> None:
    assert cb.cpu_path == path
    assert cb.cpu_path in cb.available_paths()


def test_failed_set_path_keeps_the_current_path(cb, path) -> None:
    for name in set(ALL_PATHS) - set(cb.available_paths()):
        with pytest.raises(BackendError):
            cb.set_path(name)
    assert cb.cpu_path == path


# ---- property test: random keys, counters, windows -----------------------------------------


@st.composite
def window_cases(draw):
    """(key, algorithm, digits, counter0, count) with counter0 + count <= MAX_COUNTER (room for find_pair)."""
    key = draw(st.binary(min_size=1, max_size=200))
    algorithm = draw(st.sampled_from(ALGORITHMS))
    digits = draw(st.integers(min_value=6, max_value=10))
    count = draw(st.sampled_from(ODD_WINDOWS) | st.integers(min_value=0, max_value=300))
    top = MAX_COUNTER - count  # counter0 + count <= MAX_COUNTER
    counter0 = draw(
        st.integers(min_value=0, max_value=top)
        # a 2^32 boundary inside the window: the high counter word changes mid-batch
        | st.builds(
            lambda hi, back: min(top, max(0, (hi << 32) - back)),
            st.integers(min_value=1, max_value=(1 << 32) - 1),
            st.integers(min_value=0, max_value=40),
        )
        # the top of the counter range
        | st.integers(min_value=max(0, top - 40), max_value=top)
    )
    return key, algorithm, digits, counter0, count


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=window_cases(), data=st.data())
def test_path_equals_portable_and_python(cb, path, case, data) -> None:
    key, algorithm, digits, counter0, count = case
    c_key = cb.prepare(key, algorithm=algorithm, digits=digits)
    py_key = python_backend().prepare(key, algorithm=algorithm, digits=digits)

    codes = c_key.generate(counter0, count)
    portable = on_path(cb, "portable", lambda: c_key.generate(counter0, count))
    python = py_key.generate(counter0, count + 1)  # one more, for pairs
    assert codes.tolist() == portable.tolist() == python[:count].tolist()

    if count == 0:
        assert c_key.find(counter0, 0, 0) == () and c_key.find_pair(counter0, 0, 0, 0) == ()
        return
    i = data.draw(st.integers(min_value=0, max_value=count - 1), label="index")
    code, nxt = int(python[i]), int(python[i + 1])
    noise = data.draw(st.integers(min_value=0, max_value=10**digits - 1), label="noise")

    found = c_key.find(counter0, count, code)
    assert counter0 + i in found
    assert list(found) == sorted(found)
    assert found == py_key.find(counter0, count, code)
    assert found == on_path(cb, "portable", lambda: c_key.find(counter0, count, code))
    assert c_key.find(counter0, count, noise) == py_key.find(counter0, count, noise)

    pairs = c_key.find_pair(counter0, count, code, nxt)
    assert counter0 + i in pairs
    assert pairs == py_key.find_pair(counter0, count, code, nxt)
    assert pairs == on_path(cb, "portable", lambda: c_key.find_pair(counter0, count, code, nxt))


# ---- fixed cases: odd window lengths, 2^32 crossings, the top of the range ---------------------

KEYS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("count", (*ODD_WINDOWS, RESYNC_WINDOW))
def test_window_lengths(cb, path, algorithm: str, count: int) -> None:
    counter0 = 1_000_003
    c_key = cb.prepare(KEYS[algorithm], algorithm=algorithm, digits=8)
    codes = c_key.generate(counter0, count).tolist()
    assert codes == on_path(cb, "portable", lambda: c_key.generate(counter0, count)).tolist()
    if count <= 257:
        assert codes == python_backend().prepare(KEYS[algorithm], algorithm=algorithm, digits=8).generate(
            counter0, count
        ).tolist()
    # Into a caller's array exactly as long as the window: nothing past the end is written.
    guard = np.full(count + 4, 0xFFFFFFFF, dtype=np.uint32)
    c_key.generate(counter0, count, out=guard[:count])
    assert guard[:count].tolist() == codes and guard[count:].tolist() == [0xFFFFFFFF] * 4


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("boundary", (1 << 32, 1 << 33, 0xABCD << 32, MAX_COUNTER + 1 - (1 << 32)))
def test_counters_crossing_a_2_32_boundary(cb, path, algorithm: str, boundary: int) -> None:
    c_key = cb.prepare(KEYS[algorithm], algorithm=algorithm, digits=10)
    py_key = python_backend().prepare(KEYS[algorithm], algorithm=algorithm, digits=10)
    for back in range(0, 18):
        for count in (16, 17, 33):
            counter0 = boundary - back
            codes = c_key.generate(counter0, count).tolist()
            assert codes == py_key.generate(counter0, count).tolist(), (counter0, count)
            assert codes == on_path(cb, "portable", lambda: c_key.generate(counter0, count)).tolist()
            j = min(back, count - 2)  # the pair straddling the boundary (or close to it)
            assert counter0 + j in c_key.find_pair(counter0, count - 1, codes[j], codes[j + 1])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_top_of_the_counter_range(cb, path, algorithm: str) -> None:
    c_key = cb.prepare(KEYS[algorithm], algorithm=algorithm, digits=6)
    py_key = python_backend().prepare(KEYS[algorithm], algorithm=algorithm, digits=6)
    for count in (1, 2, 7, 8, 9, 15, 16, 17, 40):
        counter0 = MAX_COUNTER - count + 1  # the window ends at 2^64 - 1
        codes = c_key.generate(counter0, count).tolist()
        assert codes == py_key.generate(counter0, count).tolist()
        assert counter0 + count - 1 in c_key.find(counter0, count, codes[-1])
        pair0 = counter0 - 1  # the pair window's last code is at 2^64 - 1
        prev = int(py_key.generate(pair0, 1)[0])
        assert c_key.find_pair(pair0, count, prev, codes[0]) == py_key.find_pair(pair0, count, prev, codes[0])
        assert pair0 in c_key.find_pair(pair0, count, prev, codes[0])


# ---- the resync window: every match, in order --------------------------------------------------

_PY_RESYNC: dict[str, list[int]] = {}


def python_resync_codes(algorithm: str) -> list[int]:
    if algorithm not in _PY_RESYNC:
        key = python_backend().prepare(KEYS[algorithm], algorithm=algorithm, digits=6)
        _PY_RESYNC[algorithm] = key.generate(50_000_000, RESYNC_WINDOW + 1).tolist()
    return _PY_RESYNC[algorithm]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resync_window_finds_every_match_in_order(cb, path, algorithm: str) -> None:
    counter0 = 50_000_000
    codes = python_resync_codes(algorithm)
    c_key = cb.prepare(KEYS[algorithm], algorithm=algorithm, digits=6)
    assert c_key.generate(counter0, RESYNC_WINDOW + 1).tolist() == codes

    # A 6-digit code that occurs more than once in 5761 counters (about 16 such codes expected).
    seen: dict[int, list[int]] = {}
    for i, code in enumerate(codes[:RESYNC_WINDOW]):
        seen.setdefault(code, []).append(counter0 + i)
    repeated = [hits for hits in seen.values() if len(hits) >= 2]
    assert repeated, "expected at least one repeated 6-digit code in the window"
    for hits in repeated:
        assert list(c_key.find(counter0, RESYNC_WINDOW, codes[hits[0] - counter0])) == hits

    for i in (0, 1, 15, 16, 17, 2880, RESYNC_WINDOW - 17, RESYNC_WINDOW - 1):
        expect = tuple(
            counter0 + j for j in range(RESYNC_WINDOW) if codes[j] == codes[i] and codes[j + 1] == codes[i + 1]
        )
        assert c_key.find_pair(counter0, RESYNC_WINDOW, codes[i], codes[i + 1]) == expect


# ---- many keys at once (fc_generate_multi, no Python wrapper yet) -------------------------------


def _lib():
    from validator._fastcheck_cffi import ffi, lib  # type: ignore[import-not-found]

    return ffi, lib


_ALG_IDS = {"sha1": 1, "sha256": 2, "sha512": 3}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=200),
            st.sampled_from(ALGORITHMS),
            st.integers(min_value=6, max_value=10),
            st.integers(min_value=0, max_value=MAX_COUNTER)
            | st.integers(min_value=(1 << 32) - 2, max_value=(1 << 32) + 2)
            | st.integers(min_value=MAX_COUNTER - 2, max_value=MAX_COUNTER),
        ),
        min_size=0,
        max_size=40,
    )
)
def test_generate_multi(cb, path, specs) -> None:
    ffi, lib = _lib()
    n = len(specs)
    keys = [ffi.new("fc_key *") for _ in specs]
    for k, (key, algorithm, digits, _) in zip(keys, specs):
        assert lib.fc_key_init(k, _ALG_IDS[algorithm], key, len(key), digits) == lib.FC_OK
    counters = ffi.new("uint64_t[]", [c for *_, c in specs] or [0])
    out = np.full(max(n, 1), 0xDEADBEEF, dtype=np.uint32)
    rc = lib.fc_generate_multi(ffi.new("fc_key *[]", keys or [ffi.NULL]), n, counters, ffi.from_buffer("uint32_t[]", out))
    assert rc == lib.FC_OK
    expect = [
        int(python_backend().prepare(key, algorithm=algorithm, digits=digits).generate(c, 1)[0])
        for key, algorithm, digits, c in specs
    ]
    assert out[:n].tolist() == expect


def test_generate_multi_refuses_bad_keys(cb, path) -> None:
    ffi, lib = _lib()
    good, bad = ffi.new("fc_key *"), ffi.new("fc_key *")
    assert lib.fc_key_init(good, lib.FC_SHA1, b"12345678901234567890", 20, 6) == lib.FC_OK
    assert lib.fc_key_init(bad, lib.FC_SHA1, b"12345678901234567890", 20, 6) == lib.FC_OK
    bad.alg = 9
    counters = ffi.new("uint64_t[]", [0, 1, 2])
    out = np.zeros(3, dtype=np.uint32)
    ptr = ffi.from_buffer("uint32_t[]", out)
    assert lib.fc_generate_multi(ffi.new("fc_key *[]", [good, bad, good]), 3, counters, ptr) == lib.FC_EINVAL
    assert out.tolist() == [0, 0, 0]
    assert lib.fc_generate_multi(ffi.new("fc_key *[]", [good, good, good]), 3, counters, ptr) == lib.FC_OK
    assert out.tolist() == [755224, 287082, 359152]  # RFC 4226 Appendix D


def test_no_path_leaks_between_tests(cb) -> None:
    """Whatever ran before, every test that forced a path put the automatic choice back."""
    assert cb.cpu_path == next(p for p in ("avx512", "sha-ni", "portable") if p in cb.available_paths())


def test_cpu_path_forced_by_environment(cb, path) -> None:
    """``VTOKEN_CPU_PATH`` picks the path, and ``vtoken backend`` reports it."""
    from click.testing import CliRunner

    from host.cli.main import main
    from validator.kernel import get_backend
    from vtoken.errors import BackendError

    try:
        assert get_backend("c", environ={"VTOKEN_CPU_PATH": path}).cpu_path == path
        shown = CliRunner().invoke(main, ["backend"], env={"VTOKEN_BACKEND": "c", "VTOKEN_CPU_PATH": path})
        assert shown.exit_code == 0 and f"cpu path: {path}" in shown.output
        with pytest.raises(BackendError, match="unknown CPU path"):
            get_backend("c", environ={"VTOKEN_CPU_PATH": "gpu"})
    finally:
        cb.set_path("auto")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=200),
            st.sampled_from(["sha1", "sha256", "sha512"]),
            st.integers(6, 10),
            st.integers(0, 2**64 - 1),
        ),
        max_size=40,
    )
)
def test_generate_multi_through_the_backends(cb, path, fleet) -> None:
    """A fleet's codes, one per key: every CPU path == the Python twin == one code at a time."""
    py = PythonBackend()
    c_keys = [cb.prepare(k, algorithm=a, digits=d) for k, a, d, _ in fleet]
    py_keys = [py.prepare(k, algorithm=a, digits=d) for k, a, d, _ in fleet]
    counters = [c for *_, c in fleet]
    codes = cb.generate_multi(c_keys, counters)
    assert codes.tolist() == py.generate_multi(py_keys, counters).tolist()
    assert codes.tolist() == [int(k.generate(c, 1)[0]) for k, c in zip(py_keys, counters)]
    with pytest.raises(InvalidInputError):
        cb.generate_multi(py_keys[:1] or [py.prepare(b"k")], [0])
    with pytest.raises(InvalidInputError):
        cb.generate_multi(c_keys, counters + [0])
