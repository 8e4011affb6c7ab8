"""Compose's PostgreSQL init script (infra/postgres/init), run as the postgres image runs it,
against a private server: one database per service, and no service can reach another's."""

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from devstack import ROOT
from devstack.postgres import PrivatePostgres, install_binaries
from tests.support.private_postgres import running_private_postgres

SCRIPT = ROOT / "infra" / "postgres" / "init" / "01-databases.sh"
PASSWORDS = {
    "auth": "auth-secret",
    "inference": "inference-secret",
    "data": "data-secret",
    "slides": "slides-secret",
}
# Each database's service: its package (`<package>.migrate`) and its settings' env prefix.
PACKAGES = {"auth": "auth", "inference": "inference", "data": "data", "slides": "slide"}
RUNTIME_PASSWORDS = {f"{name}_runtime": f"{name}-runtime-secret" for name in PASSWORDS}


@pytest.fixture(scope="module")
def server():
    with running_private_postgres("cds-init-pg-") as private:
        yield private


def connect(server: PrivatePostgres, user: str, database: str):
    return asyncpg.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password={**PASSWORDS, **RUNTIME_PASSWORDS}.get(user),
        database=database,
    )


async def can_connect(server: PrivatePostgres, user: str, database: str) -> bool:
    try:
        connection = await connect(server, user, database)
    except asyncpg.InsufficientPrivilegeError:
        return False
    await connection.close()
    return True


def all_passwords() -> dict[str, str]:
    return {
        **{f"{name.upper()}_DB_PASSWORD": password for name, password in PASSWORDS.items()},
        **{f"{name.upper()}_DB_PASSWORD": password for name, password in RUNTIME_PASSWORDS.items()},
    }


async def can_use(server: PrivatePostgres, user: str, database: str) -> bool:
    try:
        connection = await connect(server, user, database)
    except asyncpg.InsufficientPrivilegeError:
        return False
    try:
        await connection.execute("CREATE TABLE probe (id int); DROP TABLE probe")
    finally:
        await connection.close()
    return True


def allowed_pairs(check, server: PrivatePostgres, users) -> set[tuple[str, str]]:
    """The (login, database) pairs for which `check` says yes."""

    async def each() -> set[tuple[str, str]]:
        return {
            (user, database)
            for user in users
            for database in PASSWORDS
            if await check(server, user, database)
        }

    return asyncio.run(each())


def script_environment(server: PrivatePostgres) -> dict[str, str]:
    """As in the postgres image: psql on PATH (the private server's own), the superuser."""
    return {
        **os.environ,
        "PATH": f"{install_binaries(ROOT / '.tools')}{os.pathsep}{os.environ['PATH']}",
        "POSTGRES_USER": "postgres",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
    }


def test_the_script_stops_before_anything_when_a_password_is_missing(server):
    environment = {
        **script_environment(server),
        "POSTGRES_USER": "postgres",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
    }
    for name in PASSWORDS:
        environment.pop(f"{name.upper()}_DB_PASSWORD", None)
    completed = subprocess.run(
        ["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode != 0
    # Nothing half-made: the next test runs the script on the same server from scratch.


def test_each_service_gets_its_own_database_and_only_that(server):
    environment = {
        **script_environment(server),
        "POSTGRES_USER": "postgres",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        **all_passwords(),
    }
    completed = subprocess.run(
        ["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr

    assert allowed_pairs(can_use, server, PASSWORDS) == {
        ("auth", "auth"),
        ("inference", "inference"),
        ("data", "data"),
        ("slides", "slides"),
    }
    # Each runtime login connects to its service's database alone, and creates nothing there.
    assert allowed_pairs(can_connect, server, RUNTIME_PASSWORDS) == {
        ("auth_runtime", "auth"),
        ("inference_runtime", "inference"),
        ("data_runtime", "data"),
        ("slides_runtime", "slides"),
    }
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(can_use(server, "data_runtime", "data"))


@pytest.mark.parametrize("service", list(PASSWORDS))
def test_each_service_migrates_with_its_own_login_alone(server, service):
    """As on a managed server: the logins may not even connect to the `postgres` database."""
    revoke = subprocess.run(
        [
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
        ],
        env=script_environment(server),
        capture_output=True,
        text=True,
        check=False,
    )
    assert revoke.returncode == 0, revoke.stderr
    url = f"postgresql://{service}:{PASSWORDS[service]}@127.0.0.1:{server.port}/{service}"
    runtime = f"postgresql://{service}_runtime@127.0.0.1:{server.port}/{service}"
    migrated = subprocess.run(
        [sys.executable, "-m", f"{PACKAGES[service]}_service.migrate", "upgrade"],
        cwd=ROOT,
        env={
            **os.environ,
            f"{PACKAGES[service].upper()}_MIGRATION_DATABASE_URL": url,
            f"{PACKAGES[service].upper()}_DATABASE_URL": runtime,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]

    async def runtime_rights() -> None:
        """The migration granted the runtime login its rows, and not the schema."""
        connection = await connect(server, f"{service}_runtime", service)
        try:
            assert await connection.fetchval("SELECT version_num FROM alembic_version")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute("DROP TABLE alembic_version")
            if service in ("data", "slides"):  # both keep an append-only audit trail
                await connection.execute(
                    "INSERT INTO audit_events (action, resource_type, resource_id, details) "
                    "VALUES ('probe.recorded', 'probe', 'init', '{}')"
                )
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.execute("DELETE FROM audit_events")
        finally:
            await connection.close()

    asyncio.run(runtime_rights())
