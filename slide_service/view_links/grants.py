"""View grants: short-lived, read-only URLs to one slide's deep-zoom tiles, the way object
stores presign URLs. A grant is an HS256 JWT `{typ: "slide_view", sub, sid, scope: "read",
iat, exp}` signed with the service's view-link secret, so checking one is one HMAC: no
database, no auth service, which keeps the tile path cheap. Only this service signs and
checks them (the browser carries them; the gateway passes them through)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from common.errors import ServiceError

GRANT_TYPE = "slide_view"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("typ", "sub", "sid", "scope", "iat", "exp")
LEEWAY_S = 5


class InvalidViewGrant(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(401, message, code="invalid_view_grant")


class ViewGrants:
    def __init__(self, key: bytes, ttl_s: int) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def issue(self, subject: str, slide_id: uuid.UUID) -> tuple[str, datetime]:
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + timedelta(seconds=self.ttl_s)
        claims = {
            "typ": GRANT_TYPE,
            "sub": subject,
            "sid": str(slide_id),
            "scope": "read",
            "iat": now,
            "exp": expires_at,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires_at

    def check(self, grant: str, slide_id: uuid.UUID) -> dict[str, Any]:
        """The grant's claims if it is valid for reading `slide_id`: 401 when expired,
        altered or not a view grant; 403 when it is valid but for another slide."""
        try:
            claims = jwt.decode(
                grant,
                self._key,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidViewGrant("The view link has expired: ask for a new one.") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidViewGrant("The view link is not valid.") from exc
        if claims["typ"] != GRANT_TYPE or claims["scope"] != "read":
            raise InvalidViewGrant("This is not a slide view link.")
        if claims["sid"] != str(slide_id):
            raise ServiceError(403, "This view link is for another slide.", code="forbidden")
        return claims
