"""Service tokens: how one service vouches that a request it sends to another came from it.

A user's access token says who the user is, not which program sends it: anyone holding a
clinician's token can call a service directly. Where a route must only be reached through
a given service, that service sends a service token beside the user's bearer token, in
`X-Service-Token`: an Ed25519 JWT (`EdDSA`, pinned as for access tokens, so `alg: none` and
HMAC tokens made with the public key are refused) that only the holder of the private key
can make, with its own `typ` ("service"), issuer and audience, a lifetime of a minute, and
bound to its request: `user` is the subject of the bearer token it comes with,
`body_sha256` the SHA-256 of the request body (the whole body: every part of a multipart
one), `path` the route it is sent to and `idempotency_key` the request's Idempotency-Key
(null without one). Captured on the way, it can only repeat the same request for the same
user within that minute: not send another body, to another route, or under another key.

Which service signs and which route demands it is each service's policy; this module is the
plumbing. The key pair is made with `python -m common.service_tokens ensure PRIVATE PUBLIC`.
"""

import argparse
import base64
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.auth import ALGORITHM, InvalidToken, decode_token
from common.errors import ServiceError
from common.keyfiles import write_new_private_key

SERVICE_TOKEN_HEADER = "X-Service-Token"  # noqa: S105 (a header name)
SERVICE_TOKEN_TYPE = "service"  # noqa: S105 (the `typ` claim)
LIFETIME_S = 60
# What ties a token to its request, in the order `ServiceTokenVerifier.verify` compares them.
BOUND_CLAIMS = ("user", "path", "idempotency_key", "body_sha256")


class ServiceTokenRefused(ServiceError):
    def __init__(self, message: str, status_code: int = 401) -> None:
        super().__init__(status_code, message, code="invalid_service_token")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of the key, so a token signed by another key is named as such."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()


def _pem(text: str | None, path: Path | None, what: str) -> bytes | None:
    if text and path:
        raise ValueError(f"{what}: give the PEM text or a file, not both")
    if path:
        return path.read_bytes()
    return text.encode() if text else None


def load_private_key(text: str | None = None, path: Path | None = None) -> Ed25519PrivateKey | None:
    """The Ed25519 private key in PEM `text` or in the file at `path`; None when neither."""
    pem = _pem(text, path, "service signing key")
    if pem is None:
        return None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("the service signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the service signing key is not an Ed25519 key")
    return key


def load_public_key(text: str | None = None, path: Path | None = None) -> Ed25519PublicKey | None:
    """The Ed25519 public key in PEM `text` or in the file at `path`; None when neither."""
    pem = _pem(text, path, "service public key")
    if pem is None:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError("the service public key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the service public key is not an Ed25519 key")
    return key


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class ServiceTokenSigner:
    """What the calling service holds: its private key and its name (the issuer)."""

    def __init__(
        self, private_key: Ed25519PrivateKey, issuer: str, lifetime_s: int = LIFETIME_S
    ) -> None:
        self.private_key = private_key
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        self.kid = key_id(private_key.public_key())

    def mint(
        self,
        audience: str,
        user: str,
        body: bytes,
        *,
        path: str,
        idempotency_key: str | None = None,
    ) -> str:
        """A token for one request: `body` sent to `path` of `audience` on behalf of `user`,
        under `idempotency_key`."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": self.issuer,
            "typ": SERVICE_TOKEN_TYPE,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": str(uuid.uuid4()),
            "user": user,
            "body_sha256": body_digest(body),
            "path": path,
            "idempotency_key": idempotency_key,
        }
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


class ServiceTokenVerifier:
    """What the called service holds: the caller's public key, its name and our audience."""

    def __init__(self, public_key: Ed25519PublicKey, issuer: str, audience: str) -> None:
        self.public_key = public_key
        self.issuer = issuer
        self.audience = audience
        self.kid = key_id(public_key)

    async def _key_for(self, kid: str) -> Ed25519PublicKey | None:
        return self.public_key if kid == self.kid else None

    async def verify(
        self,
        token: str | None,
        user: str,
        body: bytes,
        *,
        path: str,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid token for this request (`body` sent to `path` on behalf of
        `user`, under `idempotency_key`), else `ServiceTokenRefused`: 401 for a missing or
        invalid token, 403 for a valid one issued for another request."""
        claims = await self.claims(token)
        self.check_request(claims, user, body, path=path, idempotency_key=idempotency_key)
        return claims

    async def claims(self, token: str | None) -> dict[str, Any]:
        """The claims of a valid token, not yet compared with its request (`check_request`):
        for a caller that authenticates the token before it reads a large body. 401
        (`ServiceTokenRefused`) for a missing or invalid token."""
        if not token:
            raise ServiceTokenRefused(
                f"This route takes requests from the {self.issuer} only: the service token "
                f"({SERVICE_TOKEN_HEADER}) is missing."
            )
        try:
            return await decode_token(
                token,
                self._key_for,
                issuer=self.issuer,
                audience=self.audience,
                expected_type=SERVICE_TOKEN_TYPE,
            )
        except InvalidToken as exc:
            raise ServiceTokenRefused(f"The service token is refused: {exc.message}") from exc

    def check_request(
        self,
        claims: dict[str, Any],
        user: str,
        body: bytes,
        *,
        path: str,
        idempotency_key: str | None = None,
    ) -> None:
        """403 (`ServiceTokenRefused`) unless the verified `claims` were issued for this
        request."""
        bound_to = tuple(claims.get(name) for name in BOUND_CLAIMS)
        if bound_to != (user, path, idempotency_key, body_digest(body)):
            raise ServiceTokenRefused(
                "The service token was issued for another request.", status_code=403
            )


def ensure_key_pair(private_path: Path, public_path: Path) -> bool:
    """Make an Ed25519 key pair in these files (the private one readable by its owner only)
    unless the private key exists; the public file is (re)written from it. Whether a new
    pair was made."""
    made = not private_path.exists()
    if made:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        write_new_private_key(private_path)
    key = load_private_key(path=private_path)
    assert key is not None
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m common.service_tokens",
        description="Make a service's Ed25519 key pair, once (kept when it exists).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure", help="make the key pair unless the private key exists")
    ensure.add_argument("private", type=Path, help="the private key's file (PEM, mode 0600)")
    ensure.add_argument("public", type=Path, help="the public key's file (PEM)")
    args = parser.parse_args(argv)
    made = ensure_key_pair(args.private, args.public)
    print(f"{'made' if made else 'kept'} {args.private}; public key in {args.public}")


if __name__ == "__main__":
    main()
