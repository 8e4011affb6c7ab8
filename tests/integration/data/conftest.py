import pytest

from tests.support.data import running_data


@pytest.fixture
def data_db(migrated_database_url):
    return migrated_database_url("data")


@pytest.fixture
async def data(data_db, tmp_path):
    async with running_data(data_db, tmp_path / "images") as harness:
        yield harness
