"""Predictions: equal to the model called directly, batched equal to single, Grad-CAM,
every bad upload, roles, metrics and readiness."""

import asyncio
import base64
import io
import json
import re
import zlib

import keras
import numpy as np
import pytest
from PIL import Image

from ml.card import ModelCard
from ml.contract import decode_image, preprocess_image
from tests.support.images import decompression_bomb, png_bytes, png_declaring, tissue_png
from tests.support.inference import running_inference
from tests.support.tokens import bearer, mint_token

# The runtime is the one the card measured fastest (`ml.conversion`), whichever it is.
SERVING_TINY_A = r"serving tiny-a on (tensorflow|litert|onnxruntime)"
REGIONS = {
    f"{row} {column}" for row in ("upper", "middle", "lower") for column in ("left", "right")
} | {"upper centre", "lower centre", "centre"}


def png(seed: int, size: int = 50, mode: str = "RGB") -> bytes:
    """Tissue, which the quality checks pass, in colour; random pixels in other modes."""
    return tissue_png(seed, size) if mode == "RGB" else png_bytes(seed, size, mode)


def served_malignant(folder, model_input: np.ndarray) -> float:
    """P(malignant) of the version in `folder` called directly, calibrated as its card says."""
    card = ModelCard.model_validate_json((folder / "model_card.json").read_text())
    model = keras.models.load_model(folder / "model.keras")
    raw = float(model(model_input[None], training=False)[0, 0])
    return card.calibration.apply(raw) if card.calibration else raw


async def post_file(
    client,
    data: bytes,
    heatmap: bool = False,
    headers=None,
    name="x.png",
    content_type="image/png",
):
    return await client.post(
        f"/predict?heatmap={str(heatmap).lower()}",
        headers=bearer(mint_token("clinician")) if headers is None else headers,
        files={"file": (name, data, content_type)},
    )


async def test_a_prediction_equals_the_model_called_directly(
    inference_db, models_dir, trained_versions
):
    image = sorted((trained_versions.parent / "data").glob("*/1/*.png"))[0].read_bytes()
    card = json.loads((models_dir / "tiny-a" / "model_card.json").read_text())
    expected = served_malignant(models_dir / "tiny-a", preprocess_image(decode_image(image), 32))
    async with running_inference(inference_db, models_dir) as (_, client):
        response = await post_file(client, image)
        sent_raw = await client.post(
            "/predict",
            content=image,
            headers={**bearer(mint_token("clinician")), "Content-Type": "image/png"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "tiny-a"
    assert body["probabilities"]["malignant"] == pytest.approx(expected, abs=1e-5)
    assert body["probabilities"]["benign"] == pytest.approx(1 - expected, abs=1e-5)
    assert body["threshold"] == card["decision_threshold"]
    assert body["label"] == ("malignant" if expected >= card["decision_threshold"] else "benign")
    assert body["probability"] == pytest.approx(body["probabilities"][body["label"]])
    assert body["latency_ms"] > 0 and body["heatmap_png_base64"] is None
    assert body["heatmap_focus"] is None
    assert sent_raw.json()["probabilities"] == body["probabilities"]


async def test_batched_results_equal_single_ones(inference_db, models_dir, trained_versions):
    images = [
        p.read_bytes() for p in sorted((trained_versions.parent / "data").glob("*/*/*.png"))[:6]
    ]
    async with running_inference(inference_db, models_dir) as (app, client):
        singles = [(await post_file(client, image)).json() for image in images]
        batch = await client.post(
            "/predict/batch",
            headers=bearer(mint_token("clinician")),
            files=[("files", (f"{i}.png", image, "image/png")) for i, image in enumerate(images)],
        )
        # Concurrent single requests are gathered into shared model calls.
        concurrent = await asyncio.gather(*(post_file(client, image) for image in images * 3))
        sizes = app.state.metrics_registry
    assert batch.status_code == 200, batch.text
    for single, batched in zip(singles, batch.json()["items"], strict=True):
        assert batched["probabilities"]["malignant"] == pytest.approx(
            single["probabilities"]["malignant"], abs=1e-5
        )
        assert batched["label"] == single["label"]
    for index, response in enumerate(concurrent):
        assert response.json()["probabilities"]["malignant"] == pytest.approx(
            singles[index % 6]["probabilities"]["malignant"], abs=1e-5
        )
    calls = sizes.get_sample_value("inference_batch_size_count", {"kind": "predict"})
    images_seen = sizes.get_sample_value("inference_batch_size_sum", {"kind": "predict"})
    assert images_seen == 6 + 6 + 18
    assert calls < 6 + 1 + 18  # some concurrent requests shared a call


async def test_gradcam_is_an_overlay_of_the_input_size_that_depends_on_the_image(
    inference_db, models_dir, trained_versions
):
    files = sorted((trained_versions.parent / "data").glob("*/1/*.png"))
    first, second = files[0].read_bytes(), files[5].read_bytes()
    big = io.BytesIO()
    decode_image(first).resize((75, 60)).save(big, "PNG")
    async with running_inference(inference_db, models_dir) as (_, client):
        answers = [
            await post_file(client, data, heatmap=True) for data in (first, second, big.getvalue())
        ]
    overlays = [
        Image.open(io.BytesIO(base64.b64decode(a.json()["heatmap_png_base64"]))) for a in answers
    ]
    assert overlays[0].size == overlays[1].size == (32, 32)  # the images' own size
    assert overlays[2].size == (75, 60)
    assert overlays[0].format == "PNG"
    difference = np.abs(np.asarray(overlays[0], float) - np.asarray(overlays[1], float))
    assert difference.mean() > 1.0
    # Each overlay comes with where its map concentrates, in words.
    for answer in answers:
        focus = answer.json()["heatmap_focus"]
        assert focus["spread"] in ("focal", "moderate", "diffuse", "none")
        assert 0 <= focus["hot_area_fraction"] <= 1
        if focus["spread"] != "none":
            assert focus["region"] in REGIONS and focus["peak_region"] in REGIONS


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8000, 8000)).save(buffer, "PNG")  # 64 Mpx that compress to ~100 KB
    return buffer.getvalue()


def _animated() -> bytes:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


async def test_every_bad_upload_gets_a_clear_4xx(inference_db, models_dir):
    good = png(1)
    cases = {
        "not an image": (b"%PDF-1.4 this is a document", 415, "not an image"),
        "truncated": (good[: len(good) // 2], 422, "cannot be used"),
        "corrupt": (good[:60] + bytes(200) + good[260:], 422, "cannot be used"),
        "empty": (b"", 400, "empty"),
        "too many pixels": (_bomb(), 413, "too large"),
        "animated": (_animated(), 422, "multi-frame"),
        "too many bytes": (png(2, size=400), 413, "larger than"),
    }
    async with running_inference(
        inference_db, models_dir, max_upload_bytes=200_000, max_pixels=10_000_000
    ) as (_, client):
        for name, (data, status, fragment) in cases.items():
            response = await post_file(client, data)
            assert response.status_code == status, (name, response.text)
            error = response.json()["error"]
            assert fragment in error["message"], (name, error)
            assert error["request_id"] == response.headers["x-request-id"]
        wrong_type = await client.post(
            "/predict",
            content=b"hello",
            headers={**bearer(mint_token("clinician")), "Content-Type": "text/plain"},
        )
        assert wrong_type.status_code == 415
        no_field = await client.post(
            "/predict",
            headers=bearer(mint_token("clinician")),
            files={"other": ("x.png", good, "image/png")},
        )
        assert no_field.status_code == 422
        too_many = await client.post(
            "/predict/batch",
            headers=bearer(mint_token("clinician")),
            files=[("files", (f"{i}.png", good, "image/png")) for i in range(40)],
        )
        assert too_many.status_code in (400, 422)
        # Grey-scale and RGBA are converted, not refused.
        for mode in ("L", "RGBA"):
            converted = await post_file(client, png(3, mode=mode))
            assert converted.status_code == 200, (mode, converted.text)


async def test_roles_and_tokens(inference_db, models_dir):
    async with running_inference(inference_db, models_dir) as (_, client):
        assert (await post_file(client, png(1), headers={})).status_code == 401
        assert (
            await post_file(client, png(1), headers=bearer(mint_token("viewer")))
        ).status_code == 403
        assert (
            await post_file(client, png(1), headers=bearer(mint_token("admin")))
        ).status_code == 200


async def test_metrics_count_predictions_by_label_and_version(inference_db, models_dir):
    async with running_inference(inference_db, models_dir) as (_, client):
        labels = [(await post_file(client, png(seed))).json()["label"] for seed in range(4)]
        text = (await client.get("/metrics")).text
    for label in set(labels):
        line = f'inference_predictions_total{{label="{label}",model_version="tiny-a"}}'
        assert f"{line} {float(labels.count(label))}" in text
    assert "inference_model_call_seconds_bucket" in text
    assert "inference_queue_depth" in text


async def test_ready_tells_whether_the_model_is_loaded(inference_db, models_dir, tmp_path):
    async with running_inference(inference_db, models_dir) as (_, client):
        before = (await client.get("/ready")).json()["checks"]["model"]
        await post_file(client, png(1))
        after = (await client.get("/ready")).json()["checks"]["model"]
    assert "loads on first use" in before["detail"]
    assert re.fullmatch(SERVING_TINY_A, after["detail"])
    async with running_inference(inference_db, models_dir, warm_up=True) as (_, client):
        detail = (await client.get("/ready")).json()["checks"]["model"]["detail"]
    assert re.fullmatch(SERVING_TINY_A, detail)


async def test_without_any_model_ready_is_503_and_predict_says_why(inference_db, tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    async with running_inference(inference_db, empty) as (_, client):
        ready = await client.get("/ready")
        predicted = await post_file(client, png(1))
    assert ready.status_code == 503
    assert ready.json()["checks"]["model"]["reason"] == "no active model version"
    assert predicted.status_code == 503
    assert predicted.json()["error"]["code"] == "no_active_model"


async def test_a_model_file_that_cannot_load_is_a_503_not_a_crash(inference_db, models_dir):
    from ml.versions import file_sha256

    folder = models_dir / "tiny-a"
    (folder / "model.keras").write_bytes(b"not a keras archive")
    card = json.loads((folder / "model_card.json").read_text())
    card["model_sha256"] = file_sha256(folder / "model.keras")  # consistent, yet unloadable
    (folder / "model_card.json").write_text(json.dumps(card))
    async with running_inference(inference_db, models_dir) as (_, client):
        response = await post_file(client, png(1))
        health = await client.get("/health")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"
    assert "tiny-a" in response.json()["error"]["message"]
    assert health.status_code == 200


def _at_limit(fmt: str, side: int = 6000) -> bytes:
    """A side x side image of tissue (36 megapixels: under the 40 megapixel limit), small on
    the wire: a small patch enlarged, which the quality checks pass, so it gets an overlay."""
    coarse = Image.open(io.BytesIO(tissue_png(7, side // 100))).convert("RGB")
    buffer = io.BytesIO()
    coarse.resize((side, side), Image.Resampling.NEAREST).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_an_image_at_the_pixel_limit_gets_a_bounded_overlay_and_the_same_answer(
    inference_db, models_dir, fmt
):
    data = _at_limit(fmt)
    expected = served_malignant(models_dir / "tiny-a", preprocess_image(decode_image(data), 32))
    async with running_inference(inference_db, models_dir) as (_, client):
        response = await post_file(client, data, heatmap=True)
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"]["malignant"] == pytest.approx(expected, abs=0.01)
    overlay = Image.open(io.BytesIO(base64.b64decode(response.json()["heatmap_png_base64"])))
    assert max(overlay.size) <= 2048  # not 6000 x 6000
    assert overlay.mode == "RGB"  # 8 bits a channel
    assert overlay.size[0] == overlay.size[1]


async def test_hostile_large_images_are_refused_with_the_envelope(inference_db, models_dir):
    at_limit_png, at_limit_jpeg = _at_limit("PNG"), _at_limit("JPEG")
    cases = {
        "bomb over the limit": (decompression_bomb(7000), 413, "too large"),
        "huge dimensions in a tiny file": (
            png_declaring(100_000, 100_000, zlib.compress(b"\0" * 64)),
            413,
            "too large",
        ),
        "truncated large PNG": (at_limit_png[: len(at_limit_png) // 2], 422, "cannot be used"),
        "truncated large JPEG": (at_limit_jpeg[: len(at_limit_jpeg) // 2], 422, "cannot be used"),
    }
    async with running_inference(inference_db, models_dir) as (_, client):
        for name, (data, status, fragment) in cases.items():
            response = await post_file(client, data, heatmap=True)
            assert response.status_code == status, (name, response.text)
            error = response.json()["error"]
            assert fragment in error["message"], (name, error)
            assert error["request_id"] == response.headers["x-request-id"]


async def test_a_request_that_cannot_get_memory_in_time_is_a_503_envelope(inference_db, models_dir):
    data = _at_limit("PNG", side=3000)
    async with running_inference(inference_db, models_dir, image_memory_wait_s=0.05) as (
        app,
        client,
    ):
        budget = app.state.serving.budget
        async with budget.hold(budget.capacity):  # other large images hold all of it
            refused = await post_file(client, data)
        served = await post_file(client, data)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    error = refused.json()["error"]
    assert error["code"] == "busy" and "busy" in error["message"]
    assert error["request_id"] == refused.headers["x-request-id"]
    assert served.status_code == 200, served.text
