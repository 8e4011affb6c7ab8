"""The model's own out-of-distribution score: the Mahalanobis distance of an image's features
at one layer of the model to the training set's (Lee et al., 2018), the class means with one
covariance shared by both classes, shrunk (Ledoit-Wolf) so that it inverts on a few hundred
images.

Fitted by training and stored in the version folder (`ood.npz`); the inference service scores
with it. Scoring is NumPy only: the service's image installs nothing else of `ml`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OOD_FILE = "ood.npz"
# The layer whose output is scored: the global average of the last convolution's maps, the
# richest summary of the image the model keeps (128 values in the seed architecture).
# `dense`, after it, keeps only what separates the two classes: an image unlike both can
# land close to either there.
OOD_LAYER = "pool"
# The share of in-distribution images (held-out validation) scored at or under the threshold.
OOD_QUANTILE = 0.99


@dataclass(frozen=True)
class Mahalanobis:
    means: np.ndarray  # (classes, features)
    precision: np.ndarray  # (features, features): the inverse of the shared covariance

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The distance of each row of `features` (n, d) to the nearest class mean."""
        features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        centred = features[:, None, :] - self.means[None, :, :]  # (n, classes, d)
        squared = np.einsum("ncd,de,nce->nc", centred, self.precision, centred)
        return np.sqrt(np.maximum(squared, 0.0)).min(axis=1)

    def save(self, path: Path) -> Path:
        with path.open("wb") as file:
            np.savez(file, means=self.means, precision=self.precision)
        return path

    @classmethod
    def load(cls, path: Path) -> "Mahalanobis":
        with np.load(path, allow_pickle=False) as stored:
            means, precision = stored["means"], stored["precision"]
        if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]):
            raise ValueError(f"{path} does not hold Mahalanobis statistics")
        return cls(means.astype(np.float64), precision.astype(np.float64))


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray) -> Mahalanobis:
    """Class means and the shrunk covariance of the features around them."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    shrunk = LedoitWolf(assume_centered=True).fit(centred)
    return Mahalanobis(means=means, precision=shrunk.precision_)


def score_threshold(in_distribution_scores: np.ndarray, quantile: float = OOD_QUANTILE) -> float:
    """The score at `quantile` of held-out in-distribution images: about 1 - quantile of
    such images score above it."""
    return float(np.quantile(np.asarray(in_distribution_scores, dtype=np.float64), quantile))
