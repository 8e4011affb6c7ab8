"""Ending sessions at the gateway: the access token of a deactivated user, or one issued
before the user's password was reset, is refused within `account_status_cache_s`.

Access tokens are checked by signature alone everywhere, and live 15 minutes. The auth
service raises a user's token generation when their sessions must end and stamps every
access token with the generation it was issued in (`gen`). The gateway asks the auth service
for the user's status (`GET /me/status`, with the caller's own token) and keeps the answer
per user for at most `account_status_cache_s`, counted from when the question was sent, so
an answer read before a deactivation is never used longer than that after it. Callers for
one user while a question is under way share it: a burst makes one call. The cache holds at
most `account_status_cache_size` users (least recently used leave first).

When the auth service cannot answer, the request is refused with 503 rather than let
through: the gateway cannot tell a deactivated user's token from a good one, and this system
serves clinical records. Nobody can sign in while the auth service is down either.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from common.auth import InvalidToken, Principal, TokenVerifier
from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams

STATUS_PATH = "/me/status"


class SessionEnded(InvalidToken):
    def __init__(self) -> None:
        super().__init__("This session has ended: log in again.")


class StatusUnavailable(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Tokens cannot be checked: the auth service is unavailable; try again shortly.",
            code="service_unavailable",
        )


@dataclass(frozen=True)
class AccountStatus:
    active: bool
    token_generation: int
    asked_at: float  # when the question was sent, by the cache's clock

    def accepts(self, principal: Principal) -> bool:
        return self.active and principal.token_generation >= self.token_generation


@dataclass
class _Question:
    asked_at: float
    answer: asyncio.Task[AccountStatus]


class AccountStatuses:
    def __init__(
        self,
        downstreams: Downstreams,
        ttl_s: float,
        max_users: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.downstreams = downstreams
        self.ttl_s = ttl_s
        self.clock = clock
        # Each answer expires `ttl_s` after its question was sent, not after it arrived.
        self._answers: TLRUCache[str, AccountStatus] = TLRUCache(
            maxsize=max_users,
            ttu=lambda _user, status, _now: status.asked_at + ttl_s,
            timer=lambda: self.clock(),
        )
        self._asking: dict[str, _Question] = {}

    async def check(self, principal: Principal, token: str) -> None:
        """Raise `SessionEnded` when the token's user is deactivated or the token is of an
        earlier generation; `StatusUnavailable` when that cannot be known."""
        status = await self.status(principal.subject, token, principal.token_generation)
        if not status.accepts(principal):
            raise SessionEnded()

    async def status(self, user: str, token: str, generation: int) -> AccountStatus:
        """The user's status, as kept or asked. A token of a later generation than the answer
        was issued after a change the answer predates (a reactivation, a new password):
        the answer is stale, and the auth service is asked again."""
        cached = self._answers.get(user)
        if cached is not None and cached.token_generation >= generation:
            return cached
        status = await self._shared_question(user, token)
        if status.token_generation < generation:  # a question sent before the change
            status = await self._ask(user, token, self.clock())
        return status

    async def _shared_question(self, user: str, token: str) -> AccountStatus:
        now = self.clock()
        question = self._asking.get(user)
        # A question sent longer ago than the cache lasts is too old to wait for.
        if question is None or now - question.asked_at >= self.ttl_s:
            question = _Question(now, asyncio.create_task(self._ask(user, token, now)))
            self._asking[user] = question
        # Shielded: one caller hanging up must not cancel the question the others await.
        return await asyncio.shield(question.answer)

    async def _ask(self, user: str, token: str, asked_at: float) -> AccountStatus:
        try:
            answer = await self.downstreams.call(
                "auth",
                "GET",
                STATUS_PATH,
                idempotent=True,
                headers={"Authorization": f"Bearer {token}"},
            )
            if answer.status_code == 401:
                raise InvalidToken()
            if answer.status_code != 200:
                raise StatusUnavailable()
            try:
                body = answer.json()
                status = AccountStatus(
                    active=body["active"] is True,
                    token_generation=int(body["token_generation"]),
                    asked_at=asked_at,
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise StatusUnavailable() from exc
            self._answers[user] = status
            return status
        finally:
            if (question := self._asking.get(user)) is not None and question.asked_at == asked_at:
                del self._asking[user]


class SessionCheckingVerifier(TokenVerifier):
    """The gateway's token check: the signature and claims as in every service, then, for
    an access token, whether its user's sessions have ended since it was issued."""

    def __init__(self, verifier: TokenVerifier, statuses: AccountStatuses) -> None:
        super().__init__(verifier.key_for, issuer=verifier.issuer, audience=verifier.audience)
        self.statuses = statuses

    async def verify(self, token: str, expected_type: str = "access") -> Principal:
        principal = await super().verify(token, expected_type)
        if expected_type == "access":
            await self.statuses.check(principal, token)
        return principal
