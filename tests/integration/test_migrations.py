"""Each service's migrations create its database, run up and down, and match its models."""

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service import models as _auth_models  # noqa: F401
from auth_service.database import Base as AuthBase
from common.db import async_url
from common.migrations import alembic_config, downgrade, upgrade
from data_service import models as _data_models  # noqa: F401
from data_service.database import Base as DataBase
from inference_service import models as _inference_models  # noqa: F401
from inference_service.database import Base as InferenceBase
from tests.conftest import SERVICE_DIRS
from tests.support.sql import fetch

METADATA = {
    "auth": AuthBase.metadata,
    "inference": InferenceBase.metadata,
    "data": DataBase.metadata,
}


def tables(url: str) -> set[str]:
    rows = fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def current_revision(url: str) -> str | None:
    rows = fetch(url, "SELECT version_num FROM alembic_version")
    return rows[0]["version_num"] if rows else None


@pytest.mark.parametrize("service", sorted(SERVICE_DIRS))
def test_upgrade_creates_database_and_tables_then_downgrade_removes_them(service, new_database_url):
    url = new_database_url(service)  # not created yet: the migration step must create it
    head = ScriptDirectory.from_config(
        alembic_config(SERVICE_DIRS[service], url)
    ).get_current_head()

    upgrade(SERVICE_DIRS[service], url)
    assert tables(url) == set(METADATA[service].tables) | {"alembic_version"}
    assert current_revision(url) == head

    upgrade(SERVICE_DIRS[service], url)  # running it again is harmless
    assert current_revision(url) == head

    downgrade(SERVICE_DIRS[service], url, "base")
    assert tables(url) == {"alembic_version"}
    assert current_revision(url) is None

    upgrade(SERVICE_DIRS[service], url)
    assert current_revision(url) == head


async def _schema_diff(url: str, metadata) -> list:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", sorted(SERVICE_DIRS))
def test_migrations_match_the_models(service, migrated_database_url):
    """A model change without its migration fails here, not in production."""
    url = migrated_database_url(service)
    assert asyncio.run(_schema_diff(url, METADATA[service])) == []
