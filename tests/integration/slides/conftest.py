import pytest

from tests.support.slide_service import running_slides
from tests.support.slides import dicom_wsi_zip, pyramidal_tiff, real_svs_path


@pytest.fixture
def slides_db(migrated_database_url):
    return migrated_database_url("slides")


@pytest.fixture
async def slides(slides_db, tmp_path):
    async with running_slides(slides_db, tmp_path / "slides") as harness:
        yield harness


@pytest.fixture(scope="session")
def svs_bytes() -> bytes:
    return real_svs_path().read_bytes()


@pytest.fixture(scope="session")
def tiff_without_mpp(tmp_path_factory) -> bytes:
    return pyramidal_tiff(
        tmp_path_factory.mktemp("tiff") / "no-mpp.tiff", 1200, 900, None
    ).read_bytes()


@pytest.fixture(scope="session")
def dicom_zip(tmp_path_factory) -> bytes:
    return dicom_wsi_zip(tmp_path_factory.mktemp("dicom") / "series.zip").read_bytes()
