"""An auth service app against a real database, driven in-process over ASGI."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from tests.support.services import auth_app
from tests.support.tokens import bearer

# Cheap Argon2 parameters, so that a test suite can log in hundreds of times.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 8192, "argon2_parallelism": 1}
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "harbour lantern quietly 72"


class SteppedClock:
    """The auth service's login clock in a test: it starts at the real time and moves only
    when the test says, so a lock's end is reached without waiting for it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class AuthHarness:
    app: FastAPI
    client: httpx.AsyncClient
    clock: SteppedClock

    async def login(self, email: str, password: str, address: str | None = None) -> httpx.Response:
        headers = {"X-Forwarded-For": address} if address else {}
        return await self.client.post(
            "/token", data={"username": email, "password": password}, headers=headers
        )

    async def tokens(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> dict:
        response = await self.login(email, password)
        assert response.status_code == 200, response.text
        return response.json()

    async def login_header(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> dict:
        return bearer((await self.tokens(email, password))["access_token"])

    async def create_user(
        self, email: str, role: str = "clinician", password: str = "distinct pelican 4491"
    ) -> dict:
        response = await self.client.post(
            "/users",
            json={
                "email": email,
                "full_name": email.split("@")[0],
                "role": role,
                "password": password,
            },
            headers=await self.login_header(),
        )
        assert response.status_code == 201, response.text
        return response.json()


@asynccontextmanager
async def running_auth(database_url: str, **overrides: object) -> AsyncIterator[AuthHarness]:
    settings = {
        **FAST_ARGON2,
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        "throttle_base_delay_s": 1.0,
        **overrides,
    }
    app = auth_app(database_url, **settings)
    clock = SteppedClock()
    app.state.login = replace(app.state.login, clock=clock)
    async with app.router.lifespan_context(app):
        await app.state.admin_bootstrap
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
            yield AuthHarness(app, client, clock)
