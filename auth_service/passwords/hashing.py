"""Argon2id password hashes, verified off the event loop (each takes tens of milliseconds)."""

import asyncio
from contextlib import suppress
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth_service.settings import AuthSettings


@dataclass(frozen=True)
class Verification:
    matches: bool
    needs_rehash: bool = False


class PasswordHashing:
    def __init__(self, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            type=Type.ID,
        )
        # Verified instead of a real hash when the email is unknown, so that an unknown email
        # costs the same time as a wrong password and timing does not tell which accounts exist.
        self._dummy_hash = self.hasher.hash("not a real password, never matches anything")

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "PasswordHashing":
        return cls(
            settings.argon2_time_cost, settings.argon2_memory_cost_kib, settings.argon2_parallelism
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> Verification:
        """Check `password`; with no hash (unknown account) a dummy is checked and fails."""
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> Verification:
        if password_hash is None:
            with suppress(VerificationError):
                self.hasher.verify(self._dummy_hash, password)
            return Verification(matches=False)
        try:
            self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(matches=False)
        return Verification(
            matches=True, needs_rehash=self.hasher.check_needs_rehash(password_hash)
        )
