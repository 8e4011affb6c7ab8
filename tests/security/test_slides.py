"""Slides under attack, through the gateway of a launched stack: uploads a role may not make,
files that are not what they claim, names that are paths, uploads cut off on the way, and
tiles asked for with no credential or a grant that is expired, altered or for another slide.
Whatever is refused leaves no record and no file behind."""

import io
import socket
import time
import uuid

import pytest
from PIL import Image

from tests.security.conftest import assert_envelope
from tests.support.launcher import wait_for
from tests.support.slide_uploads import (
    mint_grant,
    stored_files,
    upload,
    uploads_under_way,
    view_link_key,
)
from tests.support.slides import real_svs_path
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(300)
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def svs() -> bytes:
    return real_svs_path().read_bytes()


@pytest.fixture(scope="module")
def slide(api, clinician, patient, svs) -> dict:
    answer = upload(api, clinician.headers, patient["id"], svs, "CMU-1-region.svs")
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def other_slide(api, clinician, patient, svs) -> dict:
    """The same file again: a record of its own, the same stored content."""
    answer = upload(api, clinician.headers, patient["id"], svs, "again.svs")
    assert answer.status_code == 201, answer.text
    return answer.json()


def slide_count(databases) -> int:
    return fetch(databases["slides"], "SELECT count(*) AS n FROM slides")[0]["n"]


@pytest.fixture
def nothing_stored(stack, databases, slide):
    """The test must leave the slide records and the stored files as it found them, and no
    temporary file behind (waited for: the slide service cleans up when the upload ends)."""
    records, files = slide_count(databases), stored_files(stack)
    yield
    wait_for(
        lambda: not uploads_under_way(stack),
        DEADLINE_S,
        "the slide service's temporary upload folders to be removed",
    )
    assert slide_count(databases) == records
    assert stored_files(stack) == files


def png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (230, 180, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_viewer_may_not_upload_a_slide(api, viewer, patient, svs, nothing_stored):
    for raw in (False, True):
        answer = upload(api, viewer.headers, patient["id"], svs, "slide.svs", raw=raw)
        assert_envelope(answer, 403, "forbidden")


def test_a_truncated_slide_file_is_refused(api, clinician, patient, svs, nothing_stored):
    answer = upload(api, clinician.headers, patient["id"], svs[: len(svs) // 2], "half.svs")
    assert answer.status_code in (415, 422), answer.text
    assert_envelope(answer, answer.status_code)


def test_an_upload_cut_off_on_the_way_stores_nothing(
    stack, clinician, patient, svs, nothing_stored
):
    """The body declares the whole file, half arrives, the client hangs up: the gateway cuts
    off its own request to the slide service, which keeps nothing of it."""
    head = (
        f"POST /api/v1/slides?patient_id={patient['id']}&filename=cut.svs HTTP/1.1\r\n"
        f"Host: gateway\r\nAuthorization: {clinician.headers['Authorization']}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(svs)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stack.ports["gateway"]), timeout=30) as sock:
        sock.sendall(head + svs[: len(svs) // 2])
        # Until the slide service holds part of it, so the hang-up comes mid-stream.
        wait_for(lambda: uploads_under_way(stack), DEADLINE_S, "the upload to reach the service")


def test_a_png_named_svs_is_not_a_slide_and_points_to_predictions(
    api, clinician, patient, nothing_stored
):
    for raw in (False, True):
        answer = upload(api, clinician.headers, patient["id"], png(), "scan.svs", raw=raw)
        error = assert_envelope(answer, 415, "not_a_slide")
        assert "/api/v1/predictions" in error["message"]


@pytest.mark.parametrize(
    "filename", ["../../../etc/cron.d/evil.svs", "..\\..\\boot.ini.svs", "/tmp/absolute.svs"]
)
def test_a_path_in_the_file_name_is_refused(api, clinician, patient, svs, filename, nothing_stored):
    for raw in (False, True):
        answer = upload(api, clinician.headers, patient["id"], svs, filename, raw=raw)
        assert answer.status_code == 422, (raw, answer.text)
        assert answer.json()["error"]["code"] == "invalid_filename"


def test_a_control_character_in_the_file_name_is_refused(
    api, clinician, patient, svs, nothing_stored
):
    # In the query: a multipart client escapes control characters in a file name itself.
    answer = upload(api, clinician.headers, patient["id"], svs, "a\x00b.svs", raw=True)
    assert_envelope(answer, 422, "invalid_filename")


def tile_paths(slide_id: str) -> list[str]:
    return [f"/api/v1/slides/{slide_id}/dzi", f"/api/v1/slides/{slide_id}/tiles/0/0_0.jpeg"]


def test_tiles_without_a_credential_are_refused(api, slide):
    for path in tile_paths(slide["id"]):
        assert_envelope(api.get(path), 401)


def test_a_grant_opens_its_slide_only(api, viewer, slide, other_slide):
    link = api.post(f"/api/v1/slides/{slide['id']}/view-links", headers=viewer.headers)
    assert link.status_code == 200, link.text
    grant = link.json()["grant"]
    for path in tile_paths(slide["id"]):
        assert api.get(path, params={"grant": grant}).status_code == 200, path
    for path in tile_paths(other_slide["id"]):
        assert_envelope(api.get(path, params={"grant": grant}), 403, "forbidden")


def altered(grant: str, slide_id: str) -> str:
    """The grant with its slide id swapped for another, its signature kept."""
    import base64
    import json

    header, payload, signature = grant.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sid"] = slide_id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_expired_altered_or_foreign_grants_are_refused(api, stack, viewer, slide, other_slide):
    key = view_link_key(stack)
    now = int(time.time())
    issued = api.post(f"/api/v1/slides/{slide['id']}/view-links", headers=viewer.headers)
    assert issued.status_code == 200, issued.text
    bad = {
        "expired": mint_grant(key, slide["id"], iat=now - 1200, exp=now - 600),
        "altered": altered(issued.json()["grant"], other_slide["id"]),
        "another key": mint_grant(b"k" * 64, slide["id"]),
        "not a view grant": mint_grant(key, slide["id"], typ="access"),
        "not a token": "not-a-jwt",
    }
    for what, grant in bad.items():
        for path in tile_paths(slide["id"]):
            answer = api.get(path, params={"grant": grant})
            assert answer.status_code == 401, (what, path, answer.text)
            assert_envelope(answer, 401, "invalid_view_grant")
    # The grant as issued still works: the refusals above are about the grants.
    assert api.get(tile_paths(slide["id"])[1], params={"grant": issued.json()["grant"]}).is_success
    # A bearer token in the grant's place is no grant.
    answer = api.get(tile_paths(slide["id"])[0], params={"grant": viewer.access_token})
    assert_envelope(answer, 401, "invalid_view_grant")


def test_associated_images_are_for_admins_only(api, clinician, viewer, admin, slide):
    assert slide["associated_images"], slide
    name = slide["associated_images"][0]
    path = f"/api/v1/slides/{slide['id']}/associated/{name}"
    for user in (clinician, viewer):
        assert_envelope(api.get(path, headers=user.headers), 403)
    answer = api.get(path, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"


def test_only_admins_delete_slides(api, clinician, patient, svs, admin):
    made = upload(api, clinician.headers, patient["id"], svs, "to-delete.svs")
    assert made.status_code == 201, made.text
    path = f"/api/v1/slides/{made.json()['id']}"
    assert_envelope(api.delete(path, headers=clinician.headers), 403)
    assert api.get(path, headers=clinician.headers).status_code == 200
    assert api.delete(path, headers=admin.headers).status_code == 204
    assert_envelope(api.get(path, headers=clinician.headers), 404)
    unknown = f"/api/v1/slides/{uuid.uuid4()}"
    assert_envelope(api.delete(unknown, headers=admin.headers), 404)
