"""Hostile uploads: polyglots, decompression bombs, lying content types and file names.
Each is refused with a 4xx envelope and stores nothing, or (for what is a genuine image
under a misleading label) is stored under its real type and nowhere else."""

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image

from tests.security.conftest import assert_client_error, counts, images_with, predict
from tests.support.images import decompression_bomb, png_bytes, png_declaring

pytestmark = pytest.mark.timeout(300)


def zip_archive() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = decompression_bomb()
    assert len(data) < 1024 * 1024  # small on the wire ...
    assert struct.unpack(">II", data[16:24]) == (30000, 30000)  # ... 900 megapixels decoded
    return data


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def large_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (230, 180, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed=seed, size=32))).save(buffer, "JPEG")
    return buffer.getvalue()


REFUSED = {
    "png_then_html": lambda: png_bytes(seed=9300, size=32) + HTML,
    "png_then_zip": lambda: png_bytes(seed=9301, size=32) + zip_archive(),
    "jpeg_then_html": lambda: jpeg_bytes(9304) + HTML,
    "jpeg_then_zip": lambda: jpeg_bytes(9305) + zip_archive(),
    "png_header_then_html": lambda: b"\x89PNG\r\n\x1a\n" + HTML,
    "huge_declared_dimensions": lambda: png_declaring(100_000, 100_000, zlib.compress(b"\0" * 64)),
    "maximum_declared_dimensions": lambda: png_declaring(2**31 - 1, 2**31 - 1),
    "zero_dimensions": lambda: png_declaring(0, 0),
    # 36 megapixels, under the limit, cut off halfway.
    "truncated_large_png": lambda: truncated(decompression_bomb(6000)),
    "truncated_large_jpeg": lambda: truncated(large_jpeg()),
    "html_only": lambda: HTML,
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_image_bytes_are_refused_and_store_nothing(api, databases, clinician, name):
    data = REFUSED[name]()
    before = counts(databases)
    answer = predict(api, clinician.headers, data)
    assert_client_error(answer, 413, 415, 422)
    raw = api.post(
        "/api/v1/predictions",
        content=data,
        headers={**clinician.headers, "Content-Type": "image/png"},
    )
    assert_client_error(raw, 413, 415, 422)
    assert counts(databases) == before
    assert images_with(databases, data) == []


def test_a_decompression_bomb_is_refused_without_decoding(api, databases, clinician, bomb):
    before = counts(databases)
    answer = predict(api, clinician.headers, bomb)
    error = assert_client_error(answer, 413)
    assert "too large" in error["message"]
    assert counts(databases) == before
    # The services survived it: the next genuine upload goes through.
    fine = predict(
        api, clinician.headers, png_bytes(seed=9302, size=32), params={"heatmap": "false"}
    )
    assert fine.status_code == 201, fine.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/html", "application/json", "image/svg+xml"]
)
def test_text_is_refused_under_any_declared_type(api, databases, clinician, content_type):
    before = counts(databases)
    text = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    assert_client_error(predict(api, clinician.headers, text, content_type=content_type), 415)
    raw = api.post(
        "/api/v1/predictions",
        content=text,
        headers={**clinician.headers, "Content-Type": content_type},
    )
    assert_client_error(raw, 415)
    assert counts(databases) == before


def test_a_png_sent_as_html_is_refused_raw_and_typed_by_its_bytes_in_a_form(
    api, databases, clinician
):
    image = png_bytes(seed=9303, size=32)
    before = counts(databases)
    raw = api.post(
        "/api/v1/predictions",
        content=image,
        headers={**clinician.headers, "Content-Type": "text/html"},
    )
    assert_client_error(raw, 415)
    assert counts(databases) == before
    # In a form, the part's label is the client's word only: the bytes decide the type, so
    # the image is never stored or served back as HTML.
    labelled = predict(
        api, clinician.headers, image, content_type="text/html", params={"heatmap": "false"}
    )
    if labelled.status_code != 201:
        assert_client_error(labelled, 415, 422)
        assert counts(databases) == before
        return
    served = api.get(
        f"/api/v1/predictions/{labelled.json()['id']}/image", headers=clinician.headers
    )
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.content == image


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd.png", "..\\..\\evil.png", "C:\\x.png", "/tmp/abs.png", "nul\x00.png.html"],
)
def test_path_like_file_names_write_nothing_outside_the_image_store(
    api, databases, stack, clinician, filename
):
    image = png_bytes(seed=9310 + len(filename), size=32)
    everything_before = {p for p in stack.var_dir.rglob("*") if p.is_file()}
    answer = predict(api, clinician.headers, image, name=filename, params={"heatmap": "false"})
    if answer.status_code != 201:
        assert_client_error(answer, 400, 415, 422)
        assert images_with(databases, image) == []
    new_files = {p for p in stack.var_dir.rglob("*") if p.is_file()} - everything_before
    store = stack.var_dir / "data" / "images"
    # Only the content-addressed file itself (named by its SHA-256, never by the client).
    expected = {hashlib.sha256(image).hexdigest()} if answer.status_code == 201 else set()
    stored = {p.name for p in new_files if p.is_relative_to(store)}
    assert stored == expected
    outside = {
        p for p in new_files if not p.is_relative_to(store) and not p.is_relative_to(stack.log_dir)
    }
    assert not {p for p in outside if "passwd" in p.name or "evil" in p.name or p.suffix == ".png"}
    for name in ("passwd.png", "evil.png", "x.png", "abs.png"):
        assert not any(p.name == name for p in stack.var_dir.parent.glob(f"*/{name}"))
