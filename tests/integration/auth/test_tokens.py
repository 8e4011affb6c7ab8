"""Login, the tokens' contents, JWKS, refresh rotation with reuse detection, logout, and the
forged-token cases, against the real auth service and PostgreSQL."""

import base64
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.auth import ADMIN_EMAIL, ADMIN_PASSWORD


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def assert_invalid_token(response, fragment: str = "") -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    assert fragment in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_login_issues_signed_access_and_refresh_tokens(auth):
    response = await auth.login(ADMIN_EMAIL.upper(), ADMIN_PASSWORD)  # email case is ignored
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 7 * 24 * 3600

    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA"
    jwks = (await auth.client.get("/.well-known/jwks.json")).json()
    assert [key["kid"] for key in jwks["keys"]] == [header["kid"]]
    assert "d" not in jwks["keys"][0]  # the private part is never published
    public_key = jwt.PyJWK(jwks["keys"][0]).key
    access = jwt.decode(
        body["access_token"],
        public_key,
        algorithms=["EdDSA"],
        audience="cds-api",
        issuer="cds-auth",
    )
    me = await auth.client.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert access["sub"] == me.json()["id"]
    assert access["role"] == "admin" and access["typ"] == "access"
    assert access["exp"] - access["iat"] == 900
    uuid.UUID(access["jti"])

    refresh = claims_of(body["refresh_token"])
    assert refresh["typ"] == "refresh" and refresh["sub"] == access["sub"]
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert refresh["jti"] != access["jti"]


async def test_me_answers_the_user_and_records_the_login(auth):
    headers = await auth.login_header()
    me = await auth.client.get("/me", headers=headers)
    assert me.status_code == 200
    body = me.json()
    assert body["email"] == ADMIN_EMAIL
    assert body["role"] == "admin" and body["is_active"] is True
    assert body["last_login_at"] is not None
    assert "password_hash" not in body and "password" not in json.dumps(body)


async def test_wrong_password_and_unknown_email_get_the_same_answer(auth):
    wrong = await auth.login(ADMIN_EMAIL, "not the password at all")
    unknown = await auth.login("nobody@example.com", "not the password at all")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert (
        strip(wrong)
        == strip(unknown)
        == {
            "code": "invalid_credentials",
            "message": "Incorrect email or password.",
        }
    )


async def test_an_unknown_email_costs_one_password_verification_like_a_known_one(auth):
    hashing = auth.app.state.login.hashing
    calls = []

    class CountingHasher:
        def __init__(self, inner):
            self.inner = inner

        def verify(self, password_hash, password):
            calls.append(password_hash)
            return self.inner.verify(password_hash, password)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    hashing.hasher = CountingHasher(hashing.hasher)
    durations: dict[str, list[float]] = {"known": [], "unknown": []}
    for round_ in range(4):  # below the lock-out threshold of 5
        for kind, email in (("known", ADMIN_EMAIL), ("unknown", f"ghost{round_}@example.com")):
            started = time.perf_counter()
            response = await auth.login(email, "a wrong password here")
            durations[kind].append(time.perf_counter() - started)
            assert response.status_code == 401
    assert len(calls) == 8  # every attempt verified one Argon2 hash, known email or not
    assert all(h.startswith("$argon2id$") for h in calls)
    known, unknown = sorted(durations["known"])[2], sorted(durations["unknown"])[2]
    # Without the dummy hash an unknown email answers many times faster.
    assert 0.33 < unknown / known < 3.0, durations


async def test_jwks_is_public_and_cacheable(auth):
    response = await auth.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    (key,) = response.json()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"


async def test_refresh_rotates_and_the_used_token_is_refused(auth):
    first = await auth.tokens()
    rotated = await auth.client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert claims_of(second["refresh_token"])["fam"] == claims_of(first["refresh_token"])["fam"]
    me = await auth.client.get("/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 200

    third = await auth.client.post("/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_its_whole_family(auth):
    stolen = await auth.tokens()
    other_session = await auth.tokens()
    legitimate = (
        await auth.client.post("/refresh", json={"refresh_token": stolen["refresh_token"]})
    ).json()

    replay = await auth.client.post("/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert_invalid_token(replay, "already used")
    # The token issued by the rotation is dead too: neither thief nor owner can go on.
    after = await auth.client.post("/refresh", json={"refresh_token": legitimate["refresh_token"]})
    assert_invalid_token(after, "revoked")
    # Another login's family is untouched.
    untouched = await auth.client.post(
        "/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert untouched.status_code == 200
    samples = auth.app.state.metrics_registry.get_sample_value(
        "auth_token_refreshes_total", {"outcome": "reuse_detected"}
    )
    assert samples == 1.0


async def test_logout_revokes_the_session_and_is_idempotent(auth):
    pair = await auth.tokens()
    assert (
        await auth.client.post("/logout", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 204
    refused = await auth.client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
    assert_invalid_token(refused, "revoked")
    again = await auth.client.post("/logout", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 204


async def test_an_access_token_is_not_a_refresh_token_and_vice_versa(auth):
    pair = await auth.tokens()
    as_refresh = await auth.client.post("/refresh", json={"refresh_token": pair["access_token"]})
    assert_invalid_token(as_refresh)
    as_access = await auth.client.get(
        "/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"}
    )
    assert_invalid_token(as_access, "not an access token")


def _forge(claims: dict, key, algorithm: str, headers: dict | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_forged_and_broken_tokens_are_refused(auth):
    pair = await auth.tokens()
    genuine = pair["access_token"]
    claims = claims_of(genuine)
    kid = jwt.get_unverified_header(genuine)["kid"]
    now = int(time.time())
    signing_key = auth.app.state.login.issuer.keyring.current
    public_pem = signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head, body, signature = genuine.split(".")

    cases = {
        "expired": (
            _forge(
                {**claims, "iat": now - 3600, "exp": now - 1800},
                signing_key.private_key,
                "EdDSA",
                {"kid": kid},
            ),
            "expired",
        ),
        "wrong audience": (
            _forge(
                {**claims, "aud": "someone-else"}, signing_key.private_key, "EdDSA", {"kid": kid}
            ),
            "not meant for this service",
        ),
        "wrong issuer": (
            _forge({**claims, "iss": "evil"}, signing_key.private_key, "EdDSA", {"kid": kid}),
            "issuer",
        ),
        "tampered role": (
            f"{head}.{_b64({**claims, 'role': 'admin', 'sub': 'x'})}.{signature}",
            "invalid",
        ),
        "alg none": (f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{body}.", "algorithm"),
        "HS256 with the public key": (
            f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{body}."
            + base64.urlsafe_b64encode(
                __import__("hmac").new(public_pem, f"{head}.{body}".encode(), "sha256").digest()
            )
            .rstrip(b"=")
            .decode(),
            "algorithm",
        ),
        "signed by another key": (
            _forge(claims, Ed25519PrivateKey.generate(), "EdDSA", {"kid": kid}),
            "invalid",
        ),
        "unknown key id": (
            _forge(claims, Ed25519PrivateKey.generate(), "EdDSA", {"kid": "made-up"}),
            "unknown key",
        ),
        "missing claim": (
            _forge(
                {k: v for k, v in claims.items() if k != "jti"},
                signing_key.private_key,
                "EdDSA",
                {"kid": kid},
            ),
            "invalid",
        ),
        "malformed": ("not.a.jwt", "malformed"),
        "garbage": ("%%%", "malformed"),
    }
    for name, (token, fragment) in cases.items():
        response = await auth.client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert_invalid_token(response, fragment)
    # The genuine token still works: the checks above are not refusing everything.
    assert (
        await auth.client.get("/me", headers={"Authorization": f"Bearer {genuine}"})
    ).status_code == 200


async def test_no_token_is_401_asking_for_one(auth):
    response = await auth.client.get("/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    basic = await auth.client.get("/me", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401


async def test_absurd_login_input_is_refused_cleanly(auth):
    long_email = "a" * 5000 + "@example.com"
    response = await auth.login(long_email, "x" * 10_000)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    missing = await auth.client.post("/token", data={"username": ADMIN_EMAIL})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "validation_error"
    as_json = await auth.client.post(
        "/token", json={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert as_json.status_code == 422
    bad_refresh = await auth.client.post(
        "/refresh", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_refresh.status_code == 422
