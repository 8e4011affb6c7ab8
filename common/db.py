"""Async SQLAlchemy engine and session factory, and the database readiness check."""

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import MetaData, Select, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from common.errors import error_response, unexpected_error

logger = logging.getLogger("common.db")

# Deterministic constraint names, so Alembic can drop and alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def declarative_base() -> type[DeclarativeBase]:
    """A fresh declarative base for one service's tables (services never share metadata)."""

    class Base(DeclarativeBase):
        metadata = MetaData(naming_convention=NAMING_CONVENTION)

    return Base


def async_url(url: str | URL) -> URL:
    """Accept `postgresql://` URLs as people write them and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


class Database:
    """One engine and session factory per service process."""

    def __init__(self, url: str | URL, *, pool_size: int = 10, connect_timeout_s: float = 5.0):
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # Connections broken by a database restart are noticed and replaced before use.
            pool_pre_ping=True,
            connect_args={"timeout": connect_timeout_s},
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def session(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: one session per request, closed afterwards."""
        async with self.sessions() as session:
            yield session

    async def check(self) -> str | None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return None

    async def dispose(self) -> None:
        await self.engine.dispose()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: a session of the app's database (`app.state.database`)."""
    async for session in request.app.state.database.session():
        yield session


SessionDep = Annotated[AsyncSession, Depends(request_session)]


async def page_with_total(
    session: AsyncSession, query: Select, limit: int, offset: int
) -> tuple[list, int]:
    """One page of `query`'s rows (already ordered) and how many rows it has in all."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = await session.scalars(query.limit(limit).offset(offset))
    return list(rows), total or 0


# SQLSTATEs of a server that is not there for now: connection failures (class 08), shutting
# down or starting up (57P01-57P03), out of connection slots (53300).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def _database_unavailable(request: Request) -> JSONResponse:
    logger.warning("the database is unavailable on %s %s", request.method, request.url.path)
    return error_response(
        request,
        503,
        "The database is unavailable; try again shortly.",
        "service_unavailable",
        headers={"Retry-After": "1"},
    )


def _is_unavailable(sqlstate: str) -> bool:
    return sqlstate.startswith(UNAVAILABLE_SQLSTATES)


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL's "data exception" class (SQLSTATE 22...: a NUL character in text, a number
    out of range) comes from a value the caller sent; it is their error, not ours. A lost
    connection is the database being away, which the caller may retry."""
    assert isinstance(exc, DBAPIError)
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    if exc.connection_invalidated or _is_unavailable(sqlstate):
        return _database_unavailable(request)
    if not sqlstate.startswith("22"):
        return await unexpected_error(request, exc)
    logger.info("refused a value the database cannot store (SQLSTATE %s)", sqlstate)
    return error_response(
        request,
        422,
        "A value in the request cannot be stored (for example a NUL character or a number "
        "out of range).",
        "validation_error",
    )


async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    """Opening a connection fails outside SQLAlchemy's wrapping: refused or reset (OSError),
    timed out, or refused by a server shutting down or starting up (asyncpg's own errors)."""
    if isinstance(exc, asyncpg.PostgresError) and not _is_unavailable(exc.sqlstate or ""):
        return await unexpected_error(request, exc)
    return _database_unavailable(request)


def install_db_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _unstorable_value)
    for unreachable in (ConnectionError, TimeoutError, asyncpg.PostgresError):
        app.add_exception_handler(unreachable, _unreachable)
