"""Login throttling, so that neither guessing nor a stranger's failures lock a user out.

Three counts of failures, each with its own rule:
- an account from one client address: locked after a few failures, for a delay that doubles
  with each further failure (up to minutes). It stops one address guessing one password,
  and a lock there keeps nobody else out;
- one client address across accounts: the same, from a higher threshold;
- an account from every address it has not signed in from before: a higher threshold and
  a short delay (seconds), doubling up to a small cap. It bounds guessing spread over many
  addresses to a few attempts a minute, and cannot lock the user out: attempts from an
  address they signed in from are not slowed by it, and from a new one they wait at most
  the cap.

An attempt is counted before its password is checked, with the rows locked, and refused
without a check while any of its counts is locked: concurrent attempts are admitted one at a
time, so no more are checked than the thresholds allow. A successful login takes its own
attempt back, clears the failures of its account from its address, and remembers the address.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.settings import AuthSettings
from auth_service.throttling.models import KnownLoginAddress, LoginThrottle

MAX_ADDRESS_LENGTH = 300


@dataclass(frozen=True)
class ThrottleRule:
    failures: int  # the threshold: this many failures in a row start the delays
    base_delay: timedelta
    max_delay: timedelta

    def delay_after(self, failures: int) -> timedelta | None:
        """How long to lock after the `failures`-th failure in a row: none below the
        threshold, then the base delay, doubling with each further failure, up to the max."""
        if failures < self.failures:
            return None
        doublings = min(failures - self.failures, 30)  # 2**30 times any base is past the max
        return min(self.base_delay * (2**doublings), self.max_delay)


@dataclass(frozen=True)
class ThrottlePolicy:
    account_address: ThrottleRule
    address: ThrottleRule
    account: ThrottleRule
    window: timedelta  # failures older than this are forgotten
    known_address_ttl: timedelta  # how long a successful login's address stays known

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "ThrottlePolicy":
        base = timedelta(seconds=settings.throttle_base_delay_s)
        longest = timedelta(seconds=settings.throttle_max_delay_s)
        return cls(
            account_address=ThrottleRule(settings.throttle_account_address_failures, base, longest),
            address=ThrottleRule(settings.throttle_address_failures, base, longest),
            account=ThrottleRule(
                settings.throttle_account_failures,
                timedelta(seconds=settings.throttle_account_base_delay_s),
                timedelta(seconds=settings.throttle_account_max_delay_s),
            ),
            window=timedelta(seconds=settings.throttle_window_s),
            known_address_ttl=timedelta(days=settings.throttle_known_address_days),
        )


def account_key(email: str) -> str:
    # Hashed: fixed length whatever was typed, and no list of tried emails in the table.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"account:{digest}"


def address_key(address: str) -> str:
    return f"address:{address[:MAX_ADDRESS_LENGTH]}"


def account_address_key(email: str, address: str) -> str:
    digest = account_key(email).removeprefix("account:")
    return f"account-address:{digest}:{address[:MAX_ADDRESS_LENGTH]}"


@dataclass(frozen=True)
class Attempt:
    """One login attempt: the counts it goes into, each with its rule."""

    email: str
    address: str
    rules: dict[str, ThrottleRule]

    @property
    def own_key(self) -> str:
        return account_address_key(self.email, self.address)


async def is_known_address(
    session: AsyncSession, email: str, address: str, policy: ThrottlePolicy, now: datetime
) -> bool:
    found = await session.scalar(
        select(KnownLoginAddress.address).where(
            KnownLoginAddress.account == account_key(email),
            KnownLoginAddress.address == address[:MAX_ADDRESS_LENGTH],
            KnownLoginAddress.last_login_at > now - policy.known_address_ttl,
        )
    )
    return found is not None


async def attempt_for(
    session: AsyncSession, policy: ThrottlePolicy, email: str, address: str, now: datetime
) -> Attempt:
    """The counts an attempt from `address` on `email` goes into. The same queries run
    whether or not the account exists."""
    rules = {
        account_address_key(email, address): policy.account_address,
        address_key(address): policy.address,
    }
    if not await is_known_address(session, email, address, policy, now):
        rules[account_key(email)] = policy.account
    return Attempt(email, address, rules)


async def admit(
    session: AsyncSession, attempt: Attempt, policy: ThrottlePolicy, now: datetime
) -> timedelta | None:
    """Count `attempt` as a failure on each of its keys and commit, unless one of them is
    locked: then nothing is counted and the longest remaining lock is returned.

    The rows are created if missing and then locked (in key order, so two attempts sharing
    keys cannot deadlock) until the commit: a concurrent attempt on the same keys waits and
    then sees this one's count."""
    keys = sorted(attempt.rules)
    await session.execute(
        insert(LoginThrottle)
        .values([{"key": key, "failures": 0, "last_failure_at": now} for key in keys])
        .on_conflict_do_nothing(index_elements=["key"])
    )
    rows = (
        await session.scalars(
            select(LoginThrottle)
            .where(LoginThrottle.key.in_(keys))
            .order_by(LoginThrottle.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    remaining = [
        row.locked_until - now for row in rows if row.locked_until and row.locked_until > now
    ]
    if remaining:
        await session.commit()
        return max(remaining)
    for row in rows:
        row.failures = 1 if row.last_failure_at < now - policy.window else row.failures + 1
        row.last_failure_at = now
        delay = attempt.rules[row.key].delay_after(row.failures)
        if delay is not None:
            row.locked_until = now + delay
    await session.commit()
    return None


async def succeeded(session: AsyncSession, attempt: Attempt, now: datetime) -> None:
    """A successful attempt: its account's failures from its address are cleared, the count
    it added elsewhere is taken back, and its address becomes known for the account. Locks
    on the other keys stay: a guesser's failures keep slowing the guesser."""
    own = attempt.own_key
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == own))
    others = [key for key in attempt.rules if key != own]
    await session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key.in_(others), LoginThrottle.failures > 0)
        .values(failures=LoginThrottle.failures - 1)
    )
    await session.execute(
        insert(KnownLoginAddress)
        .values(
            account=account_key(attempt.email),
            address=attempt.address[:MAX_ADDRESS_LENGTH],
            last_login_at=now,
        )
        .on_conflict_do_update(index_elements=["account", "address"], set_={"last_login_at": now})
    )


async def purge_stale(session: AsyncSession, policy: ThrottlePolicy, now: datetime) -> int:
    """Forget keys whose failures are past the window and whose lock is over."""
    result = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < now - policy.window,
            (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now),
        )
    )
    return result.rowcount


async def purge_unknown_addresses(
    session: AsyncSession, policy: ThrottlePolicy, now: datetime
) -> int:
    """Forget the addresses accounts have not signed in from for `known_address_ttl`."""
    result = await session.execute(
        delete(KnownLoginAddress).where(
            KnownLoginAddress.last_login_at < now - policy.known_address_ttl
        )
    )
    return result.rowcount
