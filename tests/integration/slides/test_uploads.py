"""Uploading slides: what is stored and recorded for each format, and what is refused (with
nothing left on disk) for each way an upload can be wrong."""

import io
import uuid
import zipfile

import pytest

from tests.support.images import png_bytes
from tests.support.slides import damaged_deflate_zip, encrypted_zip, pyramidal_tiff
from tests.support.sql import fetch_async


async def test_real_svs_is_recorded_with_its_metadata_at_20x_and_0_499_um(slides, svs_bytes):
    patient = str(uuid.uuid4())
    slide = await slides.slide(svs_bytes, "CMU-1 region.svs", patient_id=patient)
    assert slide["format"] == "aperio"
    assert (slide["width"], slide["height"]) == (2220, 2967)
    assert slide["objective_power"] == 20
    assert slide["microns_per_pixel_x"] == slide["microns_per_pixel_y"] == 0.499
    assert slide["resolution_source"] == "file"
    assert slide["levels"][0] == {"width": 2220, "height": 2967, "downsample": 1.0}
    assert slide["level_count"] == len(slide["levels"])
    assert set(slide["associated_images"]) >= {"label", "macro"}
    assert (slide["patient_id"], slide["filename"]) == (patient, "CMU-1 region.svs")
    assert slide["uploaded_by"] == slides.clinician_id
    assert slide["size_bytes"] == len(svs_bytes)
    # Stored under its content's address, not the client's name; nothing left in tmp.
    [stored] = [p for p in slides.stored_files() if ".ready-" not in p.name]
    assert stored.relative_to(slides.storage_dir).parts == (
        slide["sha256"][:2],
        slide["sha256"],
        "slide.svs",
    )
    fetched = await slides.client.get(f"/slides/{slide['id']}", headers=slides.viewer)
    assert fetched.json() == slide


async def test_tiff_without_mpp_is_unknown_unless_the_uploader_says(slides, tiff_without_mpp):
    unknown = await slides.slide(tiff_without_mpp, "scan.tiff")
    assert unknown["format"] == "generic-tiff"
    assert (unknown["width"], unknown["height"]) == (1200, 900)
    assert unknown["resolution_source"] == "unknown"
    assert unknown["microns_per_pixel_x"] is None and unknown["objective_power"] is None
    told = await slides.slide(tiff_without_mpp, "scan.tiff", microns_per_pixel=0.25)
    assert told["resolution_source"] == "uploader"
    assert told["microns_per_pixel_x"] == told["microns_per_pixel_y"] == 0.25


async def test_file_mpp_wins_over_the_uploaders(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs", microns_per_pixel=0.25)
    assert (slide["microns_per_pixel_x"], slide["resolution_source"]) == (0.499, "file")


async def test_dicom_series_zip_is_extracted_and_read(slides, dicom_zip):
    slide = await slides.slide(dicom_zip, "series.zip", content_type="application/zip")
    assert slide["format"] == "dicom"
    assert (slide["width"], slide["height"]) == (2220, 2967)
    assert slide["microns_per_pixel_x"] == 0.499
    files = [p for p in slides.stored_files() if ".ready-" not in p.name]
    assert files and all(p.suffix == ".dcm" for p in files)
    assert all(slide["sha256"] in p.parts for p in files)
    dzi = await slides.client.get(f"/slides/{slide['id']}/dzi", headers=slides.viewer)
    assert 'Width="2220" Height="2967"' in dzi.text


async def test_same_content_twice_is_one_file_and_two_records(slides, svs_bytes, slides_db):
    first = await slides.slide(svs_bytes, "a.svs", patient_id=str(uuid.uuid4()))
    second = await slides.slide(svs_bytes, "b.svs", patient_id=str(uuid.uuid4()))
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert first["patient_id"] != second["patient_id"]
    assert len([p for p in slides.stored_files() if ".ready-" not in p.name]) == 1
    rows = await fetch_async(slides_db, "SELECT content_path FROM slides")
    assert len({r["content_path"] for r in rows}) == 1 and len(rows) == 2


def nothing_stored(slides) -> bool:
    return [p for p in slides.stored_files() if ".ready-" not in p.name] == []


async def test_size_limit_is_enforced_while_streaming(slides_db, tmp_path, svs_bytes):
    from tests.support.slide_service import running_slides

    async with running_slides(slides_db, tmp_path / "s", max_upload_bytes=100_000) as small:

        async def body():
            for offset in range(0, len(svs_bytes), 65536):  # no Content-Length: chunked
                yield svs_bytes[offset : offset + 65536]

        response = await small.client.post(
            "/slides",
            params={"patient_id": str(uuid.uuid4()), "filename": "a.svs"},
            content=body(),
            headers={**small.clinician, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
        assert nothing_stored(small)
        declared = await small.upload(svs_bytes, "a.svs")  # refused from Content-Length
        assert declared.status_code == 413
        assert nothing_stored(small)


async def test_truncated_upload_is_refused_and_leaves_nothing(slides, svs_bytes):
    response = await slides.client.post(
        "/slides",
        params={"patient_id": str(uuid.uuid4()), "filename": "a.svs"},
        content=svs_bytes[:100_000],
        headers={
            **slides.clinician,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(svs_bytes)),
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "upload_incomplete"
    assert nothing_stored(slides)


async def test_empty_upload_is_refused(slides):
    response = await slides.upload(b"", "a.svs")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "empty_upload")


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
async def test_plain_image_renamed_svs_is_not_a_slide(slides, kind):
    buffer = io.BytesIO()
    from PIL import Image

    Image.open(io.BytesIO(png_bytes(3, size=64))).save(buffer, kind)
    response = await slides.upload(buffer.getvalue(), "photo.svs")
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "not_a_slide"
    assert "/api/v1/predictions" in error["message"]
    assert nothing_stored(slides)


async def test_corrupt_tiff_is_422_and_unknown_bytes_415(slides, svs_bytes):
    corrupt = svs_bytes[:8] + bytes(reversed(svs_bytes[8:50_000]))
    response = await slides.upload(corrupt, "broken.svs")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "corrupt_slide"
    text = await slides.upload(b"just some text, no slide at all\n" * 10, "notes.svs")
    assert (text.status_code, text.json()["error"]["code"]) == (415, "unsupported_slide_format")
    assert nothing_stored(slides)


def zip_of(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            link = zipfile.ZipInfo(symlink)
            link.external_attr = 0o120777 << 16  # a symbolic link's mode
            archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        zip_of({"../escape.dcm": b"x"}),
        zip_of({"/etc/cron.d/evil": b"x"}),
        zip_of({"ok.dcm": b"x"}, symlink="link.dcm"),
        zip_of({f"m{i}.dcm": b"x" for i in range(6)}),
        zip_of({"big.dcm": b"\0" * 300_000}),
        damaged_deflate_zip(),
        encrypted_zip(),
        zip_of({"a": b"x", "a/b.dcm": b"x"}),
        zip_of({"d" * 300 + ".dcm": b"x"}),
    ],
    ids=[
        "dotdot",
        "absolute",
        "symlink",
        "too-many-members",
        "too-big",
        "damaged-deflate",
        "encrypted",
        "file-then-folder",
        "long-name",
    ],
)
async def test_hostile_zip_is_refused_and_leaves_nothing(slides_db, tmp_path, archive):
    from tests.support.slide_service import running_slides

    limits = {"max_archive_members": 5, "max_archive_bytes": 200_000}
    async with running_slides(slides_db, tmp_path / "s", **limits) as service:
        response = await service.upload(archive, "series.zip", content_type="application/zip")
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "unsafe_archive"
        assert nothing_stored(service)
        assert not (tmp_path / "escape.dcm").exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "folder/a.svs", "a\\b.svs", "a\x00.svs"])
async def test_path_in_filename_is_refused(slides, svs_bytes, name):
    response = await slides.upload(svs_bytes, name)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_filename"
    assert nothing_stored(slides)


async def test_viewer_cannot_upload_and_other_media_types_are_refused(slides, svs_bytes):
    viewer = await slides.upload(svs_bytes, "a.svs", headers=slides.viewer)
    assert viewer.status_code == 403
    anonymous = await slides.client.post(
        "/slides", params={"patient_id": str(uuid.uuid4()), "filename": "a.svs"}, content=b"x"
    )
    assert anonymous.status_code == 401
    form = await slides.upload(svs_bytes, "a.svs", content_type="multipart/form-data")
    assert (form.status_code, form.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert nothing_stored(slides)


async def test_a_slide_without_reduced_levels_is_refused_with_how_to_fix_it(slides_db, tmp_path):
    from tests.support.slide_service import running_slides

    single = pyramidal_tiff(tmp_path / "single.tif", 1536, 1024, downsamples=(1,)).read_bytes()
    async with running_slides(slides_db, tmp_path / "s", max_read_pixels=1_000_000) as service:
        response = await service.upload(single, "single.tif")
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "unsupported_pyramid"
        assert "1536 x 1024" in error["message"] and "--pyramid" in error["message"]
        assert nothing_stored(service)
