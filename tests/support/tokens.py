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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.auth import TokenVerifier

ISSUER = "cds-auth"
AUDIENCE = "cds-api"
LIFETIME_S = 600
_KEY = Ed25519PrivateKey.generate()
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


def mint_token(role: str, subject: str | None = None) -> str:
    """An access token signed by the test key, for a service under test that trusts it."""
    if _collecting:
        raise TokenMadeTooEarly(
            f"a {role!r} token was made while pytest imported the tests: it expires "
            f"{LIFETIME_S} s later, possibly before a test uses it. Make it inside the test "
            "(or a function-scoped fixture)."
        )
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
