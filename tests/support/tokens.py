"""Tokens for testing a service without running the auth service: a key of our own, and a
verifier that trusts it.

A token is made where a test uses it. One made while pytest imports the test modules would
be used minutes later, after a slow machine has spent its lifetime on the tests before it:
`mint_token` refuses to run during collection (`refuse_tokens_during_collection`, set by the
root conftest), so such a token fails on every machine instead of only on slow ones."""

import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.auth import TokenVerifier
from common.service_tokens import ServiceTokenSigner, body_digest

ISSUER = "cds-auth"
AUDIENCE = "cds-api"
LIFETIME_S = 600
_KEY = Ed25519PrivateKey.generate()
# The gateway's service-token key, for a data service under test that trusts it.
GATEWAY_SERVICE_KEY = Ed25519PrivateKey.generate()
GATEWAY_SERVICE_PUBLIC_PEM = (
    GATEWAY_SERVICE_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
GATEWAY_SERVICE_PRIVATE_PEM = GATEWAY_SERVICE_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
_collecting = False


class TokenMadeTooEarly(RuntimeError):
    pass


def refuse_tokens_during_collection(collecting: bool) -> None:
    global _collecting
    _collecting = collecting


async def _key_for(kid: str):
    return _KEY.public_key() if kid == "test" else None


def test_verifier() -> TokenVerifier:
    return TokenVerifier(_key_for, issuer=ISSUER, audience=AUDIENCE)


def bearer(access_token: str) -> dict[str, str]:
    """The `Authorization` header that carries an access token: the suite's one way to make it."""
    return {"Authorization": f"Bearer {access_token}"}


def issued_token(response: httpx.Response) -> str:
    """The access token of a successful login's answer."""
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def _refuse_during_collection(what: str, lifetime_s: int) -> None:
    if _collecting:
        raise TokenMadeTooEarly(
            f"{what} was made while pytest imported the tests: it expires "
            f"{lifetime_s} s later, possibly before a test uses it. Make it inside the test "
            "(or a function-scoped fixture)."
        )


def service_token_claims(
    user: str,
    body: bytes,
    path: str = "/predictions",
    idempotency_key: str | None = None,
    **changes: object,
) -> dict:
    """The claims the gateway signs to store `body` for `user` at `path` under
    `idempotency_key`, with `changes`: for making tokens that are wrong in one way."""
    now = int(time.time())
    return {
        "iss": "gateway",
        "aud": "data-service:predictions",
        "sub": "gateway",
        "typ": "service",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        "user": user,
        "body_sha256": body_digest(body),
        "path": path,
        "idempotency_key": idempotency_key,
        **changes,
    }


def mint_service_token(
    user: str,
    body: bytes,
    audience: str = "data-service:predictions",
    path: str = "/predictions",
    idempotency_key: str | None = None,
) -> str:
    """The gateway's service token for storing `body` at `path` on behalf of `user`."""
    signer = ServiceTokenSigner(GATEWAY_SERVICE_KEY, "gateway")
    _refuse_during_collection("a service token", signer.lifetime_s)
    return signer.mint(audience, user, body, path=path, idempotency_key=idempotency_key)


def mint_token(role: str, subject: str | None = None) -> str:
    """An access token signed by the test key, for a service under test that trusts it."""
    _refuse_during_collection(f"a {role!r} token", LIFETIME_S)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject or str(uuid.uuid4()),
        "role": role,
        "typ": "access",
        "iat": now,
        "exp": now + LIFETIME_S,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, _KEY, algorithm="EdDSA", headers={"kid": "test"})
