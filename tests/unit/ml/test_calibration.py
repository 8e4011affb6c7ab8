"""Temperature scaling, the expected calibration error and the indeterminate band, on data
whose answers are known."""

import math

import numpy as np
import pytest

from ml.calibration import (
    BAND_MAX_ERROR_RATE,
    choose_band,
    expected_calibration_error,
    fit_temperature,
    temperature_scaled,
)
from ml.card import Calibration, logit


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_temperature_fitting_recovers_a_known_temperature(true_temperature):
    """Labels drawn from sigmoid(z), probabilities reported as sigmoid(z * T): dividing the
    reported logits by T gives the true probabilities back, and NLL is lowest there."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2.5, 40_000)
    labels = (rng.random(len(z)) < sigmoid(z)).astype(int)
    reported = sigmoid(z * true_temperature)
    assert fit_temperature(labels, reported) == pytest.approx(true_temperature, rel=0.05)
    assert fit_temperature(labels, sigmoid(z)) == pytest.approx(1.0, rel=0.05)


def test_temperature_scaling_keeps_the_order_and_saturated_probabilities_stay_finite():
    scaled = temperature_scaled(np.array([0.0, 0.2, 0.5, 0.9, 1.0]), 3.0)
    assert np.all(np.isfinite(scaled)) and np.all(np.diff(scaled) > 0)
    assert scaled[2] == pytest.approx(0.5)
    assert 0 < scaled[0] < 0.01 and 0.99 < scaled[-1] < 1  # 1.0 is not a logit of infinity


def test_the_card_applies_the_same_temperature_as_training():
    calibration = Calibration(
        method="temperature",
        temperature=2.0,
        ece_before=0.2,
        ece_after=0.1,
        bins=10,
        chosen_on="validation",
    )
    for p in (0.0, 1e-9, 0.3, 0.5, 0.97, 1.0):
        assert calibration.apply(p) == pytest.approx(float(temperature_scaled(np.array([p]), 2)[0]))
    assert calibration.apply(0.9) == pytest.approx(sigmoid(np.array(logit(0.9) / 2)))


def test_ece_on_a_hand_made_example():
    # Ten bins: 0.05 -> bin 0 (gap 0.05), 0.15 -> bin 1 (0.85), 0.85 -> bin 8 (0.15),
    # 0.95 -> bin 9 (0.05); each bin a quarter of the images.
    probabilities = np.array([0.05, 0.15, 0.85, 0.95])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.275)
    # Two bins: [0.2, 0.4] mean 0.3 against 1/2 malignant, [0.6, 1.0] mean 0.8 against 1:
    # half the images each, gaps 0.2 and 0.2; 1.0 falls in the last bin.
    two = expected_calibration_error(np.array([0, 1, 1, 1]), np.array([0.2, 0.4, 0.6, 1.0]), 2)
    assert two == pytest.approx(0.2)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0


def test_ece_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no probabilities"):
        expected_calibration_error(np.array([]), np.array([]))


def test_the_band_takes_the_nearest_images_while_they_are_wrong_often_enough():
    threshold = 0.5
    # Distances from the threshold 0.01 .. 0.10; wrong: the 1st, 4th and 9th nearest.
    distances = np.arange(1, 11) / 100
    probabilities = threshold + distances  # all labelled malignant at the threshold
    labels = np.ones(10, dtype=int)
    labels[[0, 3, 8]] = 0
    # Error rates of the nearest k: 1/1, 1/2, 1/3, 2/4, 2/5, 2/6, 2/7, 2/8, 3/9, 3/10; the
    # last k whose rate reaches 20 % is 10 (0.3): every image.
    band = choose_band(labels, probabilities, threshold, max_error_rate=0.2)
    assert band.images_inside == 10 and band.error_rate_inside == pytest.approx(0.3)
    assert band.error_rate_outside is None
    # At 34 %: the nearest 4 (2/4 = 0.5); 2/5 = 0.4 also reaches it, 2/6 does not, nor any
    # after: the band holds 5, its edge halfway between 0.05 and 0.06.
    band = choose_band(labels, probabilities, threshold, max_error_rate=0.34)
    assert band.half_width == pytest.approx(0.055)
    assert band.images_inside == 5
    assert band.error_rate_inside == pytest.approx(0.4)
    assert band.error_rate_outside == pytest.approx(1 / 5)


def test_the_band_is_empty_when_the_model_is_never_wrong_near_the_threshold():
    probabilities = np.array([0.1, 0.2, 0.8, 0.9])
    band = choose_band(np.array([0, 0, 1, 1]), probabilities, 0.5)
    assert band.half_width == 0.0 and band.error_rate_inside is None
    assert band.error_rate_outside == 0.0
    assert BAND_MAX_ERROR_RATE == 0.2


def test_errors_far_from_the_threshold_do_not_widen_the_band():
    # The nearest two are right; one confident error far away brings the rate to 1/3 only
    # at the third image, so the band (at 50 %) stays empty.
    band = choose_band(np.array([1, 0, 0]), np.array([0.52, 0.45, 0.99]), 0.5, 0.5)
    assert band.half_width == 0.0
    assert math.isclose(band.error_rate_outside or 0, 1 / 3)
