"""The seed architecture: three convolution blocks (32/64/128 filters, ReLU, max-pooling),
dropout and a small dense head, with data augmentation as layers (active in training only).

The output is one sigmoid unit: the probability that the image is malignant. The last
convolution is named `last_conv`, where Grad-CAM heatmaps are taken from.
"""

import keras
from keras import layers

from ml.config import ModelConfig, TrainingConfig
from ml.contract import LAST_CONV


def augmentation(config: ModelConfig, seed: int) -> keras.Sequential:
    steps: list[layers.Layer] = []
    look = config.augmentation
    if look.flip:
        steps.append(layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if look.rotation > 0:
        steps.append(layers.RandomRotation(look.rotation, fill_mode="reflect", seed=seed))
    if look.brightness > 0:
        steps.append(layers.RandomBrightness(look.brightness, value_range=(0, 1), seed=seed))
    if look.contrast > 0:
        steps.append(layers.RandomContrast(look.contrast, seed=seed))
    if look.hue > 0:  # stain variation between labs
        steps.append(layers.RandomHue(look.hue, value_range=(0, 1), seed=seed))
    return keras.Sequential(steps, name="augmentation")


def build_model(config: ModelConfig, seed: int) -> keras.Model:
    size = config.input_size
    inputs = keras.Input(shape=(size, size, 3), name="image")
    x = augmentation(config, seed)(inputs)
    for index, filters in enumerate(config.filters):
        last = index == len(config.filters) - 1
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            name=LAST_CONV if last else f"conv{index + 1}",
        )(x)
        x = layers.MaxPooling2D(name=f"pool{index + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, seed=seed)(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(config.dropout, seed=seed)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="malignant_probability")(x)
    return keras.Model(inputs, outputs, name="histopathology_cnn")


def compile_model(model: keras.Model, config: TrainingConfig) -> keras.Model:
    optimizers = {
        "adam": keras.optimizers.Adam,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }
    model.compile(
        optimizer=optimizers[config.optimizer](learning_rate=config.learning_rate),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
        ],
    )
    return model
