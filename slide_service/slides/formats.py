"""What a stored upload is, read through OpenSlide: which vendor format, its pyramid, its
resolution, its associated images; and the safe extraction of zip uploads (MIRAX, DICOM).

OpenSlide decides by content (`OpenSlide.detect_format`), except for the formats it knows
by their extension (Hamamatsu `.ndpi`/`.vms`, MIRAX `.mrxs`): the stored file keeps the
extension of the uploaded name, and nothing else of it. A plain picture is not a slide even
where a library would open it as one (`openslide.ImageSlide`): it is refused with a pointer
to the predictions route, which is where single images go."""

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import openslide
from PIL import Image, UnidentifiedImageError

from common.errors import ServiceError

ZIP_MAGIC = b"PK\x03\x04"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# The entry points OpenSlide opens in an extracted archive, best first: a MIRAX slide is its
# .mrxs file (its data folder beside it); a DICOM series opens from any of its instances.
ENTRY_SUFFIXES = (".mrxs", ".dcm", ".svs", ".ndpi", ".scn", ".bif", ".tif", ".tiff", ".vms")
MAX_ENTRY_PROBES = 50  # files tried with detect_format when no name says which to open
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def not_a_slide() -> ServiceError:
    return ServiceError(
        415,
        "This is a plain image, not a whole-slide image: send single images to "
        "POST /api/v1/predictions.",
        code="not_a_slide",
    )


def corrupt_slide(detail: str = "OpenSlide cannot read it") -> ServiceError:
    return ServiceError(422, f"The slide file is damaged: {detail}.", code="corrupt_slide")


def unsupported_format() -> ServiceError:
    return ServiceError(
        415,
        "This is not a slide format OpenSlide reads (Aperio SVS, generic tiled TIFF, "
        "Hamamatsu NDPI, Leica SCN, MIRAX, Philips TIFF, Ventana BIF, DICOM WSI).",
        code="unsupported_slide_format",
    )


def unsafe_archive(reason: str) -> ServiceError:
    return ServiceError(422, f"The archive is refused: {reason}.", code="unsafe_archive")


def check_filename(filename: str) -> str:
    """The client's name, kept only as a label: a path or control characters in it refuse
    the upload rather than being cleaned into something the user did not send."""
    if not filename or len(filename) > 255 or _BAD_NAME.search(filename) or filename in {".", ".."}:
        raise ServiceError(
            422,
            "The file name must be a plain name (no folders, no control characters, at most "
            "255 characters).",
            code="invalid_filename",
        )
    return filename


def stored_name(filename: str) -> str:
    """The name the file is stored under: `slide` plus the client's extension when it is a
    plain one (OpenSlide recognises some formats by it), never the client's name itself."""
    suffix = PurePosixPath(filename.lower()).suffix
    return "slide" + (suffix if _SAFE_SUFFIX.match(suffix) else "")


def extract_zip(archive: Path, into: Path, max_members: int, max_bytes: int) -> None:
    """Extract `archive` into the folder `into`, refusing absolute names, `..`, symlinks,
    more than `max_members` members and more than `max_bytes` in all. The sizes the archive
    declares are checked first and the bytes actually written counted as well (a member may
    lie about its size)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if len(members) > max_members:
                raise unsafe_archive(f"more than {max_members} members")
            if sum(m.file_size for m in members) > max_bytes:
                raise unsafe_archive(f"more than {max_bytes} bytes once extracted")
            for member in members:
                _check_member(member)
            written = 0
            for member in members:
                target = into.joinpath(*PurePosixPath(member.filename).parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, open(target, "xb") as sink:
                    while block := source.read(1024 * 1024):
                        written += len(block)
                        if written > max_bytes:
                            raise unsafe_archive(f"more than {max_bytes} bytes once extracted")
                        sink.write(block)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise unsafe_archive(f"it is not a readable zip ({exc})") from exc
    except FileExistsError as exc:
        raise unsafe_archive("a member appears twice") from exc


def _check_member(member: zipfile.ZipInfo) -> None:
    name = member.filename
    path = PurePosixPath(name)
    if "\\" in name or "\x00" in name or path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise unsafe_archive(f"member {name!r} has an absolute or foreign path")
    if ".." in path.parts:
        raise unsafe_archive(f"member {name!r} leads out of the archive")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise unsafe_archive(f"member {name!r} is a symbolic link")


def find_entry(folder: Path) -> Path:
    """The file OpenSlide opens in an extracted archive (see ENTRY_SUFFIXES)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    ranked = sorted(
        (p for p in files if p.suffix.lower() in ENTRY_SUFFIXES),
        key=lambda p: ENTRY_SUFFIXES.index(p.suffix.lower()),
    )
    for path in [*ranked, *files][:MAX_ENTRY_PROBES]:
        if openslide.OpenSlide.detect_format(path):
            return path
    raise unsupported_format()


@dataclass(frozen=True)
class SlideFacts:
    format: str
    width: int
    height: int
    levels: list[dict[str, Any]]
    microns_per_pixel_x: float | None
    microns_per_pixel_y: float | None
    objective_power: float | None
    associated_images: list[str]


def _number(properties: Any, name: str) -> float | None:
    try:
        value = float(properties[name])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def read_facts(path: Path) -> SlideFacts:
    """What OpenSlide reads from the file, or the 4xx saying why it is not a usable slide.
    The thumbnail is read as well: a file whose header parses but whose pixels do not is
    refused now, not at the first tile."""
    vendor = openslide.OpenSlide.detect_format(path)
    if vendor is None:
        raise _why_not_a_slide(path)
    try:
        with openslide.OpenSlide(path) as slide:
            properties = slide.properties
            facts = SlideFacts(
                format=vendor,
                width=slide.dimensions[0],
                height=slide.dimensions[1],
                levels=[
                    {"width": w, "height": h, "downsample": d}
                    for (w, h), d in zip(
                        slide.level_dimensions, slide.level_downsamples, strict=True
                    )
                ],
                microns_per_pixel_x=_number(properties, openslide.PROPERTY_NAME_MPP_X),
                microns_per_pixel_y=_number(properties, openslide.PROPERTY_NAME_MPP_Y),
                objective_power=_number(properties, openslide.PROPERTY_NAME_OBJECTIVE_POWER),
                associated_images=sorted(slide.associated_images),
            )
            slide.get_thumbnail((64, 64))
    except openslide.OpenSlideError as exc:
        raise corrupt_slide(str(exc)) from exc
    if facts.width <= 0 or facts.height <= 0:
        raise corrupt_slide("it has no pixels")
    return facts


def _why_not_a_slide(path: Path) -> ServiceError:
    with open(path, "rb") as file:
        head = file.read(8)
    try:
        with Image.open(path) as picture:
            picture.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass
    else:
        return not_a_slide()
    if head.startswith(TIFF_MAGICS):
        return corrupt_slide("it starts like a TIFF file, but OpenSlide cannot read it")
    return unsupported_format()
