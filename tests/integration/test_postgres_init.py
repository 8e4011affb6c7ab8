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
PASSWORDS = {"auth": "auth-secret", "inference": "inference-secret", "data": "data-secret"}


@pytest.fixture(scope="module")
def server():
    with running_private_postgres("cds-init-pg-") as private:
        yield private


def connect(server: PrivatePostgres, user: str, database: str):
    return asyncpg.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=PASSWORDS.get(user),
        database=database,
    )


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
        **{f"{name.upper()}_DB_PASSWORD": password for name, password in PASSWORDS.items()},
    }
    completed = subprocess.run(
        ["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr

    async def access() -> dict[tuple[str, str], bool]:
        return {
            (user, database): await can_use(server, user, database)
            for user in PASSWORDS
            for database in PASSWORDS
        }

    allowed = asyncio.run(access())
    assert {pair for pair, ok in allowed.items() if ok} == {
        ("auth", "auth"),
        ("inference", "inference"),
        ("data", "data"),
    }


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
    migrated = subprocess.run(
        [sys.executable, "-m", f"{service}_service.migrate", "upgrade"],
        cwd=ROOT,
        env={**os.environ, f"{service.upper()}_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
