"""Checking the bearer tokens the auth service issues, in any service.

Tokens are JWTs signed with Ed25519 (`EdDSA`); the algorithm is pinned, so `alg: none` or an
HMAC token made with the public key is refused before any signature is looked at. Public
keys come from the auth service's JWKS, cached, and fetched again when a token names a key
id the cache does not know (at most once per `min_refetch_interval_s`, so forged key ids
cannot make us hammer the auth service, while a rotated-in key is picked up within seconds).

Routes declare what they need with the typed dependencies at the bottom:

    @router.get("/things")
    async def things(principal: Annotated[Principal, Depends(require_roles("admin"))]): ...
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import ServiceError
from common.settings import TokenCheckingSettings

ALGORITHM = "EdDSA"
ROLES = ("admin", "clinician", "viewer")
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "typ")
# Tolerated clock difference between the auth service and a verifying service.
LEEWAY_S = 10

KeyLookup = Callable[[str], Awaitable[Ed25519PublicKey | None]]


class InvalidToken(ServiceError):
    def __init__(self, message: str = "The token is invalid.") -> None:
        super().__init__(
            401,
            message,
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


class MissingToken(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "This request needs a bearer token: log in first.",
            code="not_authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )


class Forbidden(ServiceError):
    def __init__(self, message: str = "Your role does not allow this.") -> None:
        super().__init__(403, message)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says."""

    subject: str  # the user's id
    role: str
    token_id: str
    expires_at: datetime
    claims: dict[str, Any]

    @property
    def token_generation(self) -> int:
        """The user's token generation the token was issued in (`gen`; 0 in tokens issued
        before the claim existed, which therefore end with the first change)."""
        generation = self.claims.get("gen", 0)
        return generation if type(generation) is int else 0


async def decode_token(
    token: str, key_for: KeyLookup, *, issuer: str, audience: str, expected_type: str
) -> dict[str, Any]:
    """The verified claims of `token`, or `InvalidToken` saying briefly what is wrong."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("The token is malformed.") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("The token is not signed with the expected algorithm.")
    kid = header.get("kid")
    key = await key_for(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidToken("The token is signed with an unknown key.")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("The token has expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("The token is not meant for this service.") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken("The token was not issued by the expected issuer.") from exc
    except jwt.InvalidTokenError as exc:  # bad signature, missing claim, bad encoding
        raise InvalidToken() from exc
    if claims.get("typ") != expected_type:
        raise InvalidToken(f"This is not an {expected_type} token.")
    if expected_type == "access" and claims.get("role") not in ROLES:
        raise InvalidToken()
    return claims


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    return Principal(
        subject=str(claims["sub"]),
        role=str(claims.get("role", "")),
        token_id=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        claims=claims,
    )


class JwksCache:
    """The auth service's public keys, fetched over HTTP and kept for `ttl_s`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        jwks_url: str,
        *,
        ttl_s: float = 300.0,
        min_refetch_interval_s: float = 2.0,
    ) -> None:
        self.client = client
        self.jwks_url = jwks_url
        self.ttl_s = ttl_s
        self.min_refetch_interval_s = min_refetch_interval_s
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str) -> Ed25519PublicKey | None:
        if self._needs_fetch(kid):
            async with self._lock:
                if self._needs_fetch(kid):  # not already done by whoever held the lock
                    await self._refresh()
        return self._keys.get(kid)

    def _needs_fetch(self, kid: str) -> bool:
        age = time.monotonic() - self._fetched_at
        unknown = kid not in self._keys
        return age > self.ttl_s or (unknown and age > self.min_refetch_interval_s)

    async def _refresh(self) -> None:
        try:
            response = await self.client.get(self.jwks_url)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            if self._keys:  # keep verifying with the keys we have; try again soon
                self._fetched_at = time.monotonic() - self.ttl_s + self.min_refetch_interval_s
                return
            raise ServiceError(
                503, "Tokens cannot be checked: the auth service is unavailable."
            ) from exc
        self._keys = keys
        self._fetched_at = time.monotonic()


def parse_jwks(jwks: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in jwks.get("keys", []):
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519" or "kid" not in entry:
            continue  # only the kind of key we pin to
        key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
        if isinstance(key, Ed25519PublicKey):
            keys[entry["kid"]] = key
    return keys


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str
    key: Ed25519PublicKey  # the key of that id the signature was checked with


# Tokens kept verified per service: a few thousand callers' current tokens, at about 2 KB each.
VERIFIED_TOKENS_KEPT = 4096


class TokenVerifier:
    """What a service keeps on `app.state.token_verifier` for the dependencies below.

    A token that passed is kept, by its exact text, until it expires (its `exp` and the
    leeway, the moment the check itself would refuse it), so a caller's next requests skip
    the signature check (about a third of a millisecond of CPU each). What can change in
    the meantime is still checked on every use: the key must still be the auth service's
    key of that id (a key rotated out of the JWKS ends its tokens as before), and the type
    asked for must be the token's. A refused token is never kept."""

    def __init__(
        self,
        key_for: KeyLookup,
        *,
        issuer: str,
        audience: str,
        cache_size: int = VERIFIED_TOKENS_KEPT,
    ) -> None:
        self.key_for = key_for
        self.issuer = issuer
        self.audience = audience
        self._verified: TLRUCache[str, _Verified] = TLRUCache(
            maxsize=cache_size,
            ttu=lambda _token, verified, _now: verified.principal.expires_at.timestamp() + LEEWAY_S,
            timer=time.time,  # the tokens' clock: `exp` is wall-clock time
        )

    async def verify(self, token: str, expected_type: str = "access") -> Principal:
        kept = self._verified.get(token)
        if (
            kept is not None
            and kept.principal.claims["typ"] == expected_type
            and await self.key_for(kept.kid) == kept.key
        ):
            return kept.principal
        claims = await decode_token(
            token,
            self.key_for,
            issuer=self.issuer,
            audience=self.audience,
            expected_type=expected_type,
        )
        principal = principal_from_claims(claims)
        kid = jwt.get_unverified_header(token)["kid"]  # a string: `decode_token` found its key
        key = await self.key_for(kid)
        if key is not None:
            self._verified[token] = _Verified(principal, kid, key)
        return principal


JWKS_PATH = "/.well-known/jwks.json"


def jwks_token_verifier(
    auth_client: httpx.AsyncClient, settings: TokenCheckingSettings
) -> TokenVerifier:
    """The verifier of a service other than auth: keys from the auth service's JWKS."""
    cache = JwksCache(auth_client, JWKS_PATH, ttl_s=settings.jwks_cache_ttl_s)
    return TokenVerifier(cache.key_for, issuer=settings.jwt_issuer, audience=settings.jwt_audience)


_bearer = HTTPBearer(auto_error=False, description="An access token from POST /token.")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise MissingToken()
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only callers with one of `roles` through (403 otherwise)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden()
        return principal

    return dependency


# Who may call a route, in the words every service uses: the same name is the same rule.
Reader = Annotated[Principal, Depends(require_roles(*ROLES))]  # any role, viewers included
Writer = Annotated[Principal, Depends(require_roles("admin", "clinician"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
