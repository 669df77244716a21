"""The validator service over real HTTP (issue 11): endpoints, errors, security at the edge, metrics.

Each test runs uvicorn on a free 127.0.0.1 port with a real SQLite store; the validator's
clock is simulated, so throttles and steps are driven, never slept through.
"""

from __future__ import annotations

import datetime
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import ROUTES, ServiceConfig
from server.openapi import openapi_document
from tests.live_server import SEED, LiveServer, live_server
from vtoken.clock import NS_PER_SECOND
from vtoken.oath import hotp
from vtoken.serialno import make_serial

S = NS_PER_SECOND


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as server:
        yield server


def register(live: LiveServer, http: httpx.Client, serial: str) -> None:
    live.clock.advance(30 * S)
    step = live.step()
    answer = http.post(f"/v1/tokens/{serial}/register", json={"code1": live.code(step - 1), "code2": live.code(step)})
    assert answer.status_code == 200 and answer.json()["accepted"], answer.text


def test_register_check_replay_and_throttle(live: LiveServer) -> None:
    serial = live.serials[0]
    with live.client() as http:
        register(live, http, serial)
        live.clock.advance(60 * S)
        code = live.code(live.step())
        ok = http.post(f"/v1/tokens/{serial}/check", json={"code": code})
        assert ok.status_code == 200
        body = ok.json()
        assert body["accepted"] is True and body["reason"] == "accepted" and body["step"] == live.step()
        assert set(body) == {"accepted", "reason", "message", "serial", "step", "offset_steps", "offset_s",
                             "failures", "attempts_left", "retry_after_s"}
        replay = http.post(f"/v1/tokens/{serial}/check", json={"code": code})
        assert replay.status_code == 200 and replay.json()["reason"] == "replay" and not replay.json()["accepted"]
        assert replay.json()["failures"] == 0  # a copy of the code just accepted: no failure, no throttle
        wrong_code = "000000" if code != "000000" else "111111"
        wrong = http.post(f"/v1/tokens/{serial}/check", json={"code": wrong_code})
        assert wrong.status_code == 200 and wrong.json()["reason"] == "wrong-code" and wrong.json()["failures"] == 1
        throttled = http.post(f"/v1/tokens/{serial}/check", json={"code": live.code(live.step() + 1)})
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "1" and throttled.json()["retry_after_s"] == 1
        live.clock.advance(2 * S)
        wrong = http.post(f"/v1/tokens/{serial}/check", json={"code": wrong_code})
        assert wrong.status_code == 200 and wrong.json()["reason"] == "wrong-code"
        assert wrong.json()["failures"] == 2 and wrong.json()["attempts_left"] == 8


@pytest.mark.parametrize(
    ("serial", "status", "reason"),
    [(make_serial(99), 404, "unknown-serial"), ("0000000012", 404, "mistyped-serial"), ("a!b", 400, "bad-format")],
)
def test_unknown_and_malformed_serials(live: LiveServer, serial: str, status: int, reason: str) -> None:
    with live.client() as http:
        answer = http.post(f"/v1/tokens/{serial}/check", json={"code": "123456"})
    assert answer.status_code == status and answer.json()["reason"] == reason


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"code": 123456}', "must be a str"),
        (b'{"code": "123456", "user": "x"}', "unknown field"),
        (b"{}", "missing field"),
        (b'["123456"]', "JSON object"),
        (b'{"code": "12', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b'{"code": true}', "must be a str"),
        (b'{"code": null}', "must be a str"),
    ],
)
def test_bad_bodies_get_400_with_a_message(live: LiveServer, body: bytes, words: str) -> None:
    with live.client() as http:
        answer = http.post(f"/v1/tokens/{live.serials[0]}/check", content=body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]["message"]


def test_a_malformed_code_is_bad_format_not_a_failure(live: LiveServer) -> None:
    with live.client() as http:
        register(live, http, live.serials[0])
        answer = http.post(f"/v1/tokens/{live.serials[0]}/check", json={"code": "12345x"})
        assert answer.status_code == 400 and answer.json()["reason"] == "bad-format"
        assert answer.json()["failures"] == 0


def test_oversized_bodies_are_refused_before_they_are_read(live: LiveServer) -> None:
    with live.client() as http:
        big = http.post(f"/v1/tokens/{live.serials[0]}/check", content=b" " * (65 * 1024))
        assert big.status_code == 413 and "too large" in big.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(100):
                yield b" " * 1024

        streamed = http.post(f"/v1/tokens/{live.serials[0]}/check", content=chunks())
        assert streamed.status_code == 413


def test_unknown_routes_and_methods_are_json_errors(live: LiveServer) -> None:
    with live.client() as http:
        assert http.get("/nope").status_code == 404 and "error" in http.get("/nope").json()
        wrong_method = http.get(f"/v1/tokens/{live.serials[0]}/check")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# --- security at the edge ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tokens"), ("GET", "/v1/tokens/{serial}"), ("POST", "/v1/tokens/{serial}/unlock"),
     ("POST", "/v1/import")],
)
def test_admin_endpoints_need_an_admin_bearer_token(live: LiveServer, method: str, path: str) -> None:
    url = path.format(serial=live.serials[0])
    with live.client() as http:
        none = http.request(method, url)
        assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
        client = http.request(method, url, headers={"Authorization": f"Bearer {live.client_token}"})
        assert client.status_code == 403
        forged = live.admin_token[:-4] + ("AAAA" if not live.admin_token.endswith("AAAA") else "BBBB")
        assert http.request(method, url, headers={"Authorization": f"Bearer {forged}"}).status_code == 403
        assert http.request(method, url, headers={"Authorization": "Basic abc"}).status_code == 401
        admin = http.request(method, url, headers=live.admin())
        assert admin.status_code in (200, 400), admin.text  # 400: import with no body


def test_a_revoked_token_stops_working(live: LiveServer) -> None:
    ident = live.admin_token.split("_")[2].split(".")[0]
    with live.client() as http:
        assert http.get("/v1/tokens", headers=live.admin()).status_code == 200
        assert live.committer.run(lambda v: v.store.revoke_credential(ident, 1), batched=False)
        assert http.get("/v1/tokens", headers=live.admin()).status_code == 403


def test_validation_can_require_an_api_key(tmp_path: Path) -> None:
    with live_server(tmp_path, config=ServiceConfig(require_api_key=True, credential_refresh_s=0.0)) as live:
        with live.client() as http:
            url = f"/v1/tokens/{live.serials[0]}/check"
            assert http.post(url, json={"code": "123456"}).status_code == 401
            keyed = http.post(url, json={"code": "123456"}, headers={"Authorization": f"Bearer {live.client_token}"})
            assert keyed.status_code == 200 and keyed.json()["reason"] == "not-registered"
            pi = http.post("/validate/check", data={"serial": live.serials[0], "pass": "123456"})
            assert pi.status_code == 401 and pi.json()["result"]["status"] is False


def test_no_code_seed_or_token_in_any_log(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with live.client() as http:
        register(live, http, live.serials[0])
        live.clock.advance(60 * S)
        code = live.code(live.step())
        http.post(f"/v1/tokens/{live.serials[0]}/check", json={"code": code})
        http.post("/validate/check", data={"serial": live.serials[0], "pass": code})
        http.get("/v1/tokens", headers=live.admin())
        http.post(f"/v1/tokens/{live.serials[0]}/check", content=b'{"code": "' + code.encode() + b'", "x": 1}')
    text = "\n".join(record.getMessage() for record in caplog.records)
    secret = live.admin_token.split(".")[1]
    for needle in (code, secret, SEED.decode(), SEED.hex()):
        assert needle not in text


def test_tls(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    with live_server(tmp_path, tls=(cert_file, key_file)) as live:
        assert live.url.startswith("https://")
        with httpx.Client(base_url=live.url, verify=ssl.create_default_context(cafile=str(cert_file))) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
        with httpx.Client(base_url=live.url) as http, pytest.raises(httpx.ConnectError):
            http.get("/healthz")  # an unknown certificate is refused by a checking client


# --- admin endpoints ----------------------------------------------------------------------------------


def test_status_list_and_unlock(live: LiveServer) -> None:
    serial = live.serials[1]
    with live.client() as http:
        register(live, http, serial)
        for _ in range(10):
            live.clock.advance(11 * S)
            http.post(f"/v1/tokens/{serial}/check", json={"code": "000001"})
        status = http.get(f"/v1/tokens/{serial}", headers=live.admin()).json()
        assert status["locked"] is True and status["lock_reason"] == "failures" and status["registered"] is True
        assert status["single_window_codes"] == 3 and status["offset_sigma_s"] > 0
        unlocked = http.post(f"/v1/tokens/{serial}/unlock", headers=live.admin())
        assert unlocked.status_code == 200 and unlocked.json()["message"] == "unlocked"
        assert http.get(f"/v1/tokens/{serial}", headers=live.admin()).json()["locked"] is False
        page = http.get("/v1/tokens", params={"limit": 3}, headers=live.admin()).json()
        assert [t["serial"] for t in page["tokens"]] == sorted(live.serials)[:3] and page["next"] == sorted(live.serials)[2]
        rest = http.get("/v1/tokens", params={"limit": 3, "after": page["next"]}, headers=live.admin()).json()
        assert [t["serial"] for t in rest["tokens"]] == sorted(live.serials)[3:] and rest["next"] is None
        for bad in ({"limit": "0"}, {"limit": "x"}, {"limit": "5000"}, {"page": "2"}):
            assert http.get("/v1/tokens", params=bad, headers=live.admin()).status_code == 400
        assert http.get(f"/v1/tokens/{make_serial(77)}", headers=live.admin()).status_code == 404


def test_import_is_all_or_nothing(live: LiveServer) -> None:
    new = [make_serial(500), make_serial(501)]
    csv = "serial,seed,type\n" + "".join(f"{s},{SEED.hex()},totp\n" for s in new)
    with live.client() as http:
        done = http.post("/v1/import", content=csv.encode(), headers=live.admin())
        assert done.status_code == 200 and done.json() == {"imported": 2, "serials": new}
        again = http.post("/v1/import", content=(csv + f"{make_serial(502)},{SEED.hex()},totp\n").encode(),
                          headers=live.admin())
        assert again.status_code == 400 and "duplicate" in again.json()["error"]["message"]
        listed = [t["serial"] for t in http.get("/v1/tokens", headers=live.admin()).json()["tokens"]]
        assert make_serial(502) not in listed and set(new) <= set(listed)
        garbage = http.post("/v1/import", content=b"<KeyContainer", headers=live.admin())
        assert garbage.status_code == 400
        bad_psk = http.post("/v1/import", content=b"x", headers={**live.admin(), "X-Import-PSK": "zz"})
        assert bad_psk.status_code == 400


# --- privacyIDEA's API ------------------------------------------------------------------------------


def test_privacyidea_validate_check_form_and_json(live: LiveServer) -> None:
    serial = live.serials[2]
    with live.client() as http:
        register(live, http, serial)
        live.clock.advance(60 * S)
        code = live.code(live.step())
        ok = http.post("/validate/check", data={"serial": serial, "pass": code, "client": "10.0.0.1"}).json()
        assert ok["result"] == {"status": True, "value": True, "authentication": "ACCEPT"}
        assert ok["detail"]["serial"] == serial and ok["detail"]["type"] == "totp" and ok["detail"]["otplen"] == 6
        live.clock.advance(5 * S)
        again = http.post("/validate/check", json={"serial": serial, "pass": code}).json()
        assert again["result"] == {"status": True, "value": False, "authentication": "REJECT"}
        assert "previous otp" in again["detail"]["message"]
        missing = http.post("/validate/check", data={"serial": serial})
        assert missing.status_code == 400 and missing.json()["result"]["status"] is False
        assert "pass" in missing.json()["result"]["error"]["message"]
        unknown = http.post("/validate/check", data={"serial": make_serial(98), "pass": "123456"}).json()
        assert unknown["result"]["value"] is False
        typed = http.post("/validate/check", json={"serial": serial, "pass": 123456})
        assert typed.status_code == 400


def test_privacyidea_challenge_for_the_next_code(live: LiveServer) -> None:
    serial = live.serials[3]
    with live.client() as http:
        register(live, http, serial)
        live.clock.advance(20 * 30 * S)
        far = live.step() + 3
        challenge = http.post("/validate/check", data={"serial": serial, "pass": live.code(far)}).json()
        assert challenge["result"] == {"status": True, "value": False, "authentication": "CHALLENGE"}
        transaction = challenge["detail"]["transaction_id"]
        live.clock.advance(30 * S)
        answer = http.post("/validate/check", data={"transaction_id": transaction, "pass": live.code(far + 1)})
        assert answer.json()["result"]["authentication"] == "ACCEPT", answer.text


def test_privacyidea_resync_needs_an_admin(live: LiveServer) -> None:
    serial = live.serials[0]
    live.clock.advance(30 * S)
    step = live.step()
    form = {"serial": serial, "otp1": live.code(step - 1), "otp2": live.code(step)}
    with live.client() as http:
        assert http.post("/token/resync", data=form).status_code == 401
        done = http.post("/token/resync", data=form, headers=live.admin()).json()
        assert done["result"] == {"status": True, "value": True}


# --- health, metrics, the document ---------------------------------------------------------------------


def test_health_readiness_and_metrics(live: LiveServer) -> None:
    with live.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz").json()
        assert ready["status"] == "ready" and ready["kernel"] in ("c", "python")
        register(live, http, live.serials[0])
        live.clock.advance(30 * S)
        http.post(f"/v1/tokens/{live.serials[0]}/check", json={"code": live.code(live.step())})
        text = http.get("/metrics").text
    assert 'vtoken_decisions_total{operation="check",outcome="accepted"} 1.0' in text
    assert 'vtoken_decisions_total{operation="register",outcome="registered"} 1.0' in text
    assert "vtoken_batch_size_bucket" in text and "vtoken_request_seconds_bucket" in text
    assert "vtoken_lockouts_total 0.0" in text


def test_readyz_says_when_the_store_is_gone(live: LiveServer) -> None:
    live.committer.stop()
    with live.client() as http:
        answer = http.get("/readyz")
        assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
        check = http.post(f"/v1/tokens/{live.serials[0]}/check", json={"code": "123456"})
        assert check.status_code == 503


def test_the_openapi_document_matches_the_routes(live: LiveServer) -> None:
    with live.client() as http:
        served = http.get("/openapi.json").json()
    assert served == json.loads(json.dumps(openapi_document()))
    documented = {(method.upper(), path) for path, ops in served["paths"].items() for method in ops}
    routed = {(method, path) for method, path, _ in ROUTES}
    assert documented == routed


def test_hotp_codes_are_the_seed_codes() -> None:
    assert hotp(SEED, 0) == "755224"  # the live server's seed is RFC 4226's


def test_privacyidea_user_and_realm_resolve_through_the_portal(tmp_path: Path) -> None:
    from portal.records import Account, Credential, CredentialState, Product
    from portal.store import PortalStore

    portal_db = tmp_path / "portal.db"
    (tmp_path / "v").mkdir()
    with live_server(tmp_path / "v", portal_db=portal_db) as live:
        serial = live.serials[0]
        with PortalStore(portal_db) as portal:
            portal.put("account", Account(id="AC-1", email="ada@example.com", name="Ada"))
            portal.put("credential", Credential(id="CR-1", account_id="AC-1", order_id="SO-1", product=Product.TOKEN,
                                                state=CredentialState.REGISTERED, serial=serial), owner="AC-1")
        with live.client() as http:
            register(live, http, serial)
            live.clock.advance(60 * S)
            code = live.code(live.step())
            ok = http.post("/validate/check", data={"user": "ada@example.com", "realm": "vtoken", "pass": code})
            assert ok.json()["result"]["authentication"] == "ACCEPT" and ok.json()["detail"]["serial"] == serial
            nobody = http.post("/validate/check", data={"user": "bob@example.com", "pass": code})
            assert nobody.status_code == 400 and "can not be found" in nobody.json()["result"]["error"]["message"]


def test_non_ascii_digits_are_not_numbers(live: LiveServer) -> None:
    """Found by schemathesis: '¹'.isdigit() is True, int('¹') raises; both must be a 400."""
    with live.client() as http:
        assert http.get("/v1/tokens", params={"limit": "¹"}, headers=live.admin()).status_code == 400


@pytest.mark.parametrize(
    ("method", "url", "kw"),
    [
        ("POST", "/validate/check", {"content": b'{"serial": "\\ud800", "pass": "1"}',
                                     "headers": {"Content-Type": "application/json"}}),
        ("POST", "/validate/check", {"data": {"serial": "\u00e9", "pass": "123456"}}),
        ("POST", "/v1/tokens/%F0%9F%98%80/check", {"json": {"code": "123456"}}),
        ("POST", "/v1/tokens/0000000013/check", {"content": b'{"code": "\\ud800"}'}),
        ("POST", "/v1/tokens/0000000013/check", {"content": b"[" * 50_000}),
        ("POST", "/validate/check", {"content": b"[" * 50_000, "headers": {"Content-Type": "application/json"}}),
    ],
)
def test_hostile_text_and_nesting_get_400_not_500(live: LiveServer, method: str, url: str, kw: dict) -> None:
    """Found in review: a lone surrogate in a serial, or 50,000 nested brackets, gave a 500."""
    with live.client() as http:
        answer = http.request(method, url, **kw)
    assert answer.status_code == 400, answer.text


def test_a_copy_of_the_code_just_accepted_writes_nothing(live: LiveServer) -> None:
    """Refused as a replay without a failure and without a write: copies may come in any number."""
    serial = live.serials[0]
    with live.client() as http:
        register(live, http, serial)
        live.clock.advance(30 * S)
        code = live.code(live.step())
        assert http.post(f"/v1/tokens/{serial}/check", json={"code": code}).json()["accepted"]
        before = live.committer.run(lambda v: (v.store.get(serial).version, len(v.store.events(serial))), batched=False)
        for _ in range(5):
            copy = http.post(f"/v1/tokens/{serial}/check", json={"code": code}).json()
            assert copy["reason"] == "replay" and copy["failures"] == 0
        after = live.committer.run(lambda v: (v.store.get(serial).version, len(v.store.events(serial))), batched=False)
    assert after == before


def test_a_challenge_names_its_token_so_any_node_can_take_the_answer(live: LiveServer) -> None:
    serial = live.serials[3]
    with live.client() as http:
        register(live, http, serial)
        live.clock.advance(20 * 30 * S)
        challenge = http.post("/validate/check", data={"serial": serial, "pass": live.code(live.step() + 3)}).json()
    assert challenge["detail"]["transaction_id"].endswith(f"-{serial}")
