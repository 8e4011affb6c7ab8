"""Forged, stale and misused tokens: every one is refused with the 401 envelope."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.security.conftest import assert_envelope, logged_in, login
from tests.support.launcher import wait_for
from tests.support.tokens import bearer

pytestmark = pytest.mark.timeout(300)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def assemble(header: dict, payload: dict, signature: str) -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), signature]
    )


def signing_key(stack) -> Ed25519PrivateKey:
    """The auth service's own signing key (the newest PEM in its keys folder)."""
    [newest, *_] = sorted((stack.var_dir / "keys").glob("*.pem"), reverse=True)
    key = serialization.load_pem_private_key(Path(newest).read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def refused(api, token: str, path: str = "/api/v1/auth/me") -> dict:
    return assert_envelope(api.get(path, headers=bearer(token)), 401, "invalid_token")


def test_the_genuine_token_is_accepted(api, clinician):
    # The attacks below start from this token: it must work untouched.
    me = api.get("/api/v1/auth/me", headers=clinician.headers)
    assert me.status_code == 200 and me.json()["role"] == "clinician", me.text


def test_an_expired_token_signed_with_the_real_key_is_refused(api, stack, clinician):
    header, claims, _ = parts(clinician.access_token)
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 3600, "exp": now - 600, "jti": str(uuid.uuid4())},
        signing_key(stack),
        algorithm="EdDSA",
        headers={"kid": header["kid"]},
    )
    # The same key and claims with a future expiry pass: only the expiry is wrong above.
    fresh = jwt.encode(
        {**claims, "exp": now + 600, "jti": str(uuid.uuid4())},
        signing_key(stack),
        algorithm="EdDSA",
        headers={"kid": header["kid"]},
    )
    assert api.get("/api/v1/auth/me", headers=bearer(fresh)).status_code == 200
    error = refused(api, expired)
    assert "expired" in error["message"]


def test_a_payload_changed_to_admin_under_the_original_signature_is_refused(api, clinician):
    header, claims, signature = parts(clinician.access_token)
    tampered = assemble(header, {**claims, "role": "admin"}, signature)
    refused(api, tampered, "/api/v1/admin/users")
    refused(api, tampered)


def test_alg_none_is_refused(api, clinician):
    header, claims, _ = parts(clinician.access_token)
    for alg in ("none", "None", "NONE"):
        unsigned = assemble({**header, "alg": alg}, {**claims, "role": "admin"}, "")
        refused(api, unsigned, "/api/v1/admin/users")


def test_hs256_signed_with_the_public_key_is_refused(api, stack, clinician):
    header, claims, _ = parts(clinician.access_token)
    public = signing_key(stack).public_key()
    secrets = [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ]
    for secret in secrets:
        payload = b64(json.dumps({**claims, "role": "admin"}).encode())
        head = b64(json.dumps({**header, "alg": "HS256"}).encode())
        signature = b64(hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest())
        refused(api, f"{head}.{payload}.{signature}", "/api/v1/admin/users")


def test_a_token_signed_by_another_key_under_the_same_kid_is_refused(api, clinician):
    header, claims, _ = parts(clinician.access_token)
    forged = jwt.encode(
        {**claims, "role": "admin", "jti": str(uuid.uuid4())},
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": header["kid"]},
    )
    refused(api, forged, "/api/v1/admin/users")


def test_a_token_naming_an_unknown_key_is_refused(api, clinician):
    _, claims, _ = parts(clinician.access_token)
    forged = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "attacker"}
    )
    refused(api, forged)


def test_a_refresh_token_is_not_an_access_token(api, new_user):
    user = new_user("clinician")
    error = refused(api, user.refresh_token)
    assert "access" in error["message"]
    # Nor is an access token a refresh token.
    swapped = api.post("/api/v1/auth/refresh", json={"refresh_token": user.access_token})
    assert_envelope(swapped, 401, "invalid_token")


def test_a_reused_refresh_token_revokes_the_whole_family(api, new_user):
    user = new_user("clinician")
    rotated = api.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert rotated.status_code == 200, rotated.text
    current = rotated.json()["refresh_token"]

    # A thief replays the refresh token the legitimate client already used.
    replayed = api.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_envelope(replayed, 401, "invalid_token")
    # The whole family is revoked: the legitimate client's current token fails too.
    after = api.post("/api/v1/auth/refresh", json={"refresh_token": current})
    error = assert_envelope(after, 401, "invalid_token")
    assert "revoked" in error["message"]


def test_another_users_refresh_token_cannot_end_or_extend_someone_elses_session(api, new_user):
    victim, attacker = new_user("clinician"), new_user("viewer")
    _, victim_claims, _ = parts(victim.refresh_token)
    header, _, signature = parts(attacker.refresh_token)
    # The attacker's own refresh token re-pointed at the victim keeps the attacker's
    # signature: refused, and the victim's session is untouched.
    hijacked = assemble(header, {**victim_claims}, signature)
    assert_envelope(
        api.post("/api/v1/auth/refresh", json={"refresh_token": hijacked}), 401, "invalid_token"
    )
    assert_envelope(
        api.post("/api/v1/auth/logout", json={"refresh_token": hijacked}), 401, "invalid_token"
    )
    still = api.post("/api/v1/auth/refresh", json={"refresh_token": victim.refresh_token})
    assert still.status_code == 200, still.text
    # A stolen genuine refresh token yields tokens of its owner only, never more rights.
    stolen = api.post("/api/v1/auth/refresh", json={"refresh_token": attacker.refresh_token})
    me = api.get("/api/v1/auth/me", headers=bearer(stolen.json()["access_token"]))
    assert me.json()["id"] == attacker.id and me.json()["role"] == "viewer"


def test_a_refresh_token_is_dead_after_logout(api, stack, new_user):
    user = new_user("clinician")
    out = api.post("/api/v1/auth/logout", json={"refresh_token": user.refresh_token})
    assert out.status_code == 204, out.text
    after = api.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_envelope(after, 401, "invalid_token")
    # Logging in again starts a new, working session.
    again = logged_in(api, user.id, user.email, user.role)
    assert api.get("/api/v1/auth/me", headers=again.headers).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer a.b.c",
        "Bearer " + "A" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJFZERTQSJ9..",
    ],
)
def test_malformed_authorization_headers_get_401(api, authorization):
    answer = api.get("/api/v1/auth/me", headers={"Authorization": authorization})
    assert_envelope(answer, 401)


def refused_in_the_end(api, token: str, what: str) -> None:
    """Poll until the gateway refuses `token` (it keeps each user's status for
    GATEWAY_ACCOUNT_STATUS_CACHE_S, 10 s; the bound itself is proven with a stepped clock in
    tests/integration/auth/test_ended_sessions.py), then check the refusal's envelope."""

    def refusal():
        answer = api.get("/api/v1/patients", headers=bearer(token))
        assert answer.status_code in (200, 401), answer.text
        return answer if answer.status_code == 401 else None

    error = assert_envelope(wait_for(refusal, 60, what), 401, "invalid_token")
    assert error["message"] == "This session has ended: log in again."


def test_a_deactivated_users_access_token_is_refused_by_the_gateway(api, admin, new_user):
    user = new_user("clinician")
    token = user.access_token
    assert api.get("/api/v1/patients", headers=bearer(token)).status_code == 200
    off = api.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert off.status_code == 200, off.text
    refused_in_the_end(api, token, "the gateway to refuse a deactivated user's token")

    on = api.patch(
        f"/api/v1/admin/users/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert on.status_code == 200, on.text
    again = logged_in(api, user.id, user.email, user.role)
    assert api.get("/api/v1/patients", headers=again.headers).status_code == 200
    assert_envelope(api.get("/api/v1/patients", headers=bearer(token)), 401, "invalid_token")


def test_access_tokens_from_before_a_password_reset_are_refused_by_the_gateway(
    api, admin, new_user
):
    user = new_user("viewer")
    token = user.access_token
    assert api.get("/api/v1/patients", headers=bearer(token)).status_code == 200
    reset = api.patch(
        f"/api/v1/admin/users/{user.id}",
        json={"password": "another lantern meadow 77"},
        headers=admin.headers,
    )
    assert reset.status_code == 200, reset.text
    refused_in_the_end(api, token, "the gateway to refuse a token from before the reset")
    fresh = login(api, user.email, "another lantern meadow 77")
    assert fresh.status_code == 200, fresh.text
    me = api.get("/api/v1/patients", headers=bearer(fresh.json()["access_token"]))
    assert me.status_code == 200
