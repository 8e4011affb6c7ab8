"""Calibration of P(malignant) and the band around the decision threshold where the model is
too often wrong, both chosen on the validation split by training.

- Temperature scaling (Guo et al., 2017): one scalar T divides the logit of P(malignant);
  T is the value minimising the negative log-likelihood on validation, found by SciPy's
  bounded scalar minimisation over log T.
- Expected calibration error: equal-width bins of P(malignant), the gap between the mean
  probability and the share of malignant images in each, weighted by the bin's share of
  images.
- The indeterminate band: see `choose_band`.
"""

from dataclasses import dataclass

import numpy as np

from ml.card import PROBABILITY_EPSILON

ECE_BINS = 10
# Inside the band the model was wrong at least this often on validation.
BAND_MAX_ERROR_RATE = 0.2
BAND_RULE = (
    "the widest band around the decision threshold, on the calibrated P(malignant) of the "
    "validation split, inside which the label at the threshold is wrong at least "
    f"{BAND_MAX_ERROR_RATE:.0%} of the time; its edge lies halfway between the last image in "
    "it and the first outside"
)
# Bounds of the search for T: far beyond any temperature a trained network needs.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


def logits(probabilities: np.ndarray) -> np.ndarray:
    """`ml.card.logit` of each probability (the one serving applies), vectorised."""
    p = np.clip(
        np.asarray(probabilities, dtype=np.float64).reshape(-1),
        PROBABILITY_EPSILON,
        1.0 - PROBABILITY_EPSILON,
    )
    return np.log(p / (1.0 - p))


def temperature_scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits(probabilities) / temperature))


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of `labels` (0/1)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    z = logits(probabilities)

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        # log(1 + e^x) without overflow: NLL = softplus(s) - y * s
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    found = minimize_scalar(
        nll,
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE of P(malignant) over `bins` equal-width bins of [0, 1] (1.0 falls in the last)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(p) == 0:
        raise ValueError("no probabilities to calibrate")
    which = np.minimum((p * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(gap)


@dataclass(frozen=True)
class Band:
    half_width: float
    error_rate_inside: float | None  # None when no validation image falls inside
    error_rate_outside: float | None
    images_inside: int


def choose_band(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    max_error_rate: float = BAND_MAX_ERROR_RATE,
) -> Band:
    """`BAND_RULE`: images sorted by their distance from the threshold, the band takes the
    longest run of the nearest ones whose error rate is at least `max_error_rate`."""
    y = np.asarray(labels).reshape(-1).astype(int)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    distance = np.abs(p - threshold)
    order = np.argsort(distance, kind="stable")
    wrong = ((p >= threshold).astype(int) != y)[order]
    rates = np.cumsum(wrong) / np.arange(1, len(wrong) + 1)
    reaching = np.flatnonzero(rates >= max_error_rate)
    if len(reaching) == 0:
        return Band(0.0, None, _rate(wrong), 0)
    last = int(reaching[-1])
    ranked = distance[order]
    edge = ranked[last + 1] if last + 1 < len(ranked) else ranked[last] + 1e-6
    half_width = float((ranked[last] + edge) / 2)
    inside = distance < half_width
    return Band(
        half_width=half_width,
        error_rate_inside=_rate(((p >= threshold).astype(int) != y)[inside]),
        error_rate_outside=_rate(((p >= threshold).astype(int) != y)[~inside]),
        images_inside=int(inside.sum()),
    )


def _rate(wrong: np.ndarray) -> float | None:
    return float(wrong.mean()) if len(wrong) else None
