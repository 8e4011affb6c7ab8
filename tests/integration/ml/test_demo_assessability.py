"""The shipped demo model's calibration, band and out-of-distribution statistics, checked
against its own data made again from the seed, and against real H&E tissue it never saw."""

import keras
import numpy as np
import pytest
from PIL import Image

from ml.bootstrap import DEMO_DATA, DEMO_VERSION, SHIPPED_MODELS_DIR
from ml.calibration import expected_calibration_error, temperature_scaled
from ml.card import ModelCard
from ml.contract import preprocess_image
from ml.datasets import read_dataset
from ml.evaluation_set import real_tissue_tiles
from ml.ood import Mahalanobis
from ml.pipeline import predict_with_features
from ml.preprocessing import check_files, split_by_patient
from ml.synthetic import generate
from ml.versions import read_card

SHIPPED = SHIPPED_MODELS_DIR / DEMO_VERSION


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return read_card(SHIPPED)


@pytest.fixture(scope="module")
def model():
    return keras.models.load_model(SHIPPED / "model.keras")


@pytest.fixture(scope="module")
def splits(card, tmp_path_factory):
    """The demo data made again from its seed, split as the card's recipe split it."""
    data = tmp_path_factory.mktemp("demo-data")
    generate(
        data,
        DEMO_DATA["patients"],
        DEMO_DATA["images_per_patient"],
        DEMO_DATA["size"],
        DEMO_DATA["seed"],
    )
    recipe = card.training_data
    samples, _ = read_dataset(data, recipe.layout)
    checked = check_files(samples, recipe.min_size)
    return split_by_patient(
        checked.kept, recipe.validation_fraction, recipe.test_fraction, recipe.seed
    ).parts()


@pytest.fixture(scope="module")
def outputs(card, model, splits):
    layer = card.out_of_distribution.layer
    return {
        name: predict_with_features(model, splits[name], card.input.side, layer)
        for name in ("validation", "test")
    }


def test_the_card_records_calibration_band_and_statistics(card):
    assert card.calibration is not None and card.calibration.chosen_on == "validation"
    assert card.indeterminate_band is not None and card.indeterminate_band.chosen_on == "validation"
    ood = card.out_of_distribution
    assert ood is not None and ood.layer == "pool" and ood.quantile == 0.99
    assert (SHIPPED / ood.file).is_file()


def test_calibration_lowers_the_ece_on_the_validation_split(card, outputs):
    labels, raw, _ = outputs["validation"]
    calibration = card.calibration
    before = expected_calibration_error(labels, raw, calibration.bins)
    after = expected_calibration_error(
        labels, temperature_scaled(raw, calibration.temperature), calibration.bins
    )
    assert after <= before
    # What the card says is what these images give.
    assert before == pytest.approx(calibration.ece_before, abs=1e-4)
    assert after == pytest.approx(calibration.ece_after, abs=1e-4)


def test_held_out_synthetic_images_are_mostly_under_the_ood_threshold(card, outputs):
    statistics = Mahalanobis.load(SHIPPED / card.out_of_distribution.file)
    threshold = card.out_of_distribution.threshold
    for split in ("validation", "test"):
        flagged = np.mean(statistics.scores(outputs[split][2]) > threshold)
        assert flagged <= 0.05, f"{flagged:.0%} of the {split} split flagged"


def test_real_h_and_e_tissue_is_unlike_the_synthetic_training_data(card, model):
    tiles = [Image.fromarray(tile) for tile in real_tissue_tiles()]
    assert len(tiles) >= 10
    layer = card.out_of_distribution.layer
    features = keras.Model(model.inputs, model.get_layer(layer).output)
    inputs = np.stack([preprocess_image(tile, card.input.side) for tile in tiles])
    scores = Mahalanobis.load(SHIPPED / card.out_of_distribution.file).scores(
        np.asarray(features(inputs, training=False))
    )
    threshold = card.out_of_distribution.threshold
    assert np.all(scores > threshold), f"scores {np.round(scores, 1)}, threshold {threshold:.1f}"
