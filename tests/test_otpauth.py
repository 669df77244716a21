"""vtoken.otpauth: the Key Uri Format, checked against vectors and against pyotp both ways."""

from __future__ import annotations

import base64
import dataclasses
import doctest
import hashlib

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtoken import otpauth
from vtoken.errors import InvalidInputError, InvalidKeyError
from vtoken.oath import Algorithm, TokenKind, hotp, totp
from vtoken.otpauth import MAX_COUNTER, MAX_PERIOD, MAX_URI_LENGTH, OtpAuthKey, build_uri, parse_uri

RFC_SEED = b"12345678901234567890"
RFC_B32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#: A recognizable secret: it must never show up in a repr or an error message.
SECRET = bytes.fromhex("c0ffee005ec12e705ec12e705ec12e70feedface")
SECRET_B32 = base64.b32encode(SECRET).decode().rstrip("=")
AT = 1_767_225_615  # 2026-01-01T00:00:15Z
#: pyotp (2.10 on) refuses secrets shorter than 112 bits (NIST SP 800-63B); vtoken's parser does not.
PYOTP_MIN_SECRET_BYTES = 14
PYOTP_MAX_DIGITS = 8
PYOTP_MAX_PERIOD = 120
DIGESTS = {Algorithm.SHA1: hashlib.sha1, Algorithm.SHA256: hashlib.sha256, Algorithm.SHA512: hashlib.sha512}


def key(**kw: object) -> OtpAuthKey:
    fields: dict[str, object] = {"kind": TokenKind.TOTP, "secret": RFC_SEED, "account": "alice@example.com"}
    fields.update(kw)
    return OtpAuthKey(**fields)  # type: ignore[arg-type]


# --- vectors ----------------------------------------------------------------------------------

#: (URI, what it means, whether pyotp 2.12 reads the URI as written). Where pyotp does not, the test below
#: says why; pyotp still reads the canonical form we build of every key it can represent.
GOOD = [
    # The wiki's example.
    (
        "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
        OtpAuthKey(TokenKind.TOTP, base64.b32decode("JBSWY3DPEHPK3PXP"), "alice@google.com", "Example"),
        False,  # an 80-bit secret: pyotp wants 112 bits
    ),
    # The wiki's complete TOTP example, percent-encoded issuer in label and parameter.
    (
        "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"
        "&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30",
        OtpAuthKey(TokenKind.TOTP, base64.b32decode("HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"), "john.doe@email.com", "ACME Co"),
        True,
    ),
    # No issuer at all; lower-case, unpadded secret; SHA-256, 8 digits, 60 s.
    (
        f"otpauth://totp/alice?secret={RFC_B32.lower()}&algorithm=SHA256&digits=8&period=60",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "alice", None, Algorithm.SHA256, 8, 60),
        True,
    ),
    # The algorithm in any case.
    (
        f"otpauth://totp/alice?secret={RFC_B32}&algorithm=sha512",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "alice", None, Algorithm.SHA512),
        False,  # pyotp takes only upper case
    ),
    # Issuer only as a parameter; a padded secret.
    (
        "otpauth://totp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGE%3D%3D%3D%3D%3D%3D&issuer=Acme",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED + b"1", "bob", "Acme"),
        True,
    ),
    # %3A as the separator, and the optional spaces before the account (the wiki's ABNF).
    (
        f"otpauth://totp/Big%20Corp%3A%20%20carol?secret={RFC_B32}&issuer=Big%20Corp",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "carol", "Big Corp"),
        False,  # pyotp (issue 174) reads %3A as part of the name
    ),
    # HOTP with a counter, SHA-512, 10 digits (vtoken's range).
    (
        f"otpauth://hotp/vtoken:0000005724?secret={RFC_B32}&issuer=vtoken&algorithm=SHA512&digits=10&counter=42",
        OtpAuthKey(TokenKind.HOTP, RFC_SEED, "0000005724", "vtoken", Algorithm.SHA512, 10, counter=42),
        False,  # pyotp stops at 8 digits
    ),
    (
        f"otpauth://hotp/vtoken:0000005724?secret={RFC_B32}&issuer=vtoken&algorithm=SHA256&digits=7&counter=42",
        OtpAuthKey(TokenKind.HOTP, RFC_SEED, "0000005724", "vtoken", Algorithm.SHA256, 7, counter=42),
        True,
    ),
    # HOTP without a counter starts at 0 (lenient).
    (
        f"otpauth://hotp/dave?secret={RFC_B32}",
        OtpAuthKey(TokenKind.HOTP, RFC_SEED, "dave"),
        True,
    ),
    # A HOTP period is checked and dropped.
    (
        f"otpauth://hotp/dave?secret={RFC_B32}&period=30",
        OtpAuthKey(TokenKind.HOTP, RFC_SEED, "dave"),
        False,  # pyotp passes it on to HOTP() and fails
    ),
    # Largest counter; unknown parameters ignored; surrounding whitespace.
    (
        f"  otpauth://hotp/erin?secret={RFC_B32}&counter={MAX_COUNTER}&image=https%3A%2F%2Fx.example%2Fa.png\n",
        OtpAuthKey(TokenKind.HOTP, RFC_SEED, "erin", counter=MAX_COUNTER),
        True,
    ),
    # Upper-case type.
    (
        f"otpauth://TOTP/erin?secret={RFC_B32}",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "erin"),
        False,  # pyotp: "Not a supported OTP type"
    ),
    # Longest period.
    (
        f"otpauth://totp/frank?secret={RFC_B32}&period={MAX_PERIOD}",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "frank", period=MAX_PERIOD),
        False,  # pyotp allows at most 120 s
    ),
    # Non-ASCII account and issuer, percent-encoded UTF-8; '+' in the query is a space.
    (
        f"otpauth://totp/M%C3%BCller%20AG:j%C3%BCrgen?secret={RFC_B32}&issuer=M%C3%BCller+AG",
        OtpAuthKey(TokenKind.TOTP, RFC_SEED, "jürgen", "Müller AG"),
        True,
    ),
]


def pyotp_can_represent(k: OtpAuthKey) -> bool:
    """pyotp 2.12's limits: 6 to 8 digits, secrets of 112 bits or more, periods of at most 120 s."""
    return k.digits <= PYOTP_MAX_DIGITS and len(k.secret) >= PYOTP_MIN_SECRET_BYTES and k.period <= PYOTP_MAX_PERIOD


def check_pyotp_agrees(uri: str, expected: OtpAuthKey) -> None:
    """pyotp reads ``uri`` as ``expected`` and computes the same codes as vtoken."""
    theirs = pyotp.parse_uri(uri)
    assert base64.b32decode(theirs.secret.upper() + "=" * (-len(theirs.secret) % 8)) == expected.secret
    assert theirs.name == expected.account
    assert theirs.issuer == expected.issuer
    assert theirs.digits == expected.digits
    assert theirs.digest().name == expected.algorithm.value
    if expected.kind is TokenKind.TOTP:
        assert isinstance(theirs, pyotp.TOTP)
        assert theirs.interval == expected.period
        assert theirs.at(AT) == totp(expected.secret, AT, period=expected.period,
                                     digits=expected.digits, algorithm=expected.algorithm)
    else:
        assert isinstance(theirs, pyotp.HOTP)
        assert theirs.at(0) == hotp(expected.secret, expected.counter, digits=expected.digits,
                                    algorithm=expected.algorithm)


@pytest.mark.parametrize(("uri", "expected", "pyotp_reads_it"), GOOD)
def test_parse_vectors(uri: str, expected: OtpAuthKey, pyotp_reads_it: bool) -> None:
    assert parse_uri(uri) == expected
    assert parse_uri(build_uri(expected)) == expected


@pytest.mark.parametrize(("uri", "expected", "pyotp_reads_it"), GOOD)
def test_vectors_and_their_canonical_form_read_by_pyotp(uri: str, expected: OtpAuthKey, pyotp_reads_it: bool) -> None:
    """pyotp reads the vector as we do (where it can), and always our canonical form of what it can represent."""
    if pyotp_reads_it:
        check_pyotp_agrees(uri.strip(), expected)
    else:
        try:
            theirs = pyotp.parse_uri(uri.strip())
        except (ValueError, TypeError):
            pass  # the documented difference: pyotp refuses it
        else:
            assert (theirs.name, theirs.issuer) != (expected.account, expected.issuer)  # reads the label otherwise
    if pyotp_can_represent(expected):
        check_pyotp_agrees(build_uri(expected), expected)


def test_build_canonical_form() -> None:
    assert build_uri(key(issuer="Example", account="alice@google.com")) == (
        f"otpauth://totp/Example:alice@google.com?secret={RFC_B32}&issuer=Example&algorithm=SHA1&digits=6&period=30"
    )
    assert build_uri(OtpAuthKey(TokenKind.HOTP, b"1234567890", "a b+c/d", "Acme & Co", Algorithm.SHA256, 8, counter=7)) == (
        "otpauth://hotp/Acme%20%26%20Co:a%20b%2Bc%2Fd?secret=GEZDGNBVGY3TQOJQ&issuer=Acme%20%26%20Co"
        "&algorithm=SHA256&digits=8&counter=7"
    )


@pytest.mark.parametrize("algorithm", list(Algorithm))
@pytest.mark.parametrize("digits", [6, 7, 8])
def test_pyotp_provisioning_uris_parse(algorithm: Algorithm, digits: int) -> None:
    """What pyotp writes (defaults omitted, name quoted its way), we read; the codes agree."""
    digest = DIGESTS[algorithm]
    made = pyotp.TOTP(SECRET_B32, digits=digits, digest=digest, interval=45, name="x@y.example", issuer="Org Name")
    parsed = parse_uri(made.provisioning_uri())
    assert parsed == OtpAuthKey(TokenKind.TOTP, SECRET, "x@y.example", "Org Name", algorithm, digits, 45)
    assert totp(parsed.secret, AT, period=45, digits=digits, algorithm=algorithm) == made.at(AT)

    counted = pyotp.HOTP(SECRET_B32, digits=digits, digest=digest, initial_count=9, name="n", issuer=None)
    parsed = parse_uri(counted.provisioning_uri(initial_count=9))
    assert parsed == OtpAuthKey(TokenKind.HOTP, SECRET, "n", None, algorithm, digits, counter=9)
    assert hotp(parsed.secret, 9, digits=digits, algorithm=algorithm) == counted.at(0)


# --- errors -----------------------------------------------------------------------------------

T = f"otpauth://totp/Acme:alice?secret={SECRET_B32}"

BAD = [
    ("https://totp/a?secret=" + SECRET_B32, "scheme"),
    ("otpauth://motp/a?secret=" + SECRET_B32, "'totp' or 'hotp'"),
    ("otpauth:totp/a?secret=" + SECRET_B32, "'totp' or 'hotp'"),
    ("otpauth://totp/?secret=" + SECRET_B32, "no label"),
    ("otpauth://totp/Acme:?secret=" + SECRET_B32, "account name is empty"),
    ("otpauth://totp/:alice?secret=" + SECRET_B32, "empty issuer"),
    ("otpauth://totp/a:b:c?secret=" + SECRET_B32, "more than one ':'"),
    ("otpauth://totp/a%FF?secret=" + SECRET_B32, "UTF-8"),
    ("otpauth://totp/a%0Ab?secret=" + SECRET_B32, "non-printable"),
    ("otpauth://totp/alice", "no secret"),
    ("otpauth://totp/alice?secret=", "no secret"),
    (T + "&secret=" + SECRET_B32, "more than once"),
    ("otpauth://totp/alice?secret=" + SECRET_B32[:-1] + "1", "base32"),
    ("otpauth://totp/alice?secret=" + SECRET_B32[:3], "base32"),
    (T + "&issuer=Other", "differs from the label"),
    (T + "&algorithm=MD5", "unsupported algorithm"),
    (T + "&algorithm=SHA-256", "unsupported algorithm"),
    (T + "&algorithm=", "unsupported algorithm"),
    (T + "&digits=5", "between 6 and 10"),
    (T + "&digits=11", "between 6 and 10"),
    (T + "&digits=six", "decimal integer"),
    (T + "&digits=+6", "decimal integer"),
    (T + "&digits=%D9%A6", "decimal integer"),
    (T + "&period=0", "period"),
    (T + "&period=-30", "decimal integer"),
    (T + f"&period={MAX_PERIOD + 1}", "period"),
    (T + f"&counter={MAX_COUNTER + 1}", "2^63-1"),
    ("otpauth://hotp/a?counter=-1&secret=" + SECRET_B32, "decimal integer"),
    (T + "&encoder=steam", "Steam"),
    (T + "&x=1" * 40, "parameters"),
    (T + "&image=" + "a" * MAX_URI_LENGTH, "at most 4096"),
]


@pytest.mark.parametrize(("uri", "words"), BAD)
def test_parse_errors(uri: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as info:
        parse_uri(uri)
    message = str(info.value)
    assert words in message
    for secret_text in (SECRET_B32, SECRET_B32.lower(), SECRET.hex(), SECRET_B32[:16]):
        assert secret_text not in message


def test_bad_secret_is_a_key_error() -> None:
    with pytest.raises(InvalidKeyError, match="secret: base32"):
        parse_uri("otpauth://totp/a?secret=0000")


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"account": ""}, "account name is empty"),
        ({"account": "a:b"}, "must not contain ':'"),
        ({"issuer": "a:b"}, "must not contain ':'"),
        ({"issuer": ""}, "issuer is empty"),
        ({"account": " lead"}, "start with a space"),
        ({"account": "tab\there"}, "non-printable"),
        ({"secret": b""}, "key is empty"),
        ({"secret": "GEZDGNBV"}, "must be bytes"),
        ({"digits": 5}, "between 6 and 10"),
        ({"period": 0}, "period"),
        ({"period": 30.5}, "integer"),
        ({"counter": 3}, "TOTP key has no counter"),
        ({"kind": "totp"}, "TokenKind"),
        ({"algorithm": "sha1"}, "Algorithm"),
        ({"kind": TokenKind.HOTP, "period": 60}, "HOTP key has no period"),
        ({"kind": TokenKind.HOTP, "counter": -1}, "negative"),
        ({"kind": TokenKind.HOTP, "counter": MAX_COUNTER + 1}, "2^63-1"),
    ],
)
def test_key_checks(kw: dict, words: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as info:
        key(**kw)
    assert words in str(info.value)


def test_build_refuses_an_overlong_uri() -> None:
    with pytest.raises(InvalidInputError, match="more than 4096"):
        build_uri(key(account="a" * MAX_URI_LENGTH))


def test_secret_is_not_in_the_repr() -> None:
    k = key(secret=SECRET)
    for text in (repr(k), str(k)):
        assert "secret" not in text
        assert SECRET.hex() not in text and SECRET_B32 not in text and repr(SECRET) not in text


def test_label() -> None:
    assert key(issuer="Acme").label == "Acme:alice@example.com"
    assert key().label == "alice@example.com"


def test_doctests() -> None:
    result = doctest.testmod(otpauth)
    assert result.attempted > 0 and result.failed == 0


# --- round trip, by property -----------------------------------------------------------------

_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), min_size=1, max_size=30
).filter(lambda s: s.isprintable() and not s.startswith(" "))

keys = st.one_of(
    st.builds(
        OtpAuthKey,
        kind=st.just(TokenKind.TOTP),
        secret=st.binary(min_size=1, max_size=64),
        account=_names,
        issuer=st.none() | _names,
        algorithm=st.sampled_from(Algorithm),
        digits=st.integers(6, 10),
        period=st.integers(1, MAX_PERIOD),
    ),
    st.builds(
        OtpAuthKey,
        kind=st.just(TokenKind.HOTP),
        secret=st.binary(min_size=1, max_size=64),
        account=_names,
        issuer=st.none() | _names,
        algorithm=st.sampled_from(Algorithm),
        digits=st.integers(6, 10),
        counter=st.integers(0, MAX_COUNTER),
    ),
)


@settings(max_examples=400, deadline=None)
@given(keys)
def test_parse_of_build_is_identity(k: OtpAuthKey) -> None:
    uri = build_uri(k)
    assert uri.isascii()
    assert parse_uri(uri) == k


pyotp_keys = st.builds(
    OtpAuthKey,
    kind=st.sampled_from(TokenKind),
    secret=st.binary(min_size=PYOTP_MIN_SECRET_BYTES, max_size=64),
    account=_names,
    issuer=st.none() | _names,
    algorithm=st.sampled_from(Algorithm),
    digits=st.integers(6, PYOTP_MAX_DIGITS),
).flatmap(
    lambda k: st.builds(
        dataclasses.replace,
        st.just(k),
        period=st.integers(1, PYOTP_MAX_PERIOD) if k.kind is TokenKind.TOTP else st.just(30),
        counter=st.integers(0, MAX_COUNTER) if k.kind is TokenKind.HOTP else st.just(0),
    )
)


@settings(max_examples=150, deadline=None)
@given(pyotp_keys)
def test_pyotp_reads_what_we_build(k: OtpAuthKey) -> None:
    check_pyotp_agrees(build_uri(k), k)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_of_anything_is_a_clean_error_or_a_key(text: str) -> None:
    try:
        parsed = parse_uri("otpauth://totp/" + text)
    except InvalidInputError:
        return
    assert isinstance(parsed, OtpAuthKey)
