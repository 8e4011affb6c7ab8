"""Alembic plumbing shared by the services: each service keeps its own migration folder and
database; this module creates that database when missing, runs the migrations and, when the
service runs as a login other than the schema's owner, grants that login its privileges.
"""

import asyncio
import logging
import re
from collections.abc import Callable, Collection, Sequence
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
from common.settings import DatabaseServiceSettings

logger = logging.getLogger("common.migrations")

# Database, role and table names are put into SQL as quoted identifiers: only these.
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


def runtime_role(runtime_url: str, migration_url: str) -> str | None:
    """The login the service runs as, when it is not the one that owns the schema."""
    runtime = make_url(runtime_url).username
    return runtime if runtime and runtime != make_url(migration_url).username else None


def _identifier(name: str) -> str:
    if not _SAFE_DATABASE_NAME.match(name):
        raise ValueError(f"refusing the SQL identifier {name!r}")
    return f'"{name}"'


async def grant_runtime_privileges(url: str, role: str, append_only: Sequence[str] = ()) -> None:
    """Give `role` what a service needs on the tables of the database at `url` (connected as
    their owner), and nothing else: read and write rows, use sequences, read the schema
    version; on the `append_only` tables only INSERT and SELECT. Not being the owner, it can
    neither ALTER (so not disable a trigger), DROP nor TRUNCATE any of them.

    Run after every migration rather than set once with ALTER DEFAULT PRIVILEGES: the grants
    then follow the schema as it is now, a table a migration recreates gets them again, and
    default privileges could not leave UPDATE and DELETE out for one table alone.
    """
    database = make_url(url).database or ""
    grantee = _identifier(role)
    connection = await asyncpg.connect(database=database, timeout=10, **_connect_kwargs(url))
    try:
        login = await connection.fetchrow("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
        if login is None:
            raise RuntimeError(f"the runtime login {role!r} does not exist: create it first")
        if login["rolsuper"]:
            # A superuser bypasses every privilege: the grants would promise nothing.
            raise RuntimeError(f"the runtime login {role!r} is a superuser; use a plain login")
        async with connection.transaction():
            await connection.execute(
                f"GRANT CONNECT ON DATABASE {_identifier(database)} TO {grantee}"
            )
            await connection.execute(f"GRANT USAGE ON SCHEMA public TO {grantee}")
            # From nothing, so a privilege taken out of this function is taken from the login.
            await connection.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {grantee}")
            await connection.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {grantee}"
            )
            await connection.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {grantee}")
            await connection.execute(
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {grantee}"
            )
            for table in ("alembic_version", *append_only):
                if await connection.fetchval("SELECT to_regclass($1)", f"public.{table}") is None:
                    continue  # not made yet at this revision
                privileges = "SELECT" if table == "alembic_version" else "SELECT, INSERT"
                await connection.execute(f"REVOKE ALL ON {_identifier(table)} FROM {grantee}")
                await connection.execute(f"GRANT {privileges} ON {_identifier(table)} TO {grantee}")
    finally:
        await connection.close()
    logger.info("granted the runtime login %s its privileges on %s", role, database)


def upgrade(
    service_dir: Path,
    url: str,
    revision: str = "head",
    *,
    runtime_url: str | None = None,
    append_only: Sequence[str] = (),
) -> None:
    """Create the service's database if needed and migrate it as the login of `url`; then, when
    `runtime_url` names another login, grant that login its privileges. Idempotent."""
    asyncio.run(ensure_database(url))
    command.upgrade(alembic_config(service_dir, url), revision)
    role = runtime_role(runtime_url, url) if runtime_url else None
    if role:
        asyncio.run(grant_runtime_privileges(url, role, append_only))


def downgrade(service_dir: Path, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service_dir, url), revision)


def run_migrations(target_metadata: MetaData, foreign_tables: Collection[str] = ()) -> None:
    """The body of every service's `migrations/env.py`. `foreign_tables` are tables of the
    database that a library owns (a job queue's): autogenerate neither drops nor alters them."""
    url = async_url(context.config.get_main_option("sqlalchemy.url") or "")
    if context.is_offline_mode():
        context.configure(
            url=url.render_as_string(hide_password=False),
            target_metadata=target_metadata,
            literal_binds=True,
            include_name=ignoring(foreign_tables),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata, foreign_tables))


def ignoring(foreign_tables: Collection[str]) -> Callable[..., bool]:
    """Alembic's `include_name` hook that leaves `foreign_tables` out of every comparison."""

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return not (type_ == "table" and name in foreign_tables)

    return include_name


def _run_in_connection(
    connection: Connection, target_metadata: MetaData, foreign_tables: Collection[str]
) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_name=ignoring(foreign_tables),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(
    url: object, target_metadata: MetaData, foreign_tables: Collection[str]
) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)  # type: ignore[arg-type]
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_in_connection, target_metadata, foreign_tables)
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


def main(
    service_dir: Path,
    settings: DatabaseServiceSettings,
    argv: list[str],
    append_only: Sequence[str] = (),
) -> None:
    """`python -m <service>.migrate [upgrade|downgrade] [revision]`, or
    `python -m <service>.migrate revision "what changed"` to write a new revision. Runs as
    the migration login; `append_only` names the tables the runtime login may only add to."""
    configure_logging("migrations")
    url = settings.migration_url
    action = argv[0] if argv else "upgrade"
    if action == "upgrade":
        revision = argv[1] if len(argv) > 1 else "head"
        upgrade(
            service_dir, url, revision, runtime_url=settings.database_url, append_only=append_only
        )
    elif action == "downgrade":
        downgrade(service_dir, url, argv[1] if len(argv) > 1 else "-1")
    elif action == "revision" and len(argv) == 2:
        new_revision(service_dir, url, argv[1])
    else:
        raise SystemExit(
            f"unknown action {' '.join(argv)!r}: use upgrade, downgrade or revision MESSAGE"
        )
