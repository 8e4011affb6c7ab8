"""Login throttling: lock an account, or a client address, after repeated failures."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.settings import AuthSettings
from auth_service.throttling.models import LoginThrottle


@dataclass(frozen=True)
class ThrottlePolicy:
    account_failures: int
    address_failures: int
    base_delay: timedelta
    max_delay: timedelta
    window: timedelta

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "ThrottlePolicy":
        return cls(
            account_failures=settings.throttle_account_failures,
            address_failures=settings.throttle_address_failures,
            base_delay=timedelta(seconds=settings.throttle_base_delay_s),
            max_delay=timedelta(seconds=settings.throttle_max_delay_s),
            window=timedelta(seconds=settings.throttle_window_s),
        )

    def delay_after(self, failures: int, threshold: int) -> timedelta | None:
        """How long to lock after the `failures`-th failure in a row: none below the threshold,
        then the base delay, doubling with each further failure, up to the maximum."""
        if failures < threshold:
            return None
        doublings = min(failures - threshold, 30)  # 2**30 times any base is past the maximum
        return min(self.base_delay * (2**doublings), self.max_delay)


def account_key(email: str) -> str:
    # Hashed: fixed length whatever was typed, and no list of tried emails in the table.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"account:{digest}"


def address_key(address: str) -> str:
    return f"address:{address[:300]}"


async def locked_for(session: AsyncSession, keys: list[str], now: datetime) -> timedelta | None:
    """How much longer the longest lock among `keys` lasts, or None when none is locked."""
    latest = await session.scalar(
        select(LoginThrottle.locked_until)
        .where(LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now)
        .order_by(LoginThrottle.locked_until.desc())
        .limit(1)
    )
    return latest - now if latest else None


async def record_failure(
    session: AsyncSession, key: str, threshold: int, policy: ThrottlePolicy, now: datetime
) -> int:
    """Count a failure for `key` (failures older than the window are forgotten) and lock it
    when the count reaches `threshold`. Returns the count."""
    stored = LoginThrottle.__table__.c
    failures = await session.scalar(
        insert(LoginThrottle)
        .values(key=key, failures=1, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[stored.key],
            set_={
                "failures": case(
                    (stored.last_failure_at < now - policy.window, 1),
                    else_=stored.failures + 1,
                ),
                "last_failure_at": now,
            },
        )
        .returning(stored.failures)
    )
    delay = policy.delay_after(failures, threshold)
    if delay is not None:
        await session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key).values(locked_until=now + delay)
        )
    return failures


async def clear(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


async def purge_stale(session: AsyncSession, policy: ThrottlePolicy, now: datetime) -> int:
    """Forget keys whose failures are past the window and whose lock is over."""
    result = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < now - policy.window,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
        )
    )
    return result.rowcount
