"""Refresh tokens in the database: issued in families, used once, revoked by family."""

import hashlib
import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.tokens.issuing import TokenIssuer
from auth_service.tokens.models import RefreshToken
from auth_service.tokens.schemas import TokenPair
from auth_service.users.models import User


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_pair(
    session: AsyncSession,
    issuer: TokenIssuer,
    user: User,
    family_id: uuid.UUID,
    now: datetime,
) -> TokenPair:
    """Tokens of `user` as the row is now: its role and token generation."""
    access = issuer.access_token(user.id, user.role, user.token_generation, now)
    refresh = issuer.refresh_token(user.id, family_id, now)
    session.add(
        RefreshToken(
            id=refresh.jti,
            family_id=family_id,
            user_id=user.id,
            token_sha256=sha256(refresh.token),
            issued_at=now,
            expires_at=refresh.expires_at,
        )
    )
    await session.flush()
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=issuer.settings.access_token_ttl_s,
        refresh_expires_in=issuer.settings.refresh_token_ttl_s,
    )


async def find_for_update(session: AsyncSession, jti: uuid.UUID) -> RefreshToken | None:
    # Locked, so two concurrent refreshes with one token cannot both succeed.
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.id == jti).with_for_update()
    )


async def revoke_family(
    session: AsyncSession, family_id: uuid.UUID, reason: str, now: datetime
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


async def purge_expired(session: AsyncSession, now: datetime) -> int:
    """Drop refresh tokens past their expiry: they can no longer be used, nor reused."""
    result = await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
    return result.rowcount


async def revoke_all_for_user(
    session: AsyncSession, user_id: uuid.UUID, reason: str, now: datetime | None = None
) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now if now is not None else func.now(), revoked_reason=reason)
    )
