"""App factory of the auth service: `uvicorn --factory auth_service.main:create_app`."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from auth_service.login.routes import router as login_router
from auth_service.login.service import LoginContext, LoginMetrics
from auth_service.maintenance import purge_periodically
from auth_service.passwords.hashing import PasswordHashing
from auth_service.settings import AuthSettings, get_settings
from auth_service.throttling.service import ThrottlePolicy
from auth_service.tokens.issuing import TokenIssuer
from auth_service.tokens.keys import Keyring, KeyringError
from auth_service.tokens.routes import router as keys_router
from auth_service.users import service as users
from auth_service.users.routes import router as users_router
from common.app import create_service_app, stop_tasks
from common.db import Database
from common.errors import ServiceError

logger = logging.getLogger("auth_service")

BOOTSTRAP_RETRY_S = 5.0


def load_keyring(settings: AuthSettings) -> Keyring:
    # Tokens signed by a retired key stay valid at most this long after it was retired.
    longest = max(settings.access_token_ttl, settings.refresh_token_ttl)
    if settings.signing_key is not None:
        return Keyring.from_pem(settings.signing_key.get_secret_value().encode(), longest)
    if settings.keys_dir is None:
        raise KeyringError("set AUTH_SIGNING_KEY or AUTH_KEYS_DIR")
    return Keyring.from_directory(settings.keys_dir, longest)


async def bootstrap_admin(database: Database, settings: AuthSettings, hashing: PasswordHashing):
    """Create the configured first admin once the database answers (retrying until then)."""
    if not settings.admin_email or settings.admin_password is None:
        return
    while True:
        try:
            async with database.sessions() as session:
                created = await users.ensure_first_admin(
                    session,
                    hashing,
                    settings.admin_email,
                    settings.admin_password.get_secret_value(),
                    settings.admin_full_name,
                )
                await session.commit()
        except ServiceError as exc:  # a configuration problem: retrying will not fix it
            logger.error("cannot create the first admin %s: %s", settings.admin_email, exc.message)
            return
        except Exception as exc:
            logger.warning("first admin not checked yet (%s); retrying", type(exc).__name__)
            await asyncio.sleep(BOOTSTRAP_RETRY_S)
            continue
        if created:
            logger.info("created the first admin %s", settings.admin_email)
        return


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    keyring = load_keyring(settings)  # no key, no service: fail at start, not at first login
    hashing = PasswordHashing.from_settings(settings)
    policy = ThrottlePolicy.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = app.state.database
        app.state.admin_bootstrap = asyncio.create_task(
            bootstrap_admin(database, settings, hashing)
        )
        purging = asyncio.create_task(purge_periodically(database, policy))
        yield
        await stop_tasks(app.state.admin_bootstrap, purging)

    app = create_service_app(
        service="auth",
        title="Auth service",
        description="Users, roles, password hashes and signed tokens.",
        settings=settings,
        database_url=settings.database_url,
        lifespan=lifespan,
    )
    issuer = TokenIssuer(keyring, settings)
    app.state.login = LoginContext(
        issuer=issuer,
        hashing=hashing,
        policy=policy,
        metrics=LoginMetrics(app.state.metrics_registry),
    )
    app.state.token_verifier = issuer.verifier
    app.include_router(login_router)
    app.include_router(keys_router)
    app.include_router(users_router)
    return app
