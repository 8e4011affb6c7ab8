"""Alembic plumbing shared by the services: each service keeps its own migration folder and
database; this module creates that database when missing and runs the migrations.
"""

import asyncio
import logging
import re
from pathlib import Path

import asyncpg
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from common.db import async_url
from common.logging import configure_logging

logger = logging.getLogger("common.migrations")

_SAFE_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _connect_kwargs(url: str) -> dict[str, object]:
    parsed = make_url(url)
    return {
        "user": parsed.username,
        "password": parsed.password,
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
    }


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` if the server does not have it. True if created."""
    name = make_url(url).database
    if not name or not _SAFE_DATABASE_NAME.match(name):
        raise ValueError(f"refusing to create a database with the name {name!r}")
    # A login that owns its database may not be allowed into `postgres` (managed servers
    # often refuse it): try its own database first.
    try:
        own = await asyncpg.connect(database=name, timeout=10, **_connect_kwargs(url))
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await own.close()
        return False
    connection = await asyncpg.connect(database="postgres", timeout=10, **_connect_kwargs(url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            # Identifiers cannot be bound parameters; the name was checked against a strict pattern.
            await connection.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:  # another migrator won the race
            return False
        logger.info("created database %s", name)
        return True
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    name = make_url(url).database
    if not name or not _SAFE_DATABASE_NAME.match(name):
        raise ValueError(f"refusing to drop a database with the name {name!r}")
    connection = await asyncpg.connect(database="postgres", timeout=10, **_connect_kwargs(url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def alembic_config(service_dir: Path, url: str) -> Config:
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    # ConfigParser interpolation would read a `%` in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", str(url).replace("%", "%%"))
    return config


def upgrade(service_dir: Path, url: str, revision: str = "head") -> None:
    """Create the service's database if needed and migrate it. Idempotent."""
    asyncio.run(ensure_database(url))
    command.upgrade(alembic_config(service_dir, url), revision)


def downgrade(service_dir: Path, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service_dir, url), revision)


def run_migrations(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py`."""
    url = async_url(context.config.get_main_option("sqlalchemy.url") or "")
    if context.is_offline_mode():
        context.configure(
            url=url.render_as_string(hide_password=False),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


def _run_in_connection(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: object, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)  # type: ignore[arg-type]
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_in_connection, target_metadata)
    finally:
        await engine.dispose()


def new_revision(service_dir: Path, url: str, message: str) -> None:
    """Write the next numbered revision from the difference between the models and the
    database at head (which is brought to head first)."""
    upgrade(service_dir, url)
    config = alembic_config(service_dir, url)
    head = ScriptDirectory.from_config(config).get_current_head()
    next_id = f"{int(head or 0) + 1:04d}"
    command.revision(config, message=message, autogenerate=True, rev_id=next_id)


def main(service_dir: Path, url: str, argv: list[str]) -> None:
    """`python -m <service>.migrate [upgrade|downgrade] [revision]`, or
    `python -m <service>.migrate revision "what changed"` to write a new revision."""
    configure_logging("migrations")
    action = argv[0] if argv else "upgrade"
    if action == "upgrade":
        upgrade(service_dir, url, argv[1] if len(argv) > 1 else "head")
    elif action == "downgrade":
        downgrade(service_dir, url, argv[1] if len(argv) > 1 else "-1")
    elif action == "revision" and len(argv) == 2:
        new_revision(service_dir, url, argv[1])
    else:
        raise SystemExit(
            f"unknown action {' '.join(argv)!r}: use upgrade, downgrade or revision MESSAGE"
        )
