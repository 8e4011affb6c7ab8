"""The serving contract: what an image must be, and the one function that turns it into model
input. Training, the inference service and the upload checks all call these, so they cannot
drift apart.

NumPy and Pillow only (no TensorFlow, no training code): the services that decode images
import this module, and nothing else of `ml` comes with it.
"""

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow refuses images above this many pixels (decompression bombs); a whole-slide tile
# this large is not what the model takes anyway.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
COLOUR_MODES = {"RGB", "RGBA", "P"}  # what converts to RGB without inventing colour

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


def decode_image(
    data: bytes | Path,
    min_size: int = 1,
    *,
    max_pixels: int = MAX_PIXELS,
    convert_grey: bool = False,
) -> Image.Image:
    """Open and fully decode an image as RGB, or raise `ImageError` saying what is wrong.

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
                image.load()
                rgb = image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image too large (over {MAX_PIXELS} pixels)") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("not an image file Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(f"cannot be decoded ({exc})") from exc
    if min(rgb.size) < min_size:
        raise ImageError(f"too small ({rgb.size[0]}x{rgb.size[1]}, minimum {min_size})")
    return rgb


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
