"""View grants, file names, zip members and pyramids, checked without a database or a server."""

import io
import struct
import uuid
import zipfile
from pathlib import Path

import jwt
import openslide
import pytest

from common.errors import ServiceError
from slide_service.settings import SlideSettings
from slide_service.slides.formats import (
    bounded_thumbnail,
    check_filename,
    extract_zip,
    read_facts,
    stored_name,
)
from slide_service.view_links.grants import ViewGrants
from tests.support.slides import (
    damaged_deflate_zip,
    encrypted_zip,
    pyramidal_tiff,
    real_svs_path,
)

KEY = b"k" * 32


def test_a_grant_names_its_slide_reader_and_expiry_and_opens_only_that_slide() -> None:
    grants = ViewGrants(KEY, ttl_s=600)
    slide, reader = uuid.uuid4(), str(uuid.uuid4())
    token, expires_at = grants.issue(reader, slide)
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert (claims["typ"], claims["sid"], claims["sub"], claims["scope"]) == (
        "slide_view",
        str(slide),
        reader,
        "read",
    )
    assert claims["exp"] - claims["iat"] == 600 == expires_at.timestamp() - claims["iat"]
    assert grants.check(token, slide)["sub"] == reader
    with pytest.raises(ServiceError) as other:
        grants.check(token, uuid.uuid4())
    assert (other.value.status_code, other.value.code) == (403, "forbidden")
    with pytest.raises(ServiceError) as foreign_key:
        ViewGrants(b"x" * 32, 600).check(token, slide)
    assert (foreign_key.value.status_code, foreign_key.value.code) == (401, "invalid_view_grant")


def test_an_unsigned_grant_is_refused() -> None:
    claims = {"typ": "slide_view", "sid": "s", "sub": "u", "scope": "read", "iat": 1, "exp": 2**40}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(ServiceError) as refused:
        ViewGrants(KEY, 600).check(unsigned, uuid.uuid4())
    assert refused.value.code == "invalid_view_grant"


def test_production_refuses_to_start_without_a_long_enough_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SlideSettings(environment="production", _env_file=None).view_link_key()
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SlideSettings(environment="production", view_link_secret="short").view_link_key()
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    settings = SlideSettings(environment="production", view_link_secret_file=secret)
    assert settings.view_link_key() == b"s" * 40
    assert SlideSettings(environment="development", _env_file=None).view_link_key()


@pytest.mark.parametrize(
    "name", ["../a.svs", "a/b.svs", "a\\b.svs", "a\nb.svs", "..", "", "x" * 256]
)
def test_a_filename_with_a_path_or_control_characters_is_refused(name: str) -> None:
    with pytest.raises(ServiceError) as refused:
        check_filename(name)
    assert refused.value.code == "invalid_filename"


def test_the_stored_name_keeps_only_a_plain_extension() -> None:
    assert stored_name("CMU-1.SVS") == "slide.svs"
    assert stored_name("scan.ndpi") == "slide.ndpi"
    assert stored_name("no extension") == "slide"
    assert stored_name("evil.sv$s;rm") == "slide"


def archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_is_extracted_with_its_folders(tmp_path: Path) -> None:
    source = tmp_path / "a.zip"
    source.write_bytes(
        archive({"slide.mrxs": b"m", "slide/Index.dat": b"i", "slide/Data0.dat": b"d"})
    )
    extract_zip(source, tmp_path / "out", 10, 1000)
    found = sorted(
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file()
    )
    assert found == ["slide.mrxs", "slide/Data0.dat", "slide/Index.dat"]


def test_a_member_lying_about_its_size_is_stopped_at_the_limit(tmp_path: Path) -> None:
    source = tmp_path / "a.zip"
    source.write_bytes(archive({"big.dcm": b"\0" * 5000}))
    # Rewrite the declared sizes (local header and central directory) to 10 bytes.
    data = bytearray(source.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    source.write_bytes(bytes(data))
    with pytest.raises(ServiceError) as refused:
        extract_zip(source, tmp_path / "out", 10, 1000)
    assert refused.value.code == "unsafe_archive"


def test_a_duplicate_member_and_a_broken_zip_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "a.zip"
    with zipfile.ZipFile(source, "w") as zipped:
        zipped.writestr("a.dcm", b"1")
        with pytest.warns(UserWarning):
            zipped.writestr("a.dcm", b"2")
    with pytest.raises(ServiceError, match="twice"):
        extract_zip(source, tmp_path / "out", 10, 1000)
    source.write_bytes(b"PK\x03\x04 and then nothing a zip has")
    with pytest.raises(ServiceError) as broken:
        extract_zip(source, tmp_path / "out2", 10, 1000)
    assert broken.value.code == "unsafe_archive"


def _refused(call, *args) -> ServiceError:  # type: ignore[no-untyped-def]
    with pytest.raises(ServiceError) as refused:
        call(*args)
    return refused.value


def test_a_slide_without_reduced_levels_is_refused_before_any_pixel_is_read(
    tmp_path: Path,
) -> None:
    single = pyramidal_tiff(tmp_path / "single.tif", 2048, 1536, downsamples=(1,))
    error = _refused(read_facts, single, 1_000_000)
    assert (error.status_code, error.code) == (422, "unsupported_pyramid")
    assert "2048 x 1536" in error.message and "vips tiffsave" in error.message
    assert "reduced-resolution levels" in error.message
    # The same picture with its levels is read.
    pyramid = pyramidal_tiff(tmp_path / "pyramid.tif", 2048, 1536)
    assert len(read_facts(pyramid, 1_000_000).levels) == 4


def test_a_pyramid_with_a_wide_gap_between_levels_is_refused(tmp_path: Path) -> None:
    # One tile of the coarser level reads 256 x 8 px squared (4.2 MP) of the finer one.
    gap = pyramidal_tiff(tmp_path / "gap.tif", 2048, 2048, downsamples=(1, 8))
    error = _refused(read_facts, gap, 1_000_000)
    assert (error.status_code, error.code) == (422, "unsupported_pyramid")
    assert "8 times smaller" in error.message
    assert len(read_facts(gap, 64_000_000).levels) == 2


def test_a_thumbnail_reads_a_coarser_level_rather_than_one_over_the_limit(tmp_path: Path) -> None:
    # A 600 px thumbnail of 4096 px needs a downsample of 6.8: OpenSlide would read level 0
    # whole (16.8 MP); over a 1 MP limit the 512 px level is read instead.
    path = pyramidal_tiff(tmp_path / "gap.tif", 4096, 4096, downsamples=(1, 8))
    with openslide.OpenSlide(path) as slide:
        read_levels: list[int] = []
        read_region = slide.read_region

        def recorded(location, level, size):  # type: ignore[no-untyped-def]
            read_levels.append(level)
            return read_region(location, level, size)

        slide.read_region = recorded  # type: ignore[method-assign]
        small = bounded_thumbnail(slide, 600, 1_000_000)
        roomy = bounded_thumbnail(slide, 600, 64_000_000)
    assert read_levels == [1, 0]
    assert small.size == (512, 512) and small.mode == "RGB"
    assert roomy.size == (600, 600)


def test_the_real_single_level_svs_is_within_the_default_limit() -> None:
    facts = read_facts(real_svs_path(), SlideSettings(_env_file=None).max_read_pixels)
    assert (facts.width, facts.height, len(facts.levels)) == (2220, 2967, 1)


def test_openslides_own_words_stay_out_of_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slide = pyramidal_tiff(tmp_path / "tmp" / "0f3c" / "slide.tif", 512, 512)

    def unreadable(self: openslide.OpenSlide, *region: object) -> None:
        # The kind of message OpenSlide gives for a file it cannot decode: with its path.
        raise openslide.OpenSlideError(f"Cannot read {slide}: JPEG decompression failed")

    monkeypatch.setattr(openslide.OpenSlide, "read_region", unreadable)
    error = _refused(read_facts, slide, 64_000_000)
    assert (error.status_code, error.code) == (422, "corrupt_slide")
    assert str(tmp_path) not in error.message and "JPEG" not in error.message


def _empty_entries(count: int) -> bytes:
    """A zip of `count` empty members named by number, written by hand: only the structure."""
    local, central = bytearray(), bytearray()
    for index in range(count):
        name = str(index).encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
        local += name
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + end)


def test_too_many_members_are_refused_before_zipfile_reads_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "many.zip"
    source.write_bytes(_empty_entries(50))

    def no_zipfile(*_: object) -> None:
        raise AssertionError("ZipFile parsed the whole central directory")

    monkeypatch.setattr(zipfile, "ZipFile", no_zipfile)
    error = _refused(extract_zip, source, tmp_path / "out", 10, 1000)
    assert (error.status_code, error.code) == (422, "unsafe_archive")
    assert "more than 10 members" in error.message
    # A count that lies low is caught by walking the directory.
    lying = bytearray(_empty_entries(50))
    lying[-14:-10] = struct.pack("<2H", 3, 3)
    source.write_bytes(bytes(lying))
    assert "more than 10 members" in _refused(extract_zip, source, tmp_path / "o", 10, 1000).message


def test_a_zip64_member_count_is_read_from_its_own_record(tmp_path: Path) -> None:
    source = tmp_path / "z64.zip"
    plain = _empty_entries(50)
    central_end = len(plain) - 22
    central_size = struct.unpack_from("<L", plain, central_end + 12)[0]
    record = struct.pack(
        "<4sQ2H2L4Q",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        50,
        50,
        central_size,
        central_end - central_size,
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, central_end, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    source.write_bytes(plain[:central_end] + record + locator + end)
    error = _refused(extract_zip, source, tmp_path / "out", 10, 1000)
    assert "more than 10 members" in error.message
    extract_zip(source, tmp_path / "all", 100, 1000)
    assert len(list((tmp_path / "all").iterdir())) == 50


@pytest.mark.parametrize(
    "make",
    [
        damaged_deflate_zip,
        encrypted_zip,
        lambda: archive({"a": b"1", "a/b": b"2"}),
        lambda: archive({"a/b": b"1", "a": b"2"}),
        lambda: archive({"d" * 300 + ".dcm": b"1"}),
    ],
    ids=["damaged-deflate", "encrypted", "file-then-folder", "folder-then-file", "long-name"],
)
def test_an_unusual_zip_is_refused_not_failed(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "a.zip"
    source.write_bytes(make())
    error = _refused(extract_zip, source, tmp_path / "out", 10, 10_000)
    assert (error.status_code, error.code) == (422, "unsafe_archive")
    assert str(tmp_path) not in error.message
