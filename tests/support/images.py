"""Small image files and dataset trees, made by the tests themselves."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, size: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def png_bytes(seed: int, size: int = 24, mode: str = "RGB") -> bytes:
    """A PNG of random pixels, different for each seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def tissue_png(seed: int, size: int = 64) -> bytes:
    """A PNG of synthetic H&E-like tissue, different for each seed, that passes every quality
    check at the default limits: the model gives it a label (random pixels are refused)."""
    from ml.quality import QualityLimits, quality_checks
    from ml.synthetic import make_patient, render

    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        malignant = bool(seed % 2)
        pixels = render(rng, make_patient(rng, seed, malignant), int(malignant), size)
        if all(check.passed for check in quality_checks(pixels, QualityLimits())):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            return buffer.getvalue()
    raise AssertionError(f"no synthetic tissue of {size} px passed the quality checks")


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A 1-bit grey PNG with this header (the pixel data, if any, is `idat`)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + (chunk(b"IDAT", idat) if idat else b"")
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def decompression_bomb(side: int = 30000) -> bytes:
    """A valid PNG of side x side pixels that is small on disk: every row is zeros."""
    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_declaring(side, side, idat)


def idc_tree(root: Path, patients: int = 6, per_class: int = 3) -> Path:
    seed = 0
    for patient in range(patients):
        for label in (0, 1):
            for index in range(per_class):
                seed += 1
                write_png(
                    root / f"{1000 + patient}" / str(label) / f"p{patient}_{index}.png", seed=seed
                )
    return root


def breakhis_tree(root: Path) -> Path:
    names = [
        "benign/SOB/adenosis/SOB_B_A-14-22549AB/40X/SOB_B_A-14-22549AB-40-001.png",
        "benign/SOB/adenosis/SOB_B_A-14-22549AB/40X/SOB_B_A-14-22549AB-40-002.png",
        "malignant/SOB/ductal/SOB_M_DC-14-2523/100X/SOB_M_DC-14-2523-100-001.png",
        "malignant/SOB/ductal/SOB_M_DC-14-2523/100X/SOB_M_DC-14-2523-100-002.png",
        "malignant/SOB/lobular/SOB_M_LC-14-12204/40X/SOB_M_LC-14-12204-40-011.png",
    ]
    for seed, name in enumerate(names):
        write_png(root / name, seed=seed + 100)
    write_png(root / "README-figure.png", seed=999)  # not a BreakHis name: ignored
    return root


def folders_tree(root: Path) -> Path:
    for seed, name in enumerate(
        [
            "benign/pa_1.png",
            "benign/pa_2.png",
            "benign/pb_1.png",
            "malignant/pc_1.png",
            "malignant/pc_2.png",
            "malignant/loose.png",
        ]
    ):
        write_png(root / name, seed=seed + 200)
    return root
