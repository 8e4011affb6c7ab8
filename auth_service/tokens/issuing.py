"""Making and reading the auth service's own JWTs."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auth_service.settings import AuthSettings
from auth_service.tokens.keys import ALGORITHM, Keyring
from common.auth import TokenVerifier


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: uuid.UUID
    expires_at: datetime


class TokenIssuer:
    def __init__(self, keyring: Keyring, settings: AuthSettings) -> None:
        self.keyring = keyring
        self.settings = settings
        # The auth service checks tokens with the same code as every other service, but
        # looks keys up in its own keyring instead of fetching its JWKS over HTTP.
        self.verifier = TokenVerifier(
            self._public_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )

    async def _public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self.keyring.find(kid)
        return key.public_key if key else None

    def _sign(self, claims: dict[str, object], lifetime_s: int, now: datetime) -> IssuedToken:
        jti = uuid.uuid4()
        expires_at = datetime.fromtimestamp(int(now.timestamp()) + lifetime_s, UTC)
        key = self.keyring.current
        token = jwt.encode(
            {
                "iss": self.settings.jwt_issuer,
                "aud": self.settings.jwt_audience,
                "iat": int(now.timestamp()),
                "exp": int(expires_at.timestamp()),
                "jti": str(jti),
                **claims,
            },
            key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": key.kid},
        )
        return IssuedToken(token, jti, expires_at)

    def access_token(
        self, user_id: uuid.UUID, role: str, generation: int, now: datetime
    ) -> IssuedToken:
        # `gen`: the user's token generation when issued; the gateway refuses a token whose
        # generation the user has left (deactivation, password reset).
        claims = {"sub": str(user_id), "role": role, "typ": "access", "gen": generation}
        return self._sign(claims, self.settings.access_token_ttl_s, now)

    def refresh_token(self, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime) -> IssuedToken:
        claims = {"sub": str(user_id), "typ": "refresh", "fam": str(family_id)}
        return self._sign(claims, self.settings.refresh_token_ttl_s, now)
