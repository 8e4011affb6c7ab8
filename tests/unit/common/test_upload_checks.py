"""The upload checks that keep no pixels: the data service learns an upload's type and size,
and refuses a hostile one with the right 4xx, without decompressing a PNG's pixels."""

import io
import zlib

import pytest
from PIL import Image, PngImagePlugin

from common.errors import ServiceError
from common.uploads import inspect_upload, read_upload_header
from data_service.images.service import inspect
from tests.support.images import decompression_bomb, png_bytes, png_declaring

LIMIT = 40_000_000


@pytest.fixture(scope="module")
def at_limit_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (230, 180, 200)).save(buffer, "PNG")  # 120 KB
    return buffer.getvalue()


def test_the_data_service_reads_a_large_png_without_decompressing_it(at_limit_png, monkeypatch):
    def refuse(self):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)
    assert inspect(at_limit_png, LIMIT) == ("image/png", 6000, 6000)
    header = read_upload_header(at_limit_png, LIMIT)
    assert (header.width, header.height, header.mode) == (6000, 6000, "RGB")


@pytest.mark.parametrize(
    ("name", "status", "fragment"),
    [
        ("bomb over the limit", 413, "too large"),
        ("huge dimensions in a tiny file", 413, "too large"),
        ("truncated large PNG", 422, "cannot be used"),
        ("a chunk failing its checksum", 422, "cannot be used"),
        ("data after the end", 422, "data after its end"),
        ("no dimensions", 415, "not an image"),
    ],
)
def test_hostile_uploads_are_refused_with_their_status(name, status, fragment, at_limit_png):
    good = png_bytes(seed=3, size=50)
    data = {
        "bomb over the limit": lambda: decompression_bomb(7000),
        "huge dimensions in a tiny file": lambda: png_declaring(
            100_000, 100_000, zlib.compress(b"\0" * 64)
        ),
        "truncated large PNG": lambda: at_limit_png[: len(at_limit_png) // 2],
        "a chunk failing its checksum": lambda: good[:60] + bytes(200) + good[260:],
        "data after the end": lambda: good + b"<html></html>",
        "no dimensions": lambda: png_declaring(0, 0),
    }[name]()
    for check in (inspect_upload, read_upload_header):
        if check is read_upload_header and status == 422 and "after" not in fragment:
            continue  # what only decoding (or a checksum) finds is not in the header
        with pytest.raises(ServiceError) as refused:
            check(data, LIMIT)
        assert refused.value.status_code == status, (name, check.__name__)
        assert fragment in refused.value.message, (name, refused.value.message)
