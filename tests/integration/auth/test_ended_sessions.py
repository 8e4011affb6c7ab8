"""The gateway, in front of a real auth service, refuses the access token of a deactivated
user, and tokens issued before a password reset, once its cache of the user's status has
expired (`GATEWAY_ACCOUNT_STATUS_CACHE_S`); it asks once per user however many requests
arrive, keeps a bounded number of users, and refuses with 503 when it cannot ask."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from common.auth import jwks_token_verifier
from common.http import create_http_client
from devstack.postgres import free_port
from gateway.auth.sessions import STATUS_PATH, SessionCheckingVerifier
from gateway.main import create_app
from gateway.settings import GatewaySettings
from tests.support.auth import AuthHarness
from tests.support.tokens import bearer

PASSWORD = "distinct pelican 4491"
NEW_PASSWORD = "copper heron drifting 58"
CACHE_S = 10.0


class AuthTransport(httpx.ASGITransport):
    """The auth app over ASGI, counting the status questions, and able to go away."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app=app)
        self.status_questions = 0
        self.down = False
        self.status_answer: object = None  # when set, what the status question gets instead

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("auth is down", request=request)
        if request.url.path == STATUS_PATH:
            self.status_questions += 1
            if self.status_answer is not None:
                return httpx.Response(200, json=self.status_answer)
        return await super().handle_async_request(request)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: FastAPI
    auth_transport: AuthTransport
    now: list[float]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds

    async def accepts(self, token: str) -> bool:
        """Whether the gateway lets `token` through to a route. The data service behind it
        is not running: a token let through gets its 503, a refused one 401."""
        answer = await self.client.get("/api/v1/patients", headers=bearer(token))
        if answer.status_code == 401:
            assert answer.json()["error"]["message"] == "This session has ended: log in again."
            return False
        assert answer.status_code == 503, answer.text
        assert "data service" in answer.json()["error"]["message"]
        return True


@asynccontextmanager
async def gateway_before(auth: AuthHarness, **overrides: object) -> AsyncIterator[Gateway]:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        auth_url="http://auth",
        inference_url=nowhere,
        data_url=nowhere,
        **{"retry_attempts": 1, "account_status_cache_s": CACHE_S, **overrides},
    )
    app = create_app(settings)
    transport = AuthTransport(auth.app)
    downstreams = app.state.downstreams
    await downstreams.clients["auth"].aclose()
    downstreams.clients["auth"] = create_http_client("http://auth", transport=transport)
    app.state.token_verifier = SessionCheckingVerifier(
        jwks_token_verifier(downstreams.clients["auth"], settings), app.state.account_statuses
    )
    now = [1000.0]
    app.state.account_statuses.clock = lambda: now[0]
    async with app.router.lifespan_context(app):
        gateway_transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=gateway_transport, base_url="http://gateway"
        ) as client:
            yield Gateway(client, app, transport, now)


async def signed_in(auth: AuthHarness, email: str) -> tuple[dict, str]:
    """A new clinician and an access token of theirs."""
    user = await auth.create_user(email)
    return user, (await auth.tokens(email, PASSWORD))["access_token"]


async def set_user(auth: AuthHarness, user_id: str, **changes: object) -> None:
    answer = await auth.client.patch(
        f"/users/{user_id}", json=changes, headers=await auth.login_header()
    )
    assert answer.status_code == 200, answer.text


async def test_a_deactivated_users_token_is_refused_once_the_cache_interval_passes(auth):
    user, token = await signed_in(auth, "leaver@example.com")
    async with gateway_before(auth) as gateway:
        assert await gateway.accepts(token)
        await set_user(auth, user["id"], is_active=False)

        gateway.advance(CACHE_S - 0.1)
        assert await gateway.accepts(token)  # the answer kept from before, within the bound
        gateway.advance(0.2)
        assert not await gateway.accepts(token)
        # The gateway's own /auth/me says so too, without reaching the auth service's /me.
        me = await gateway.client.get("/api/v1/auth/me", headers=bearer(token))
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "invalid_token"
        assert me.json()["error"]["message"] == "This session has ended: log in again."


@pytest.mark.parametrize(
    ("ending", "restoring", "password"),
    [
        ({"is_active": False}, {"is_active": True}, PASSWORD),
        ({"password": NEW_PASSWORD}, None, NEW_PASSWORD),
    ],
    ids=["deactivated_then_reactivated", "password_reset"],
)
async def test_old_tokens_stay_refused_and_new_ones_work_at_once(auth, ending, restoring, password):
    user, old = await signed_in(auth, "returner@example.com")
    async with gateway_before(auth) as gateway:
        assert await gateway.accepts(old)
        await set_user(auth, user["id"], **ending)
        gateway.advance(CACHE_S)
        assert not await gateway.accepts(old)  # the answer that refused it is kept 10 s

        if restoring:
            await set_user(auth, user["id"], **restoring)
        new = (await auth.tokens(user["email"], password))["access_token"]
        # At once, not when the kept answer expires: the new token's generation is newer.
        assert await gateway.accepts(new)
        assert not await gateway.accepts(old)
    # The auth service's own /me refuses the old one as well.
    assert (await auth.client.get("/me", headers=bearer(old))).status_code == 401


async def test_with_no_cache_every_request_asks(auth):
    user, token = await signed_in(auth, "watched@example.com")
    async with gateway_before(auth, account_status_cache_s=0) as gateway:
        assert await gateway.accepts(token)
        assert await gateway.accepts(token)
        assert gateway.auth_transport.status_questions == 2
        await set_user(auth, user["id"], is_active=False)
        assert not await gateway.accepts(token)


async def test_a_burst_for_one_user_asks_the_auth_service_once(auth):
    _, token = await signed_in(auth, "busy@example.com")
    async with gateway_before(auth) as gateway:
        answers = await asyncio.gather(*(gateway.accepts(token) for _ in range(30)))
        assert all(answers)
        assert gateway.auth_transport.status_questions == 1
        gateway.advance(CACHE_S / 2)
        assert await gateway.accepts(token)
        assert gateway.auth_transport.status_questions == 1
        gateway.advance(CACHE_S / 2)  # the answer has expired: asked again
        assert await gateway.accepts(token)
        assert gateway.auth_transport.status_questions == 2


async def test_the_cache_keeps_at_most_its_size_of_users(auth):
    tokens = []
    for name in ("first", "second", "third"):
        tokens.append((await signed_in(auth, f"{name}@example.com"))[1])
    async with gateway_before(auth, account_status_cache_size=2) as gateway:
        for token in tokens:
            assert await gateway.accepts(token)
        assert gateway.auth_transport.status_questions == 3
        assert await gateway.accepts(tokens[2])  # still kept
        assert gateway.auth_transport.status_questions == 3
        assert await gateway.accepts(tokens[0])  # the least recently used left: asked again
        assert gateway.auth_transport.status_questions == 4


async def test_when_the_auth_service_cannot_answer_tokens_are_refused_with_503(auth):
    _, token = await signed_in(auth, "stranded@example.com")
    async with gateway_before(auth) as gateway:
        assert await gateway.accepts(token)
        gateway.auth_transport.down = True
        gateway.advance(CACHE_S)
        answer = await gateway.client.get("/api/v1/patients", headers=bearer(token))
        assert answer.status_code == 503, answer.text
        assert "auth service" in answer.json()["error"]["message"]
        gateway.auth_transport.down = False
        assert await gateway.accepts(token)


async def test_a_status_answer_that_is_not_understood_refuses_with_503(auth):
    _, token = await signed_in(auth, "odd@example.com")

    async with gateway_before(auth) as gateway:
        garbled_answers = (
            {"active": True},
            {"active": True, "token_generation": "many"},
            ["not", "an", "object"],
        )
        for garbled in garbled_answers:
            gateway.auth_transport.status_answer = garbled
            answer = await gateway.client.get("/api/v1/patients", headers=bearer(token))
            assert answer.status_code == 503, (garbled, answer.text)
            assert "cannot be checked" in answer.json()["error"]["message"]


@pytest.mark.parametrize("seconds", [-1, 30, 45])
def test_the_cache_interval_must_stay_under_30_seconds(seconds):
    with pytest.raises(ValidationError, match="account_status_cache_s"):
        GatewaySettings(account_status_cache_s=seconds)


async def test_the_status_route_answers_only_to_an_access_token_and_about_its_user(auth):
    user, token = await signed_in(auth, "asked@example.com")
    assert (await auth.client.get(STATUS_PATH)).status_code == 401
    refresh = (await auth.tokens("asked@example.com", PASSWORD))["refresh_token"]
    assert (await auth.client.get(STATUS_PATH, headers=bearer(refresh))).status_code == 401
    mine = await auth.client.get(STATUS_PATH, headers=bearer(token))
    assert mine.json() == {"active": True, "token_generation": 0}
    await set_user(auth, user["id"], is_active=False)
    # Still answered for the ended session's token: the answer is about the user.
    ended = await auth.client.get(STATUS_PATH, headers=bearer(token))
    assert ended.status_code == 200
    assert ended.json() == {"active": False, "token_generation": 1}
