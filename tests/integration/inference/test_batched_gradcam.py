"""Grad-CAM in batches: one compiled call per batch gives every image's probability, its
out-of-distribution score and its map, equal to each image's own gradient pass; concurrent
heatmap requests share that call."""

import asyncio

import keras
import numpy as np
import pytest
import tensorflow as tf

from inference_service.serving.predictor import Predictor
from ml.contract import LAST_CONV, decode_image, preprocess_image
from ml.versions import read_card
from tests.support.inference import running_inference
from tests.support.tokens import bearer, mint_token


def inputs(trained_versions, count: int) -> np.ndarray:
    files = sorted((trained_versions.parent / "data").glob("*/*/*.png"))[:count]
    return np.stack([preprocess_image(decode_image(f.read_bytes()), 32) for f in files])


def one_image_gradcam(model, model_input: np.ndarray, toward_malignant: bool) -> np.ndarray:
    """Grad-CAM of one image by the textbook recipe, with a gradient pass of its own."""
    both = keras.Model(model.inputs, [model.get_layer(LAST_CONV).output, model.output])
    with tf.GradientTape() as tape:
        features, probability = both(model_input[None], training=False)
        score = probability[0, 0] if toward_malignant else 1 - probability[0, 0]
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1)).numpy()[0]
    return cam / cam.max() if cam.max() > 0 else cam


def test_one_call_explains_a_batch_as_each_image_alone(trained_versions):
    folder = trained_versions / "tiny-a"
    predictor = Predictor("tiny-a", folder, read_card(folder))
    batch = inputs(trained_versions, 8)
    explained = predictor.explain(batch)
    predicted = predictor.predict(batch)
    assert len(explained) == 8
    for index, (with_map, plain) in enumerate(zip(explained, predicted, strict=True)):
        assert with_map.malignant_probability == pytest.approx(plain.malignant_probability, 1e-5)
        assert with_map.ood_score == pytest.approx(plain.ood_score, rel=1e-4)
        assert plain.malignant_map is None and with_map.malignant_map is not None
        for label, toward_malignant in (("malignant", True), ("benign", False)):
            expected = one_image_gradcam(predictor.model, batch[index], toward_malignant)
            got = predictor.heatmap(with_map.malignant_map, label)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-4, (index, label)
    # The two directions are the two signs of one map: never hot in the same cell.
    some_map = explained[0].malignant_map
    assert not np.any(
        (predictor.heatmap(some_map, "malignant") > 0) & (predictor.heatmap(some_map, "benign") > 0)
    )


async def test_concurrent_heatmap_requests_share_explain_calls(
    inference_db, models_dir, trained_versions
):
    files = sorted((trained_versions.parent / "data").glob("*/*/*.png"))[:8]
    headers = bearer(mint_token("clinician"))

    async def post(data: bytes, heatmap: bool):
        return await client.post(
            f"/predict?heatmap={str(heatmap).lower()}",
            headers=headers,
            files={"file": ("x.png", data, "image/png")},
        )

    async with running_inference(inference_db, models_dir) as (app, client):
        singles = [(await post(f.read_bytes(), True)).json() for f in files]
        together = await asyncio.gather(
            *(post(f.read_bytes(), heatmap) for f in files * 2 for heatmap in (True, False))
        )
        registry = app.state.metrics_registry
    for index, response in enumerate(together):
        body = response.json()
        single = singles[index // 2 % 8]
        assert body["probabilities"]["malignant"] == pytest.approx(
            single["probabilities"]["malignant"], abs=1e-5
        )
        if index % 2 == 0 and body["label"] is not None:
            assert body["heatmap_focus"] == single["heatmap_focus"]
        else:
            assert body["heatmap_png_base64"] is None
    explained = registry.get_sample_value("inference_batch_size_sum", {"kind": "explain"})
    explain_calls = registry.get_sample_value("inference_batch_size_count", {"kind": "explain"})
    labelled = sum(1 for single in singles if single["label"] is not None)
    # Each labelled image went through the gradient pass once alone, twice concurrently.
    assert labelled > 0
    assert explained == 3 * labelled
    assert explain_calls < 3 * labelled  # concurrent ones shared calls
