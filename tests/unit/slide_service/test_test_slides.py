"""The test slides are what the slide tests take them for: OpenSlide opens each with the
vendor, size and resolution the tests assert on."""

import zipfile
from pathlib import Path

import openslide

from tests.support.slides import dicom_wsi_zip, pyramidal_tiff, real_svs_path


def test_real_svs_is_the_aperio_region_at_20x_and_0_499_um() -> None:
    with openslide.OpenSlide(real_svs_path()) as slide:
        assert openslide.OpenSlide.detect_format(real_svs_path()) == "aperio"
        assert slide.dimensions == (2220, 2967)
        assert slide.properties["openslide.objective-power"] == "20"
        assert float(slide.properties["openslide.mpp-x"]) == 0.499


def test_pyramidal_tiff_is_a_generic_tiff_pyramid_with_or_without_mpp(tmp_path: Path) -> None:
    with_mpp = pyramidal_tiff(tmp_path / "a.tiff", 2000, 1500, mpp=0.25)
    without = pyramidal_tiff(tmp_path / "b.tiff", 600, 500, mpp=None)
    assert openslide.OpenSlide.detect_format(with_mpp) == "generic-tiff"
    with openslide.OpenSlide(with_mpp) as slide:
        assert slide.dimensions == (2000, 1500)
        assert slide.level_downsamples[:3] == (1.0, 2.0, 4.0)
        assert float(slide.properties["openslide.mpp-x"]) == 0.25
        # Tissue in the middle, glass at the corner.
        red, green, _, _ = slide.read_region((1000, 750), 0, (1, 1)).getpixel((0, 0))
        assert red - green > 30
        assert slide.read_region((0, 0), 0, (1, 1)).getpixel((0, 0))[:3] == (242, 242, 242)
    with openslide.OpenSlide(without) as slide:
        assert "openslide.mpp-x" not in slide.properties


def test_dicom_wsi_zip_is_a_dicom_series_of_the_real_slide(tmp_path: Path) -> None:
    archive = dicom_wsi_zip(tmp_path / "series.zip")
    with zipfile.ZipFile(archive) as series:
        names = series.namelist()
        series.extractall(tmp_path / "series")
    assert names and all(name.endswith(".dcm") for name in names)
    first = tmp_path / "series" / names[0]
    assert openslide.OpenSlide.detect_format(first) == "dicom"
    with openslide.OpenSlide(first) as slide:
        assert slide.dimensions == (2220, 2967)
        assert float(slide.properties["openslide.mpp-x"]) == 0.499
        assert {"label", "macro"} <= set(slide.associated_images)
