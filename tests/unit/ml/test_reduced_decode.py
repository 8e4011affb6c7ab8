"""Large images are decoded reduced (JPEG by the decoder's own scaling), give the model the
same input as a full decode within a small tolerance, and images within the bound decode
exactly as before; `check_image` checks a file without keeping (for PNG, decompressing)
its pixels."""

import io

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin

from ml.contract import (
    ImageError,
    ImageTooLarge,
    check_image,
    decode_image,
    preprocess_image,
    read_header,
)
from tests.support.images import png_bytes

BOUND = 2048


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def tissue_like(width: int, height: int, seed: int = 3, mode: str = "RGB") -> Image.Image:
    """Smooth random colour, as a photograph of a slide is, rather than noise."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 12, width // 12, 3), np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    return image if mode == "RGB" else image.convert(mode)


@pytest.fixture(scope="module")
def large_png() -> bytes:
    return encoded(tissue_like(6000, 6000), "PNG")


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    return encoded(tissue_like(6000, 6000), "JPEG")


@pytest.fixture
def jpeg_decoded_at(monkeypatch) -> list[tuple[int, int]]:
    """The size each JPEG is decoded at (Pillow runs `load` again, as a no-op, when the
    image is converted: the sizes are noted each time)."""
    sizes: list[tuple[int, int]] = []
    load = JpegImagePlugin.JpegImageFile.load

    def spy(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    return sizes


def test_a_large_png_is_handed_on_reduced_to_the_bound(large_png):
    image = decode_image(large_png, max_side=BOUND, convert_grey=True)
    assert image.mode == "RGB"
    assert max(image.size) <= BOUND
    assert image.size == (2000, 2000)  # reduced by 3, a whole factor: no resampling


def test_a_large_jpeg_is_decoded_by_the_decoder_at_a_fraction_of_its_size(
    large_jpeg, jpeg_decoded_at
):
    image = decode_image(large_jpeg, max_side=BOUND)
    assert set(jpeg_decoded_at) == {(3000, 3000)}  # 1/2 scale: a quarter of the pixels
    assert max(image.size) <= BOUND


@pytest.mark.parametrize("size", [(6000, 6000), (5000, 3000), (900, 2100)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_model_input_of_a_reduced_decode_matches_a_full_decode(size, fmt):
    data = encoded(tissue_like(*size), fmt)
    full = preprocess_image(decode_image(data), 128)
    reduced_image = decode_image(data, max_side=BOUND)
    assert max(reduced_image.size) <= BOUND < max(size)
    difference = np.abs(full - preprocess_image(reduced_image, 128))
    # Measured: at most 0.5/255 on average and 4/255 at any pixel.
    assert difference.mean() <= 1 / 255
    assert difference.max() <= 8 / 255


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "1", "LA"])
def test_every_accepted_mode_of_a_large_image_is_reduced_to_rgb(mode):
    data = encoded(tissue_like(4500, 3000, mode=mode), "PNG")
    full = decode_image(data, convert_grey=True)
    image = decode_image(data, max_side=BOUND, convert_grey=True)
    assert image.mode == "RGB" and image.size == (1500, 1000)
    difference = np.abs(preprocess_image(full, 64).astype(np.float64) - preprocess_image(image, 64))
    assert difference.mean() <= 1 / 255


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_an_image_within_the_bound_decodes_exactly_as_without_one(fmt):
    data = encoded(tissue_like(BOUND, 1000), fmt)
    bounded = decode_image(data, max_side=BOUND)
    assert bounded.size == (BOUND, 1000)
    np.testing.assert_array_equal(np.asarray(bounded), np.asarray(decode_image(data)))


@pytest.fixture
def png_never_decoded(monkeypatch) -> None:
    def refuse(self):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)


@pytest.mark.usefixtures("png_never_decoded")
def test_the_size_limits_are_checked_before_anything_is_decoded():
    bomb = encoded(Image.new("L", (7000, 7000)), "PNG")
    with pytest.raises(ImageTooLarge, match="7000x7000"):
        decode_image(bomb, max_pixels=40_000_000, max_side=BOUND, convert_grey=True)
    with pytest.raises(ImageError, match=r"too small \(24x24, minimum 32\)"):
        decode_image(png_bytes(seed=1), 32, max_side=BOUND)
    header = read_header(png_bytes(seed=1, size=30), max_pixels=1000)
    assert (header.format, header.width, header.height, header.mode) == ("PNG", 30, 30, "RGB")


@pytest.mark.usefixtures("png_never_decoded")
def test_a_png_is_checked_without_decompressing_its_pixels(large_png):
    header = check_image(large_png, max_pixels=40_000_000)
    assert (header.format, header.width, header.height) == ("PNG", 6000, 6000)


def test_a_broken_png_is_refused_by_the_check():
    good = png_bytes(seed=5, size=50)
    for broken in (
        good[: len(good) // 2],  # truncated
        good[:60] + bytes(200) + good[260:],  # a chunk that fails its checksum
        good[:33] + good[-12:],  # no image data at all
    ):
        with pytest.raises(ImageError, match="cannot be decoded"):
            check_image(broken)


def test_other_formats_are_checked_by_a_reduced_decode(large_jpeg, jpeg_decoded_at):
    assert check_image(large_jpeg).width == 6000
    assert set(jpeg_decoded_at) == {(750, 750)}  # 1/8 scale
    with pytest.raises(ImageError, match="cannot be decoded"):
        check_image(large_jpeg[: len(large_jpeg) // 2])
