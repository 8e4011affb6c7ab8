"""The Mahalanobis out-of-distribution score: near the training features low, away from
them high, stored and read back exactly, and a file that is not such statistics refused."""

import numpy as np
import pytest

from ml.ood import Mahalanobis, fit_mahalanobis, score_threshold


@pytest.fixture
def fitted() -> tuple[Mahalanobis, np.ndarray]:
    rng = np.random.default_rng(5)
    benign = rng.normal(0, 1, (300, 8))
    malignant = rng.normal(0, 1, (300, 8)) + np.r_[4.0, np.zeros(7)]
    features = np.vstack([benign, malignant])
    labels = np.r_[np.zeros(300), np.ones(300)].astype(int)
    return fit_mahalanobis(features, labels), rng.normal(0, 1, (500, 8))


def test_a_class_mean_scores_zero_and_the_distance_uses_the_shared_covariance(fitted):
    statistics, _ = fitted
    assert statistics.means.shape == (2, 8) and statistics.precision.shape == (8, 8)
    assert statistics.scores(statistics.means) == pytest.approx([0, 0], abs=1e-9)
    # About unit variance in every direction: a point 6 away scores about 6.
    far = statistics.means[0] + np.r_[np.zeros(7), 6.0]
    assert statistics.scores(far[None])[0] == pytest.approx(6.0, rel=0.15)


def test_in_distribution_scores_stay_under_the_threshold_and_outliers_go_above(fitted):
    statistics, held_out = fitted
    threshold = score_threshold(statistics.scores(held_out), 0.99)
    fresh = np.random.default_rng(9).normal(0, 1, (2000, 8))
    assert np.mean(statistics.scores(fresh) > threshold) < 0.03
    outliers = np.random.default_rng(10).normal(0, 1, (50, 8)) * 0.2 + 10.0
    assert np.all(statistics.scores(outliers) > threshold)


def test_statistics_are_stored_and_read_back_exactly(fitted, tmp_path):
    statistics, held_out = fitted
    loaded = Mahalanobis.load(statistics.save(tmp_path / "ood.npz"))
    np.testing.assert_array_equal(loaded.scores(held_out), statistics.scores(held_out))


def test_a_file_that_is_not_mahalanobis_statistics_is_refused(tmp_path):
    path = tmp_path / "ood.npz"
    np.savez(path, means=np.zeros((2, 3)), precision=np.eye(4))
    with pytest.raises(ValueError, match="does not hold Mahalanobis statistics"):
        Mahalanobis.load(path)
    np.savez(path, means=np.array([object()], dtype=object), precision=np.eye(1))
    with pytest.raises(ValueError):  # pickled objects are never loaded
        Mahalanobis.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError):
        Mahalanobis.load(path)
