"""The serving contract: what an image must be, and the one function that turns it into model
input. Training, the inference service and the upload checks all call these, so they cannot
drift apart.

NumPy and Pillow only (no TensorFlow, no training code): the services that decode images
import this module, and nothing else of `ml` comes with it.
"""

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow refuses images above this many pixels (decompression bombs); a whole-slide tile
# this large is not what the model takes anyway.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
COLOUR_MODES = {"RGB", "RGBA", "P"}  # what converts to RGB without inventing colour
# The modes Pillow's `Image.reduce` takes, of those we accept.
REDUCIBLE_MODES = {"RGB", "RGBA", "L", "LA"}
# The longest side at which `check_image` decodes what it cannot check otherwise.
CHECK_SIDE = 256

# The model takes side x side RGB images of float32 in [0, 1]; the card records the side.
CHANNELS = 3
INPUT_DTYPE = "float32"
VALUE_RANGE = (0, 1)
# The convolution Grad-CAM reads from: the model names it, serving looks it up.
LAST_CONV = "last_conv"


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why, for people."""


class NotAnImage(ImageError):
    """The bytes are not in any image format Pillow reads."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (told by the header, before decoding)."""


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself before any pixel is decoded."""

    format: str | None
    width: int
    height: int
    mode: str

    @classmethod
    def of(cls, image: Image.Image) -> "ImageHeader":
        return cls(image.format, image.width, image.height, image.mode)


@contextmanager
def _opened(
    data: bytes | Path, min_size: int, max_pixels: int, convert_grey: bool
) -> Iterator[Image.Image]:
    """The opened (not yet decoded) image once its header passed the checks; what goes wrong
    while it is open, here or in the caller's block, becomes an `ImageError` saying why.

    The pixel count is checked from the header, before anything is decoded, so a small file
    that expands to gigabytes (a decompression bomb) is refused cheaply. Animated and
    multi-frame files are refused: which frame would be the specimen? Grey-scale images are
    refused for training data and converted (`convert_grey`) for a clinician's upload.
    """
    modes = COLOUR_MODES | ({"L", "LA", "1"} if convert_grey else set())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge(
                        f"image too large ({width}x{height}, over {max_pixels} pixels)"
                    )
                if getattr(image, "n_frames", 1) > 1:
                    raise ImageError("animated or multi-frame images are not accepted")
                if image.mode not in modes:
                    raise ImageError(f"not an RGB image (mode {image.mode})")
                if min(width, height) < min_size:
                    raise ImageError(f"too small ({width}x{height}, minimum {min_size})")
                yield image
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image too large (over {MAX_PIXELS} pixels)") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("not an image file Pillow can read") from exc
    # Truncated or corrupt data (Pillow's PNG check indexes a tile list that a PNG without
    # image data lacks).
    except (OSError, SyntaxError, ValueError, IndexError) as exc:
        raise ImageError(f"cannot be decoded ({exc})") from exc


def reduction_factor(width: int, height: int, max_side: int | None) -> int:
    """The smallest whole factor that brings the longest side to `max_side` or less."""
    if max_side is None:
        return 1
    return max(1, math.ceil(max(width, height) / max_side))


def decode_image(
    data: bytes | Path,
    min_size: int = 1,
    *,
    max_pixels: int = MAX_PIXELS,
    convert_grey: bool = False,
    max_side: int | None = None,
) -> Image.Image:
    """Open and decode an image as RGB, or raise `ImageError` saying what is wrong.

    With `max_side`, a larger image comes back reduced by a whole factor to at most
    `max_side` pixels on its longest side, and is decoded reduced where the format allows:
    a JPEG at 1/2, 1/4 or 1/8 of its size (the decoder's own scaling), other formats at full
    size and then reduced (each pixel of the result the mean of a block). A full-size RGB
    copy of a large image is never made: a 36-megapixel PNG costs its decoded pixels once,
    not three times over.
    """
    with _opened(data, min_size, max_pixels, convert_grey) as image:
        factor = reduction_factor(*image.size, max_side)
        if factor > 1 and image.format == "JPEG":
            image.draft(image.mode, (-(-image.width // factor), -(-image.height // factor)))
        image.load()
        factor = reduction_factor(*image.size, max_side)
        if factor == 1:
            return image.convert("RGB")  # also a copy that outlives the file
        # Reduce works on these modes; palette and 1-bit images become RGB first.
        reducible = image if image.mode in REDUCIBLE_MODES else image.convert("RGB")
        return reducible.reduce(factor).convert("RGB")


def read_header(
    data: bytes | Path, *, max_pixels: int = MAX_PIXELS, convert_grey: bool = False
) -> ImageHeader:
    """The header of an image that passes the checks `decode_image` makes before decoding
    (pixel count, frames, mode), or `ImageError`; nothing is decoded."""
    with _opened(data, 1, max_pixels, convert_grey) as image:
        return ImageHeader.of(image)


def check_image(
    data: bytes | Path, *, max_pixels: int = MAX_PIXELS, convert_grey: bool = False
) -> ImageHeader:
    """The header of a usable image, checked without keeping its pixels, or `ImageError`.

    Same checks as `decode_image`; then a PNG has the checksum of every chunk verified up to
    its end (no pixel is decompressed), and any other format is decoded reduced (a JPEG at
    1/8 of its size) and dropped, so its data is known to decode.
    """
    with _opened(data, 1, max_pixels, convert_grey) as image:
        header = ImageHeader.of(image)
        if image.format == "PNG":
            image.verify()
            return header
    decode_image(data, max_pixels=max_pixels, convert_grey=convert_grey, max_side=CHECK_SIDE)
    return header


def preprocess_image(image: Image.Image, size: int) -> np.ndarray:
    """THE model input for one image: RGB, resized to size x size, float32 in [0, 1].
    Training and serving both call this, so they cannot drift apart."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def preprocessing_steps(size: int) -> list[str]:
    """What `preprocess_image` does, in words, as a model card records it."""
    return ["decode to RGB", f"resize to {size}x{size} (bilinear)", "scale to [0, 1]"]


def input_shape(side: int) -> list[int]:
    """The shape of one model input, as a model card records it."""
    return [side, side, CHANNELS]


def input_side(shape: list[int]) -> int:
    """The side of a square RGB input shape; `ValueError` for any other shape."""
    if not (
        len(shape) == 3
        and shape[0] == shape[1]
        and shape[2] == CHANNELS
        and isinstance(shape[0], int)
        and shape[0] > 0
    ):
        raise ValueError("input.size must be [side, side, 3]")
    return shape[0]
