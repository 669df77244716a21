"""Serial numbers: Damm check digit, normalization, display format."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vtoken.serialno as serialno
from vtoken.errors import InvalidSerialError
from vtoken.serialno import (
    DAMM_TABLE,
    MAX_PAYLOAD,
    check_serial,
    damm_check_digit,
    format_serial,
    has_valid_check_digit,
    make_serial,
    normalize,
)

DIGITS = "0123456789"

# Samples spread over the payload range, plus the edges.
SAMPLE_PAYLOADS = [0, 1, 9, 10, 572, 123456789, MAX_PAYLOAD, 500000000, 31415926, 271828182] + [
    (n * 7919 * 104729) % (MAX_PAYLOAD + 1) for n in range(1, 41)
]


def single_substitutions(serial: str) -> list[str]:
    """Every serial that differs from ``serial`` in exactly one digit."""
    return [serial[:i] + d + serial[i + 1 :] for i in range(len(serial)) for d in DIGITS if d != serial[i]]


def adjacent_transpositions(serial: str) -> list[str]:
    """Every serial obtained by swapping two adjacent, different digits."""
    return [
        serial[:i] + serial[i + 1] + serial[i] + serial[i + 2 :]
        for i in range(len(serial) - 1)
        if serial[i] != serial[i + 1]
    ]


# --- the table --------------------------------------------------------------


def test_table_is_a_quasigroup_with_zero_diagonal() -> None:
    assert len(DAMM_TABLE) == 10
    for row in DAMM_TABLE:
        assert sorted(row) == list(range(10))
    for col in range(10):
        assert sorted(row[col] for row in DAMM_TABLE) == list(range(10))
    assert all(DAMM_TABLE[i][i] == 0 for i in range(10))


def test_table_is_weakly_totally_antisymmetric() -> None:
    # (c*x)*y == (c*y)*x  implies  x == y
    for c in range(10):
        for x in range(10):
            for y in range(10):
                if x != y:
                    assert DAMM_TABLE[DAMM_TABLE[c][x]][y] != DAMM_TABLE[DAMM_TABLE[c][y]][x]


# --- known values -------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "check"),
    [("572", "4"), ("5724", "0"), ("0", "0"), ("1", "3"), ("000000000", "0"), ("123456789", "4")],
)
def test_known_check_digits(digits: str, check: str) -> None:
    assert damm_check_digit(digits) == check


@pytest.mark.parametrize(
    ("number", "serial"),
    [(0, "0000000000"), (572, "0000005724"), (123456789, "1234567894"), (1, "0000000013")],
)
def test_make_serial_known(number: int, serial: str) -> None:
    assert make_serial(number) == serial
    assert has_valid_check_digit(serial)
    assert check_serial(serial) == serial


def test_make_serial_max() -> None:
    serial = make_serial(MAX_PAYLOAD)
    assert len(serial) == 10 and serial.startswith("999999999")
    assert has_valid_check_digit(serial)


@pytest.mark.parametrize("bad", [-1, MAX_PAYLOAD + 1, 10**12, True, 1.0, "123", None])
def test_make_serial_rejects(bad: object) -> None:
    with pytest.raises(InvalidSerialError):
        make_serial(bad)  # type: ignore[arg-type]


def test_damm_check_digit_rejects_non_digits() -> None:
    for bad in ["", "12a", "١٢٣"]:
        with pytest.raises(InvalidSerialError):
            damm_check_digit(bad)


# --- error detection ----------------------------------------------------------------


@pytest.mark.parametrize("payload", SAMPLE_PAYLOADS)
def test_every_single_substitution_is_caught(payload: int) -> None:
    serial = make_serial(payload)
    for wrong in single_substitutions(serial):
        assert not has_valid_check_digit(wrong), wrong
        with pytest.raises(InvalidSerialError, match="probably mistyped"):
            check_serial(wrong)


@pytest.mark.parametrize("payload", SAMPLE_PAYLOADS)
def test_every_adjacent_transposition_is_caught(payload: int) -> None:
    serial = make_serial(payload)
    for wrong in adjacent_transpositions(serial):
        assert not has_valid_check_digit(wrong), wrong
        with pytest.raises(InvalidSerialError, match="probably mistyped"):
            check_serial(wrong)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_PAYLOAD))
def test_property_errors_caught(payload: int) -> None:
    serial = make_serial(payload)
    assert has_valid_check_digit(serial)
    for wrong in single_substitutions(serial) + adjacent_transpositions(serial):
        assert not has_valid_check_digit(wrong)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=DIGITS, min_size=5, max_size=19))
def test_property_any_length(digits: str) -> None:
    serial = digits + damm_check_digit(digits)
    assert check_serial(serial) == serial
    for wrong in single_substitutions(serial) + adjacent_transpositions(serial):
        assert not has_valid_check_digit(wrong)


# --- normalize ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123-456-789-4", "1234567894"),
        (" 123 456 789 4 ", "1234567894"),
        ("1234567894", "1234567894"),
        ("123456", "123456"),
        ("1" * 64, "1" * 64),
        ("2 1 0 4-0 0 0 1 2 3 4 5 6", "2104000123456"),
        ("12345", "12345"),
        ("1", "1"),
        # vendor serials: kept exactly as written (corpus: multiOTP, NagraID, privacyIDEA)
        ("ZZ8000000001", "ZZ8000000001"),
        (" 306EUO4-00960 ", "306EUO4-00960"),
        ("PW001", "PW001"),
        ("pw001", "pw001"),
        ("XXXX0000001F", "XXXX0000001F"),
        ("htok_sha256_1", "htok_sha256_1"),
        ("UBOM508327_X", "UBOM508327_X"),
        ("a.b-c_d", "a.b-c_d"),
        ("12345a7890", "12345a7890"),
        ("123_456_789", "123_456_789"),
        ("123.456.789", "123.456.789"),
        ("A" * 64, "A" * 64),
    ],
)
def test_normalize_ok(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  - ",
        "1" * 65,  # too long
        "A" * 65,
        "-ZZ8000000001",  # must start with a letter or digit
        ".hidden",
        "ZZ 8000000001",  # spaces only in digit serials
        "ZZ8000000001#1",
        "a/b",
        "../etc",
        "ßerial",
        "١٢٣٤٥٦٧٨٩٠",  # Arabic-Indic digits are not ASCII digits
        "１２３４５６７８９０",  # full-width digits
        "123456\t7890",
        "+123456789",
    ],
)
def test_normalize_rejects(text: str) -> None:
    with pytest.raises(InvalidSerialError):
        normalize(text)
    with pytest.raises(InvalidSerialError):
        check_serial(text, require_check_digit=False)
    assert not has_valid_check_digit(text)


@pytest.mark.parametrize("bad", [None, 1234567891, b"1234567891"])
def test_normalize_rejects_non_strings(bad: object) -> None:
    with pytest.raises(InvalidSerialError, match="string"):
        normalize(bad)  # type: ignore[arg-type]
    assert not has_valid_check_digit(bad)  # type: ignore[arg-type]


def test_invalid_serial_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        normalize("x y")


def test_vendor_serials_compare_exactly() -> None:
    assert normalize("PW001") != normalize("pw001")
    assert normalize("306EUO4-00960") == "306EUO4-00960"  # the dash stays in a vendor serial
    assert not has_valid_check_digit("ZZ8000000001")
    with pytest.raises(InvalidSerialError, match="not a vtoken serial"):
        check_serial("ZZ8000000001")
    assert check_serial("ZZ8000000001", require_check_digit=False) == "ZZ8000000001"
    assert format_serial("306EUO4-00960") == "306EUO4-00960"


def test_rejected_serial_is_quoted_briefly() -> None:
    with pytest.raises(InvalidSerialError) as info:
        normalize("x" * 30 + " " + "y" * 1000)
    assert len(str(info.value)) < 200


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=80))
def test_normalize_is_idempotent(text: str) -> None:
    try:
        once = normalize(text)
    except InvalidSerialError:
        return
    assert normalize(once) == once
    assert 1 <= len(once) <= serialno.MAX_SERIAL_LENGTH


# --- check_serial -------------------------------------------------------------------------


def test_check_serial_normalizes() -> None:
    assert check_serial(" 000-000-572-4 ") == "0000005724"


def test_check_serial_mistyped_message() -> None:
    with pytest.raises(InvalidSerialError) as info:
        check_serial("000-000-572-5")
    assert "probably mistyped" in str(info.value)


def test_vendor_serial_without_check_digit() -> None:
    feitian = "2104000123456"  # 13 digits, no check digit
    assert not has_valid_check_digit(feitian)
    with pytest.raises(InvalidSerialError, match="probably mistyped"):
        check_serial(feitian)
    assert check_serial(feitian, require_check_digit=False) == feitian
    assert check_serial("2104-0001-23456", require_check_digit=False) == feitian


# --- format_serial ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "shown"),
    [
        ("1234567894", "123-456-789-4"),
        ("123-4567894", "123-456-789-4"),
        ("2104000123456", "210-400-012-345-6"),
        ("123456", "123-456"),
        ("1234567", "123-456-7"),
    ],
)
def test_format_serial(serial: str, shown: str) -> None:
    assert format_serial(serial) == shown
    assert normalize(shown) == normalize(serial)


def test_format_serial_rejects_garbage() -> None:
    with pytest.raises(InvalidSerialError):
        format_serial("a b c")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_PAYLOAD))
def test_format_round_trip(payload: int) -> None:
    serial = make_serial(payload)
    assert check_serial(format_serial(serial)) == serial


def test_doctests() -> None:
    result = doctest.testmod(serialno)
    assert result.failed == 0 and result.attempted > 0
