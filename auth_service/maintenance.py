"""Housekeeping: expired refresh tokens, stale throttling entries and addresses an account
has not signed in from for long are deleted periodically, so no table grows without bound."""

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.throttling import service as throttling
from auth_service.throttling.service import ThrottlePolicy
from auth_service.tokens import service as tokens
from common.db import Database

logger = logging.getLogger("auth_service.maintenance")

PURGE_INTERVAL_S = 600.0


async def purge_once(session: AsyncSession, policy: ThrottlePolicy, now: datetime) -> dict:
    removed = {
        "refresh_tokens": await tokens.purge_expired(session, now),
        "login_throttles": await throttling.purge_stale(session, policy, now),
        "known_login_addresses": await throttling.purge_unknown_addresses(session, policy, now),
    }
    await session.commit()
    return removed


async def purge_periodically(database: Database, policy: ThrottlePolicy) -> None:
    while True:
        try:
            async with database.sessions() as session:
                removed = await purge_once(session, policy, datetime.now(UTC))
            if any(removed.values()):
                logger.info("purged expired rows", extra={"removed": removed})
        except Exception as exc:  # the database may be away; try again next round
            logger.warning("purge skipped: %s", type(exc).__name__)
        await asyncio.sleep(PURGE_INTERVAL_S)
