"""What a stored upload is, read through OpenSlide: which vendor format, its pyramid, its
resolution, its associated images; and the safe extraction of zip uploads (MIRAX, DICOM).

OpenSlide decides by content (`OpenSlide.detect_format`), except for the formats it knows
by their extension (Hamamatsu `.ndpi`/`.vms`, MIRAX `.mrxs`): the stored file keeps the
extension of the uploaded name, and nothing else of it. A plain picture is not a slide even
where a library would open it as one (`openslide.ImageSlide`): it is refused with a pointer
to the predictions route, which is where single images go."""

import errno
import itertools
import logging
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import openslide
from PIL import Image, UnidentifiedImageError

from common.errors import ServiceError

log = logging.getLogger(__name__)
ZIP_MAGIC = b"PK\x03\x04"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# The entry points OpenSlide opens in an extracted archive, best first: a MIRAX slide is its
# .mrxs file (its data folder beside it); a DICOM series opens from any of its instances.
ENTRY_SUFFIXES = (".mrxs", ".dcm", ".svs", ".ndpi", ".scn", ".bif", ".tif", ".tiff", ".vms")
MAX_ENTRY_PROBES = 50  # files tried with detect_format when no name says which to open
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
DEEPZOOM_TILE = 256  # the side of the tiles DeepZoomGenerator reads, in pixels
# End-of-central-directory records (see APPNOTE.TXT 4.3.14-4.3.16), read before ZipFile.
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_ENTRY = struct.Struct("<4s6H3L5H2L")
_MAX_COMMENT = 0xFFFF


def not_a_slide() -> ServiceError:
    return ServiceError(
        415,
        "This is a plain image, not a whole-slide image: send single images to "
        "POST /api/v1/predictions.",
        code="not_a_slide",
    )


def corrupt_slide(detail: str = "OpenSlide cannot read it") -> ServiceError:
    # `detail` is ours, never a library's message: those can name server paths.
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


def unsupported_pyramid(levels: str, problem: str) -> ServiceError:
    return ServiceError(
        422,
        f"The slide has no usable reduced-resolution levels ({levels}): {problem}, too much "
        "to read at once. Re-save it as a pyramidal tiled TIFF, e.g. "
        "`vips tiffsave in out.tif --tile --pyramid --compression jpeg`.",
        code="unsupported_pyramid",
    )


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
    _check_member_count(archive, max_members)
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
    except zlib.error as exc:
        raise unsafe_archive("a member's compressed data is damaged") from exc
    except RuntimeError as exc:
        # zipfile's way of saying a member is encrypted.
        raise unsafe_archive("a member is encrypted") from exc
    except FileExistsError as exc:
        raise unsafe_archive("a member appears twice") from exc
    except (IsADirectoryError, NotADirectoryError) as exc:
        raise unsafe_archive("a member is both a file and a folder") from exc
    except OSError as exc:
        # A full disk is ours to fix, not the user's; anything else is the names in the zip
        # (too long, and the like). The message names no path of the server.
        if exc.errno == errno.ENOSPC:
            raise
        log.info("zip member not extracted: %s", exc)
        raise unsafe_archive("a member cannot be extracted under its name") from exc


def _check_member_count(archive: Path, max_members: int) -> None:
    """Count the central directory's entries without ZipFile, which would hold one object per
    entry (tens of millions of empty members exhaust memory before any limit is checked).
    The declared count is checked, then the entries are walked up to the limit, since the
    count and the directory's size can disagree."""
    with open(archive, "rb") as file:
        file.seek(0, 2)
        size = file.tell()
        tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
        file.seek(tail_start)
        tail = file.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise unsafe_archive("it is not a readable zip (no end of central directory)")
        eocd_at = tail_start + at
        _, _, _, _, count, cd_size, _, _ = _EOCD.unpack_from(tail, at)
        cd_end = eocd_at
        locator_at = eocd_at - _EOCD64_LOCATOR.size
        if locator_at >= 0:
            file.seek(locator_at)
            magic = _EOCD64_LOCATOR.unpack(file.read(_EOCD64_LOCATOR.size))[0]
            if magic == b"PK\x06\x07":
                # The zip64 record just before its locator, as zipfile finds it (its stated
                # offset is wrong when data precedes the zip).
                cd_end = locator_at - _EOCD64.size
                file.seek(max(0, cd_end))
                record = file.read(_EOCD64.size)
                if cd_end < 0 or len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
                    raise unsafe_archive("it is not a readable zip (bad zip64 record)")
                _, _, _, _, _, _, _, count, cd_size, _ = _EOCD64.unpack(record)
        if count > max_members:
            raise unsafe_archive(f"more than {max_members} members")
        position = cd_end - cd_size
        if position < 0:
            raise unsafe_archive("it is not a readable zip (bad central directory size)")
        file.seek(position)
        entries = 0
        while position < cd_end:
            header = file.read(_CENTRAL_ENTRY.size)
            if len(header) < _CENTRAL_ENTRY.size or header[:4] != b"PK\x01\x02":
                return  # ZipFile reports the damage in its own words
            entries += 1
            if entries > max_members:
                raise unsafe_archive(f"more than {max_members} members")
            fields = _CENTRAL_ENTRY.unpack(header)
            skip = fields[10] + fields[11] + fields[12]  # name, extra field, comment
            file.seek(skip, 1)
            position += _CENTRAL_ENTRY.size + skip


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


def read_facts(path: Path, max_read_pixels: int) -> SlideFacts:
    """What OpenSlide reads from the file, or the 4xx saying why it is not a usable slide.
    The thumbnail is read as well: a file whose header parses but whose pixels do not is
    refused now, not at the first tile. Before any pixel is read, the pyramid is checked
    (see `check_pyramid`)."""
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
            check_pyramid(slide.level_dimensions, slide.level_downsamples, max_read_pixels)
            bounded_thumbnail(slide, 64, max_read_pixels)
    except openslide.OpenSlideError as exc:
        log.info("OpenSlide cannot read %s: %s", path, exc)
        raise corrupt_slide() from exc
    if facts.width <= 0 or facts.height <= 0:
        raise corrupt_slide("it has no pixels")
    return facts


def bounded_thumbnail(
    slide: openslide.AbstractSlide, size: int, max_read_pixels: int
) -> Image.Image:
    """OpenSlide's thumbnail, read from a level of at most `max_read_pixels`. `get_thumbnail`
    reads the whole level finer than the thumbnail's scale, which between two far-apart levels
    can be most of the slide; then the next coarser level (within the limit, as
    `check_pyramid` made sure the smallest is) gives a thumbnail smaller than asked."""
    width, height = slide.dimensions
    level = slide.get_best_level_for_downsample(max(width / size, height / size))
    while (
        level < slide.level_count - 1 and _pixels(slide.level_dimensions[level]) > max_read_pixels
    ):
        level += 1
    region = slide.read_region((0, 0), level, slide.level_dimensions[level])
    background = "#" + slide.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR, "ffffff")
    thumbnail = Image.composite(region, Image.new("RGB", region.size, background), region)
    thumbnail.thumbnail((size, size), Image.Resampling.LANCZOS)
    return thumbnail


def _pixels(dimensions: tuple[int, int]) -> int:
    return dimensions[0] * dimensions[1]


def check_pyramid(
    dimensions: tuple[tuple[int, int], ...],
    downsamples: tuple[float, ...],
    max_read_pixels: int,
) -> None:
    """Refuse a pyramid one of whose reads would hold more than `max_read_pixels` at once:
    a thumbnail reads the whole smallest level, and a deep-zoom tile between two levels
    reads a region of its side times the levels' ratio from the finer one."""
    sizes = ", ".join(f"{w} x {h}" for w, h in dimensions)
    width, height = dimensions[-1]
    if width * height > max_read_pixels:
        raise unsupported_pyramid(
            sizes, f"its smallest level has {width * height:,} pixels (at most {max_read_pixels:,})"
        )
    max_ratio = (max_read_pixels**0.5) / DEEPZOOM_TILE
    for finer, coarser in itertools.pairwise(downsamples):
        if coarser / finer > max_ratio:
            raise unsupported_pyramid(
                sizes,
                f"one level is {coarser / finer:.0f} times smaller than the one before (at "
                f"most {max_ratio:.0f}), so one tile between them reads "
                f"{round(DEEPZOOM_TILE * coarser / finer) ** 2:,} pixels",
            )


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
