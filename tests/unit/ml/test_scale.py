"""The scale a model works at: what each dataset layout says of it, the setting that fills it
in or overrides it, what training does without one, and the card fields that record it."""

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from ml.bootstrap import DEMO_DATA, DEMO_VERSION, SHIPPED_MODELS_DIR
from ml.card import ModelCard, ModelInput
from ml.config import ConfigError, load_config
from ml.datasets import (
    LAYOUT_SCALES,
    SETTING_SOURCE,
    DatasetError,
    dataset_scale,
    measured_patch_px,
    read_dataset,
)
from ml.synthetic import FIELD_OF_VIEW_UM, LOOKS, SCALE_SOURCE, generate, microns_per_pixel
from ml.train import training_scale
from tests.support.images import breakhis_tree, folders_tree, idc_tree, write_png

DEMO_CARD = SHIPPED_MODELS_DIR / DEMO_VERSION / "model_card.json"


def scale_of(root: Path, **setting):
    samples, layout = read_dataset(root)
    return dataset_scale(root, layout, samples, **setting)


def config_for(tmp_path: Path, data: Path, **data_settings):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"data": {"path": str(data), **data_settings}}))
    return load_config(path)


# --- What each layout says ---------------------------------------------------------------


def test_idc_knows_its_50_px_patches_but_not_their_scale(tmp_path):
    scale = scale_of(idc_tree(tmp_path, patients=2, per_class=1))
    assert scale.microns_per_pixel is None and not scale.known
    assert scale.patch_px == 50  # the layout's, not the 40 px of these test files
    assert scale.source.startswith("unknown: the idc layout")
    assert "Cruz-Roa" in scale.source and "set data.microns_per_pixel" in scale.source


def test_breakhis_of_one_magnification_names_it_but_has_no_scale(tmp_path):
    root = breakhis_tree(tmp_path)
    for path in root.rglob("*-100-*.png"):
        path.unlink()
    scale = scale_of(root)
    assert scale.microns_per_pixel is None
    assert "(these are at 40X)" in scale.source
    assert scale.patch_px == 40  # the images' own side: every one is a 40 px square


def test_breakhis_of_several_magnifications_has_no_one_scale(tmp_path):
    root = breakhis_tree(tmp_path)  # 40X and 100X
    scale = scale_of(root)
    assert scale.microns_per_pixel is None
    assert "mix magnifications (40X, 100X)" in scale.source
    with pytest.raises(DatasetError, match=r"40X, 100X: one data\.microns_per_pixel cannot"):
        scale_of(root, microns_per_pixel=0.5)


def test_folders_say_nothing_of_their_scale(tmp_path):
    scale = scale_of(folders_tree(tmp_path))
    assert (scale.microns_per_pixel, scale.patch_px) == (None, 40)
    assert scale.source == (
        "unknown: the folders layout says nothing of its scale; set data.microns_per_pixel"
    )


def test_no_layout_claims_a_scale_that_no_source_confirms():
    assert {name: s.microns_per_pixel for name, s in LAYOUT_SCALES.items()} == {
        "idc": None,
        "breakhis": None,
        "folders": None,
    }


def test_synthetic_data_declare_their_scale(tmp_path):
    summary = generate(tmp_path, patients=2, images_per_patient=6, size=48, seed=2)
    assert summary["microns_per_pixel"] == pytest.approx(100 / 48)
    assert summary["field_of_view_um"] == FIELD_OF_VIEW_UM == 100.0
    scale = scale_of(tmp_path)
    assert scale.microns_per_pixel == pytest.approx(100 / 48)
    assert scale.patch_px == 48
    assert scale.source == SCALE_SOURCE


def test_synthetic_nuclei_are_the_size_of_breast_epithelial_nuclei():
    # The reason for the synthetic scale: mean nuclei 6-10 um across, malignant ones larger.
    diameters = {label: 2 * look.radius * FIELD_OF_VIEW_UM for label, look in LOOKS.items()}
    assert 6 <= diameters[0] < diameters[1] <= 10
    # The same field of view at any size: the pixel changes, the tissue does not.
    assert microns_per_pixel(64) * 64 == microns_per_pixel(128) * 128 == FIELD_OF_VIEW_UM


def test_a_synthetic_summary_without_its_size_is_refused(tmp_path):
    idc_tree(tmp_path, patients=2, per_class=1)
    (tmp_path / "SYNTHETIC.json").write_text('{"generator": "ml.synthetic"}')
    with pytest.raises(DatasetError, match="does not say its image_size"):
        scale_of(tmp_path)


# --- The setting ---------------------------------------------------------------------------


def test_the_setting_fills_in_a_layout_that_does_not_say_its_scale(tmp_path):
    scale = scale_of(idc_tree(tmp_path, patients=2, per_class=1), microns_per_pixel=4.0)
    assert (scale.microns_per_pixel, scale.patch_px, scale.source) == (4.0, 50, SETTING_SOURCE)


def test_the_setting_overrides_what_the_data_say(tmp_path):
    generate(tmp_path, patients=2, images_per_patient=6, size=32, seed=1)
    scale = scale_of(tmp_path, microns_per_pixel=0.5, patch_px=64)
    assert (scale.microns_per_pixel, scale.patch_px, scale.source) == (0.5, 64, SETTING_SOURCE)


def test_patch_side_is_measured_only_from_squares_of_one_size(tmp_path):
    samples, _ = read_dataset(folders_tree(tmp_path))
    assert measured_patch_px(samples) == 40
    write_png(tmp_path / "benign" / "pz_1.png", size=64, seed=9)
    samples, _ = read_dataset(tmp_path)
    assert measured_patch_px(samples) is None
    scale = dataset_scale(tmp_path, "folders", samples, microns_per_pixel=1.0)
    assert (scale.microns_per_pixel, scale.patch_px) == (1.0, None)
    assert dataset_scale(tmp_path, "folders", samples, patch_px=40).patch_px == 40


def test_the_settings_are_checked_and_off_by_default(tmp_path):
    config = config_for(tmp_path, tmp_path)
    assert (config.data.microns_per_pixel, config.data.patch_px) == (None, None)
    assert config.data.require_scale is False
    config = config_for(tmp_path, tmp_path, microns_per_pixel=0.25, patch_px=96)
    assert (config.data.microns_per_pixel, config.data.patch_px) == (0.25, 96)
    for bad in ({"microns_per_pixel": 0}, {"microns_per_pixel": -1.0}, {"patch_px": 4}):
        with pytest.raises(ConfigError, match=rf"data\.{next(iter(bad))}"):
            config_for(tmp_path, tmp_path, **bad)


# --- Training ------------------------------------------------------------------------------


def test_training_without_a_scale_warns_and_goes_on(tmp_path, caplog):
    root = idc_tree(tmp_path / "data", patients=2, per_class=1)
    samples, layout = read_dataset(root)
    said = []
    with caplog.at_level(logging.WARNING, logger="ml.train"):
        scale = training_scale(config_for(tmp_path, root), samples, layout, said.append)
    assert scale.microns_per_pixel is None and scale.patch_px == 50
    assert "slides cannot be analysed" in caplog.text and "microns_per_pixel: null" in caplog.text
    assert said and said[0].startswith("warning: the model's scale is unknown: the idc layout")


def test_training_without_a_scale_is_refused_when_required(tmp_path):
    root = idc_tree(tmp_path / "data", patients=2, per_class=1)
    samples, layout = read_dataset(root)
    config = config_for(tmp_path, root, require_scale=True)
    with pytest.raises(DatasetError, match=r"set data\.microns_per_pixel.*require_scale is true"):
        training_scale(config, samples, layout, lambda _: None)


def test_training_with_the_setting_says_the_scale(tmp_path, caplog):
    root = idc_tree(tmp_path / "data", patients=2, per_class=1)
    samples, layout = read_dataset(root)
    said = []
    config = config_for(tmp_path, root, microns_per_pixel=2.0, require_scale=True)
    with caplog.at_level(logging.WARNING, logger="ml.train"):
        scale = training_scale(config, samples, layout, said.append)
    assert (scale.microns_per_pixel, scale.patch_px) == (2.0, 50)
    assert said == ["scale: 2 um per pixel (data.microns_per_pixel setting)"]
    assert caplog.text == ""


# --- The card ------------------------------------------------------------------------------


def test_a_card_with_the_scale_reads_back_unchanged():
    text = DEMO_CARD.read_text()
    card = ModelCard.model_validate_json(text)
    assert card.model_dump_json(indent=2) + "\n" == text
    assert card.input.microns_per_pixel == microns_per_pixel(DEMO_DATA["size"]) == 0.78125
    assert card.input.patch_px == DEMO_DATA["size"] == 128
    assert card.input.scale_source == SCALE_SOURCE
    assert card.input.field_of_view_um == pytest.approx(FIELD_OF_VIEW_UM)


def test_a_card_older_than_the_scale_still_validates_without_one():
    raw = json.loads(DEMO_CARD.read_text())
    for key in ("microns_per_pixel", "patch_px", "scale_source"):
        del raw["input"][key]
    card = ModelCard.model_validate(raw)
    assert (card.input.microns_per_pixel, card.input.patch_px, card.input.scale_source) == (
        None,
        None,
        None,
    )
    assert card.input.field_of_view_um is None
    again = ModelCard.model_validate_json(card.model_dump_json())
    assert again.input == card.input


@pytest.mark.parametrize(("field", "value"), [("microns_per_pixel", 0), ("patch_px", -50)])
def test_a_card_scale_must_be_positive(field, value):
    fields = {"size": [64, 64, 3], "dtype": "float32", "value_range": [0, 1], field: value}
    with pytest.raises(ValidationError, match=field):
        ModelInput(**fields)


def test_field_of_view_needs_both_numbers():
    base = {"size": [64, 64, 3], "dtype": "float32", "value_range": [0, 1]}
    assert ModelInput(**base, microns_per_pixel=0.5, patch_px=50).field_of_view_um == 25.0
    assert ModelInput(**base, microns_per_pixel=0.5).field_of_view_um is None
