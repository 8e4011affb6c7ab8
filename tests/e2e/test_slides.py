"""Slides end to end, through the gateway of the stack `make run` starts: the real Aperio
slide uploaded, described, shown as a thumbnail and viewed tile by tile by URL; generated
slides with and without a resolution; the same content stored once; deletion."""

import hashlib
import uuid
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.security.conftest import User, create_user, stack_admin
from tests.support.slide_uploads import files_with, upload
from tests.support.slides import pyramidal_tiff, real_svs_path

pytestmark = pytest.mark.timeout(600)
DZI = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=stack.url("gateway"), timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def admin(api, stack) -> User:
    return stack_admin(api, stack)


@pytest.fixture(scope="module")
def clinician(api, admin) -> User:
    return create_user(api, admin, "clinician")


@pytest.fixture(scope="module")
def viewer(api, admin) -> User:
    return create_user(api, admin, "viewer")


def new_patient(api, clinician: User) -> str:
    answer = api.post(
        "/api/v1/patients",
        json={"external_ref": f"WSI-{uuid.uuid4().hex[:8]}"},
        headers=clinician.headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.fixture(scope="module")
def svs() -> bytes:
    return real_svs_path().read_bytes()


@pytest.fixture(scope="module")
def slide(api, clinician, svs) -> dict:
    answer = upload(api, clinician.headers, new_patient(api, clinician), svs, "CMU-1.svs")
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_the_real_svs_is_described_from_its_own_metadata(api, viewer, slide, svs):
    assert slide["format"] == "aperio"
    assert (slide["width"], slide["height"]) == (2220, 2967)
    assert slide["microns_per_pixel_x"] == pytest.approx(0.499, abs=1e-3)
    assert slide["microns_per_pixel_y"] == pytest.approx(0.499, abs=1e-3)
    assert slide["resolution_source"] == "file"
    assert slide["objective_power"] == 20
    assert slide["filename"] == "CMU-1.svs"
    assert slide["size_bytes"] == len(svs)
    assert slide["sha256"] == hashlib.sha256(svs).hexdigest()
    assert slide["levels"][0] == {"width": 2220, "height": 2967, "downsample": 1.0}

    # A viewer reads what a clinician stored: the record, the patient's list, the thumbnail.
    one = api.get(f"/api/v1/slides/{slide['id']}", headers=viewer.headers)
    assert one.status_code == 200 and one.json() == slide
    listed = api.get(
        "/api/v1/slides", params={"patient_id": slide["patient_id"]}, headers=viewer.headers
    )
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [slide["id"]]
    assert listed.json()["total"] == 1
    thumbnail = api.get(
        f"/api/v1/slides/{slide['id']}/thumbnail",
        params={"max_size": 128},
        headers=viewer.headers,
    )
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content.startswith(b"\xff\xd8\xff")


def test_a_view_link_opens_the_pyramid_by_url_with_cache_headers(api, viewer, slide):
    link = api.post(f"/api/v1/slides/{slide['id']}/view-links", headers=viewer.headers)
    assert link.status_code == 200, link.text
    urls = link.json()

    # No bearer from here on: the grant in the URLs is the credential.
    dzi = api.get(urls["dzi_url"])
    assert dzi.status_code == 200, dzi.text
    image = ET.fromstring(dzi.text)
    layout = (image.get("TileSize"), image.get("Overlap"), image.get("Format"))
    assert layout == ("254", "1", "jpeg")
    size = image.find(f"{DZI}Size")
    assert size is not None
    assert (size.get("Width"), size.get("Height")) == ("2220", "2967")

    # The full-resolution level of a Deep Zoom pyramid is ceil(log2(longest side)).
    full = (2967 - 1).bit_length()
    tile = api.get(urls["tile_url_template"].format(level=full, col=3, row=5))
    assert tile.status_code == 200, tile.text
    assert tile.headers["content-type"] == "image/jpeg"
    assert tile.content.startswith(b"\xff\xd8\xff")
    assert tile.headers["cache-control"] == "private, max-age=86400, immutable"
    again = api.get(
        urls["tile_url_template"].format(level=full, col=3, row=5),
        headers={"If-None-Match": tile.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""

    beyond = api.get(urls["tile_url_template"].format(level=full, col=999, row=0))
    assert beyond.status_code == 404
    assert beyond.json()["error"]["code"] == "tile_not_found"


@pytest.mark.parametrize(
    ("given", "expected"), [(None, ("unknown", None)), (0.25, ("uploader", 0.25))]
)
def test_a_slide_without_a_resolution_takes_the_uploaders_or_says_unknown(
    api, clinician, tmp_path, given, expected
):
    path = pyramidal_tiff(tmp_path / "no-mpp.tiff", 3000, 2000, mpp=None)
    answer = upload(
        api,
        clinician.headers,
        new_patient(api, clinician),
        path.read_bytes(),
        "no-mpp.tiff",
        raw=True,
        microns_per_pixel=given,
    )
    assert answer.status_code == 201, answer.text
    stored = answer.json()
    assert stored["format"] == "generic-tiff"
    assert (stored["width"], stored["height"]) == (3000, 2000)
    assert stored["level_count"] > 1
    assert (stored["resolution_source"], stored["microns_per_pixel_x"]) == expected


def test_the_same_file_twice_is_two_records_and_one_stored_file_until_both_go(
    api, stack, clinician, admin, tmp_path
):
    data = pyramidal_tiff(tmp_path / "twice.tiff", 1500, 1000, mpp=0.5).read_bytes()
    first, second = (
        upload(api, clinician.headers, new_patient(api, clinician), data, f"{n}.tiff", raw=True)
        for n in ("first", "second")
    )
    assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
    one, two = first.json(), second.json()
    assert one["id"] != two["id"] and one["patient_id"] != two["patient_id"]
    assert one["sha256"] == two["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(files_with(stack, one["sha256"])) == 1

    assert api.delete(f"/api/v1/slides/{one['id']}", headers=admin.headers).status_code == 204
    assert api.get(f"/api/v1/slides/{one['id']}", headers=admin.headers).status_code == 404
    # The other record still reads the file.
    assert len(files_with(stack, two["sha256"])) == 1
    thumbnail = api.get(f"/api/v1/slides/{two['id']}/thumbnail", headers=admin.headers)
    assert thumbnail.status_code == 200

    assert api.delete(f"/api/v1/slides/{two['id']}", headers=admin.headers).status_code == 204
    assert files_with(stack, one["sha256"]) == []
