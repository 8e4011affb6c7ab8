"""View grants, file names and zip members, checked without a database or a server."""

import io
import uuid
import zipfile
from pathlib import Path

import jwt
import pytest

from common.errors import ServiceError
from slide_service.settings import SlideSettings
from slide_service.slides.formats import check_filename, extract_zip, stored_name
from slide_service.view_links.grants import ViewGrants

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
