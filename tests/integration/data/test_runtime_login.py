"""The data service's runtime login, as compose and `make run` set it up: a database owned by a
login of its own (not a superuser) that runs the migrations, and a runtime login that owns
nothing and has only what the migrations grant it. Audit events stay append-only even for
a process holding the runtime login's password."""

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from common.migrations import drop_database, grant_runtime_privileges, runtime_role
from devstack import ROOT
from devstack.postgres import connect, drop_login, ensure_login, runtime_login_name

# Each statement needs a privilege the runtime login has not got, or the table's ownership.
REFUSED_ON_AUDIT = [
    "UPDATE audit_events SET action = 'forged'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events",
    "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_events_append_only ON audit_events",
    "DROP TRIGGER audit_events_no_truncate ON audit_events",
    "DROP FUNCTION audit_events_append_only() CASCADE",
    "DROP TABLE audit_events",
    "ALTER TABLE audit_events RENAME TO audit_events_old",
    "UPDATE alembic_version SET version_num = '0001'",
]
INSERT_EVENT = (
    "INSERT INTO audit_events (action, resource_type, resource_id, details) "
    "VALUES ('probe.recorded', 'probe', $1, '{}') RETURNING id"
)


@dataclass(frozen=True)
class Logins:
    owner_url: str
    runtime_url: str


def login_url(url: str, user: str, password: str) -> str:
    return make_url(url).set(username=user, password=password).render_as_string(False)


async def execute(url: str, statement: str, *args: object) -> object:
    connection = await connect(url)
    try:
        return await connection.fetchval(statement, *args)
    finally:
        await connection.close()


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def logins(new_database_url) -> object:
    admin_url = new_database_url("data")  # the server's superuser, as in the postgres image
    database = make_url(admin_url).database
    owner, runtime = f"{database}_owner", runtime_login_name(admin_url)

    async def create_database_owned_by_its_login() -> None:
        connection = await connect(admin_url.replace(f"/{database}", "/postgres"))
        try:
            await connection.execute(f"CREATE ROLE \"{owner}\" LOGIN PASSWORD 'owner-secret'")
            await connection.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
        finally:
            await connection.close()

    run(create_database_owned_by_its_login())
    ensure_login(admin_url, runtime, "runtime-secret")
    urls = Logins(
        login_url(admin_url, owner, "owner-secret"),
        login_url(admin_url, runtime, "runtime-secret"),
    )
    # The migration step exactly as compose runs it: the owner's URL to migrate with, the
    # runtime login's URL (without its password) to name whom to grant.
    migrated = subprocess.run(
        [sys.executable, "-m", "data_service.migrate", "upgrade"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATA_MIGRATION_DATABASE_URL": urls.owner_url,
            "DATA_DATABASE_URL": make_url(urls.runtime_url).set(password=None).render_as_string(),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    yield urls
    run(drop_database(admin_url))
    for role in (runtime, owner):
        run(drop_login(admin_url, role))


def test_the_runtime_login_adds_and_reads_audit_events(logins):
    resource = str(uuid.uuid4())
    event_id = run(execute(logins.runtime_url, INSERT_EVENT, resource))
    assert (
        run(
            execute(
                logins.runtime_url, "SELECT resource_id FROM audit_events WHERE id = $1", event_id
            )
        )
        == resource
    )


@pytest.mark.parametrize("statement", REFUSED_ON_AUDIT)
def test_the_runtime_login_cannot_change_remove_or_unguard_audit_events(logins, statement):
    run(execute(logins.runtime_url, INSERT_EVENT, "kept"))
    before = run(execute(logins.owner_url, "SELECT count(*) FROM audit_events"))
    # Refused for want of a privilege (42501), before any trigger is consulted.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(execute(logins.runtime_url, statement))
    assert run(execute(logins.owner_url, "SELECT count(*) FROM audit_events")) == before
    triggers = run(
        execute(
            logins.owner_url,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass "
            "AND tgenabled = 'O' AND NOT tgisinternal",
        )
    )
    assert triggers == 2


def test_the_runtime_login_cannot_alter_drop_or_truncate_any_table_nor_create_one(logins):
    tables = run(
        execute(
            logins.owner_url,
            "SELECT array_agg(tablename::text) FROM pg_tables WHERE schemaname = 'public'",
        )
    )
    assert {"audit_events", "images", "predictions", "reviews", "patients"} <= set(tables)
    for table in tables:
        for statement in (
            f'TRUNCATE "{table}"',
            f'DROP TABLE "{table}"',
            f'ALTER TABLE "{table}" ADD COLUMN intruder int',
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                run(execute(logins.runtime_url, statement))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(execute(logins.runtime_url, "CREATE TABLE public.intruder (id int)"))


def test_the_owner_too_is_refused_truncate_by_the_trigger(logins):
    with pytest.raises(asyncpg.RaiseError, match="TRUNCATE is refused"):
        run(execute(logins.owner_url, "TRUNCATE audit_events"))


def test_the_runtime_login_reads_and_writes_the_other_tables(logins):
    patient = run(
        execute(
            logins.runtime_url,
            "INSERT INTO patients (id, external_ref) VALUES ($1, $2) RETURNING id",
            uuid.uuid4(),
            f"P-{uuid.uuid4().hex[:8]}",
        )
    )
    run(
        execute(
            logins.runtime_url,
            "UPDATE patients SET external_ref = 'P-renamed' WHERE id = $1",
            patient,
        )
    )
    run(execute(logins.runtime_url, "DELETE FROM patients WHERE id = $1", patient))
    assert run(execute(logins.runtime_url, "SELECT version_num FROM alembic_version"))


def test_a_table_a_later_migration_adds_gets_the_grants_at_that_migration(logins):
    run(execute(logins.owner_url, "CREATE TABLE later_feature (id int)"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(execute(logins.runtime_url, "INSERT INTO later_feature VALUES (1)"))
    # What every upgrade ends with (common.migrations.upgrade).
    role = runtime_role(logins.runtime_url, logins.owner_url)
    assert role is not None
    run(grant_runtime_privileges(logins.owner_url, role, ["audit_events"]))
    run(execute(logins.runtime_url, "INSERT INTO later_feature VALUES (1)"))
    run(execute(logins.runtime_url, "DELETE FROM later_feature"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(execute(logins.runtime_url, "DROP TABLE later_feature"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run(execute(logins.runtime_url, "DELETE FROM audit_events"))


def test_grants_are_refused_to_a_superuser_or_a_missing_login(logins):
    with pytest.raises(RuntimeError, match="superuser"):
        run(grant_runtime_privileges(logins.owner_url, "postgres"))
    with pytest.raises(RuntimeError, match="does not exist"):
        run(grant_runtime_privileges(logins.owner_url, f"missing_{uuid.uuid4().hex[:8]}"))
    with pytest.raises(ValueError, match="identifier"):
        run(grant_runtime_privileges(logins.owner_url, 'x"; DROP TABLE audit_events; --'))


def test_one_login_for_both_means_no_grants():
    url = "postgresql://data:pw@db:5432/data"
    assert runtime_role(url, url) is None
    assert runtime_role("postgresql://data_runtime@db/data", url) == "data_runtime"


async def test_the_data_service_works_end_to_end_as_the_runtime_login(logins, tmp_path):
    from tests.support.data import running_data

    async with running_data(logins.runtime_url, tmp_path / "images") as data:
        patient = await data.patient(f"P-{uuid.uuid4().hex[:8]}")
        image = await data.image(31, patient["id"])
        stored = await data.prediction(image["id"])
        assert stored.status_code == 201, stored.text
        review = await data.client.post(
            f"/predictions/{stored.json()['id']}/reviews",
            json={"verdict": "agree"},
            headers=data.clinician,
        )
        assert review.status_code == 201, review.text
    connection = await connect(logins.owner_url)
    try:
        actions = {
            row["action"]
            for row in await connection.fetch(
                "SELECT action FROM audit_events WHERE resource_id = ANY($1::text[])",
                [patient["id"], image["id"], stored.json()["id"], review.json()["id"]],
            )
        }
    finally:
        await connection.close()
    assert len(actions) >= 3, actions  # the service could record its audit events
