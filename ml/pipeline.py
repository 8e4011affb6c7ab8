"""Samples to tensors: every image goes through `ml.contract.preprocess_image`, the same
function the inference service calls."""

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from ml.contract import decode_image, preprocess_image
from ml.datasets import Sample

# Above this many bytes of float32 images a split is cached on disk rather than in memory.
MEMORY_CACHE_LIMIT = 3 * 1024**3


def load_image(sample: Sample, size: int) -> np.ndarray:
    return preprocess_image(decode_image(sample.path), size)


def make_dataset(
    samples: list[Sample],
    size: int,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    cache_file: str = "",
) -> tf.data.Dataset:
    """Batches of (image, label); decoded once, then cached; shuffled each epoch if seeded."""

    def generate() -> Iterator[tuple[np.ndarray, np.float32]]:
        for sample in samples:
            yield load_image(sample, size), np.float32(sample.label)

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((size, size, 3), tf.float32),
            tf.TensorSpec((), tf.float32),
        ),
    )
    # A known length lets Keras count steps (and not warn that the data "ran out").
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(samples)))
    in_memory = len(samples) * size * size * 3 * 4 <= MEMORY_CACHE_LIMIT
    dataset = dataset.cache("" if in_memory else cache_file)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(
            min(len(samples), 10_000), seed=shuffle_seed, reshuffle_each_iteration=True
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def predict_probabilities(model, samples: list[Sample], size: int, batch_size: int = 64):
    """P(malignant) for each sample, in order, and the true labels."""
    dataset = make_dataset(samples, size, batch_size)
    probabilities = model.predict(dataset, verbose=0).reshape(-1)
    return sample_labels(samples), probabilities


def sample_labels(samples: list[Sample]) -> np.ndarray:
    return np.array([sample.label for sample in samples], dtype=int)


def predict_with_features(
    model, samples: list[Sample], size: int, layer: str, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true labels, P(malignant) and the output of `layer` for each sample, in order,
    from one pass of the model."""
    import keras

    both = keras.Model(model.inputs, [model.output, model.get_layer(layer).output])
    probabilities, features = both.predict(make_dataset(samples, size, batch_size), verbose=0)
    return sample_labels(samples), probabilities.reshape(-1), features.reshape(len(samples), -1)
