"""Logging in with a password, refreshing, and logging out."""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import ceil

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.passwords.hashing import PasswordHashing
from auth_service.throttling import service as throttling
from auth_service.throttling.service import ThrottlePolicy
from auth_service.tokens import service as tokens
from auth_service.tokens.issuing import TokenIssuer
from auth_service.tokens.schemas import TokenPair
from auth_service.users import service as users
from common.auth import InvalidToken
from common.errors import ServiceError

audit = logging.getLogger("auth.audit")


class InvalidCredentials(ServiceError):
    """The one answer to a wrong password, an unknown email and a deactivated account."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "Incorrect email or password.",
            code="invalid_credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )


class TooManyAttempts(ServiceError):
    def __init__(self, retry_after: timedelta) -> None:
        seconds = max(1, ceil(retry_after.total_seconds()))
        super().__init__(
            429,
            f"Too many failed login attempts. Try again in {seconds} seconds.",
            code="too_many_attempts",
            headers={"Retry-After": str(seconds)},
        )


class LoginMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "auth_logins",
            "Login attempts by outcome: success, invalid_credentials, throttled.",
            ["outcome"],
            registry=registry,
        )
        self.refreshes = Counter(
            "auth_token_refreshes",
            "Refresh attempts by outcome: success, invalid, reuse_detected.",
            ["outcome"],
            registry=registry,
        )


@dataclass(frozen=True)
class LoginContext:
    """What the login flows need, built once per process (`app.state.login`)."""

    issuer: TokenIssuer
    hashing: PasswordHashing
    policy: ThrottlePolicy
    metrics: LoginMetrics
    # What time it is for logging in: replaceable, so tests step through delays.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


async def login(
    session: AsyncSession, context: LoginContext, email: str, password: str, client: str
) -> TokenPair:
    now = context.clock()
    user = await users.get_by_email(session, email)
    attempt = await throttling.attempt_for(session, context.policy, email, client, now)
    # Counted (and committed) before the password is checked: see throttling.service.
    locked = await throttling.admit(session, attempt, context.policy, now)
    if locked is not None:
        context.metrics.logins.labels("throttled").inc()
        audit.warning(
            "login refused: throttled",
            extra={"event": "login_throttled", "email": email, "client": client},
        )
        raise TooManyAttempts(locked)

    # An unknown email still costs one Argon2 verification (of a dummy hash).
    verification = await context.hashing.verify(user.password_hash if user else None, password)
    if user is None or not verification.matches or not user.is_active:
        reason = (
            "unknown_email"
            if user is None
            else "wrong_password"
            if not verification.matches
            else "inactive_account"
        )
        context.metrics.logins.labels("invalid_credentials").inc()
        audit.warning(
            "login failed",
            extra={"event": "login_failed", "reason": reason, "email": email, "client": client},
        )
        raise InvalidCredentials()

    if verification.needs_rehash:
        user.password_hash = await context.hashing.hash(password)
    user.last_login_at = now
    await throttling.succeeded(session, attempt, now)
    pair = await tokens.issue_pair(session, context.issuer, user, uuid.uuid4(), now)
    await session.commit()
    context.metrics.logins.labels("success").inc()
    audit.info(
        "login succeeded",
        extra={
            "event": "login_succeeded",
            "user_id": str(user.id),
            "client": client,
            "rehashed": verification.needs_rehash,
        },
    )
    return pair


INVALID_REFRESH = "The refresh token is invalid or has expired."
REVOKED_REFRESH = "The refresh token has been revoked: log in again."


def _refused(context: LoginContext, message: str) -> InvalidToken:
    context.metrics.refreshes.labels("invalid").inc()
    return InvalidToken(message)


async def refresh(
    session: AsyncSession, context: LoginContext, refresh_token: str, client: str
) -> TokenPair:
    """Use up `refresh_token` and issue the next pair of its family. A token presented a
    second time means it was stolen (or the legitimate client's copy was): the whole family
    is revoked, so neither party can go on with it."""
    now = datetime.now(UTC)
    try:
        principal = await context.issuer.verifier.verify(refresh_token, expected_type="refresh")
        jti = uuid.UUID(principal.token_id)
    except (InvalidToken, ValueError):
        raise _refused(context, INVALID_REFRESH) from None
    stored = await tokens.find_for_update(session, jti)
    if stored is None or stored.token_sha256 != tokens.sha256(refresh_token):
        raise _refused(context, INVALID_REFRESH)
    if stored.revoked_at is not None:
        raise _refused(context, REVOKED_REFRESH)
    if stored.used_at is not None:
        await tokens.revoke_family(session, stored.family_id, "reuse", now)
        await session.commit()
        context.metrics.refreshes.labels("reuse_detected").inc()
        audit.warning(
            "refresh token reused: family revoked",
            extra={
                "event": "refresh_token_reuse",
                "user_id": str(stored.user_id),
                "family_id": str(stored.family_id),
                "client": client,
            },
        )
        raise InvalidToken("The refresh token was already used; this session is revoked.")

    user = await users.get(session, stored.user_id)
    stored.used_at = now
    if not user.is_active:
        await tokens.revoke_family(session, stored.family_id, "deactivated", now)
        await session.commit()
        raise _refused(context, REVOKED_REFRESH)
    # The role comes from the user as it is now, so a role change takes effect at refresh.
    pair = await tokens.issue_pair(session, context.issuer, user, stored.family_id, now)
    await session.commit()
    context.metrics.refreshes.labels("success").inc()
    return pair


async def logout(session: AsyncSession, context: LoginContext, refresh_token: str) -> None:
    """Revoke the session (the family) the refresh token belongs to. Idempotent."""
    principal = await context.issuer.verifier.verify(refresh_token, expected_type="refresh")
    try:
        family_id = uuid.UUID(str(principal.claims.get("fam")))
    except ValueError:
        raise InvalidToken() from None
    await tokens.revoke_family(session, family_id, "logout", datetime.now(UTC))
    await session.commit()
    audit.info(
        "logged out",
        extra={"event": "logout", "user_id": principal.subject, "family_id": str(family_id)},
    )
