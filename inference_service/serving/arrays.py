"""Patches sent as one NumPy `.npy` array (`POST /predict/batch` with Content-Type
application/x-npy): uint8, C order, shape (n, height, width, 3), RGB.

The format is NumPy's own (`numpy.lib.format`, what `np.save` writes), so a client needs
nothing else, and the patches arrive as pixels: no image to decode per patch. Reading it
here never unpickles (only uint8 is accepted, so no object array can be built), reads a
header of at most `MAX_HEADER_BYTES`, and checks every size against the limits before the
data is looked at; the array is a view of the body, not a copy."""

import io
import math

import numpy as np

from common.errors import ServiceError

NPY_MEDIA_TYPE = "application/x-npy"
# np.save writes a header of a few dozen bytes; NumPy itself allows 10,000.
MAX_HEADER_BYTES = 4096
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _bad(message: str) -> ServiceError:
    return ServiceError(422, message, code="invalid_array")


def read_patch_array(body: bytes, max_patches: int, max_side: int) -> np.ndarray:
    """The (n, height, width, 3) uint8 patches in a `.npy` body, or a 4xx that says what is
    wrong with it."""
    if not body:
        raise ServiceError(400, "The upload is empty.", code="empty_upload")
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        reader = HEADER_READERS.get(version)
        if reader is None:
            raise _bad(
                f".npy format version {version[0]}.{version[1]} is not read here: "
                "use 1.0 or 2.0 (what np.save writes)"
            )
        shape, fortran_order, dtype = reader(stream, max_header_size=MAX_HEADER_BYTES)
    except ValueError as exc:
        raise _bad(f"The body is not a .npy array: {exc}") from exc
    if dtype != np.uint8:
        raise _bad(f"The patches must be uint8 (0-255 per channel), not {dtype}.")
    if fortran_order:
        raise _bad("The array must be in C order (np.save of a C-contiguous array).")
    if len(shape) != 4 or shape[3] != 3:
        raise _bad(f"The array must have shape (n, height, width, 3) for RGB, not {shape}.")
    count, height, width, _ = shape
    if not 1 <= count <= max_patches:
        raise _bad(f"Send 1 to {max_patches} patches per request, not {count}.")
    if not (1 <= height <= max_side and 1 <= width <= max_side):
        raise _bad(f"Each patch's sides must be 1 to {max_side} pixels, not {height} x {width}.")
    expected = math.prod(shape)
    start = stream.tell()
    if len(body) - start != expected:
        raise _bad(
            f"The array's data is {len(body) - start} bytes; its shape {shape} needs {expected}."
        )
    return np.frombuffer(body, np.uint8, count=expected, offset=start).reshape(shape)
