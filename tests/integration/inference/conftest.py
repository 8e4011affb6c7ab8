import pytest

from tests.support.inference import copy_versions


@pytest.fixture
def models_dir(trained_versions, tmp_path):
    """A models folder of this test's own holding 'tiny-a'."""
    return copy_versions(trained_versions, tmp_path / "models", ["tiny-a"])


@pytest.fixture
def inference_db(migrated_database_url):
    return migrated_database_url("inference")
