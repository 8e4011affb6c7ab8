"""Tokens for testing a service without running the auth service: a key of our own, and a
verifier that trusts it."""

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.auth import TokenVerifier

ISSUER = "cds-auth"
AUDIENCE = "cds-api"
_KEY = Ed25519PrivateKey.generate()


async def _key_for(kid: str):
    return _KEY.public_key() if kid == "test" else None


def test_verifier() -> TokenVerifier:
    return TokenVerifier(_key_for, issuer=ISSUER, audience=AUDIENCE)


def bearer(role: str, subject: str | None = None) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject or str(uuid.uuid4()),
        "role": role,
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(claims, _KEY, algorithm="EdDSA", headers={"kid": "test"})
    return {"Authorization": f"Bearer {token}"}
