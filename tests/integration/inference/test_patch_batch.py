"""POST /predict/batch with patches as one .npy array: the same answer per patch as the image
alone gets, Grad-CAM as a compact map, quality checks that can be left to the caller, and
limits on every size."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ml.contract import decode_image
from tests.support.images import png_bytes
from tests.support.inference import running_inference
from tests.support.tokens import bearer, mint_token


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def sample_patches(trained_versions, count: int) -> np.ndarray:
    files = sorted((trained_versions.parent / "data").glob("*/*/*.png"))[:count]
    return np.stack([np.asarray(decode_image(f.read_bytes()).convert("RGB")) for f in files])


async def each_alone(client, patches: np.ndarray, heatmap: bool = False) -> list[dict]:
    """The answer of `POST /predict` for each patch sent alone as a PNG."""
    return [
        (
            await client.post(
                f"/predict?heatmap={str(heatmap).lower()}",
                headers=bearer(mint_token("clinician")),
                files={"file": ("x.png", png(patch), "image/png")},
            )
        ).json()
        for patch in patches
    ]


async def post_npy(client, body: bytes, query: str = "", role: str = "clinician", **headers):
    return await client.post(
        f"/predict/batch{query}",
        content=body,
        headers={
            **bearer(mint_token(role)),
            "Content-Type": "application/x-npy",
            **headers,
        },
    )


async def test_each_patch_gets_the_answer_its_image_gets_alone(
    inference_db, models_dir, trained_versions
):
    patches = sample_patches(trained_versions, 6)
    # A patch of random noise: the quality checks refuse it, so it gets no label or map.
    noise = np.asarray(decode_image(png_bytes(3, size=patches.shape[1])).convert("RGB"))
    patches = np.concatenate([patches, noise[None]])
    async with running_inference(inference_db, models_dir) as (_, client):
        answer = await post_npy(client, npy(patches), "?heatmap=true")
        alone = await each_alone(client, patches, heatmap=True)
        unchecked = await post_npy(client, npy(patches), "?quality=false")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "tiny-a" and body["quality_checked"] is True
    assert len(body["items"]) == len(patches)
    for item, single in zip(body["items"], alone, strict=True):
        assert item["assessment"] == single["assessment"]
        assert item["reasons"] == single["reasons"]
        assert item["label"] == single["label"]
        assert item["malignant_probability"] == pytest.approx(
            single["probabilities"]["malignant"], abs=1e-5
        )
        if single["label"] is None:
            assert item["gradcam"] is None and item["probability"] is None
            continue
        rows, columns = item["gradcam"]["shape"]
        cam = np.frombuffer(base64.b64decode(item["gradcam"]["data_base64"]), np.uint8)
        assert cam.size == rows * columns and rows == columns > 1
        assert cam.max() in (0, 255)  # scaled to its peak
    noise_item = body["items"][-1]
    assert noise_item["assessment"] == "not_assessable" and noise_item["label"] is None
    # Without the quality checks the noise gets the model's verdict, and no map was asked for.
    skipped = unchecked.json()
    assert skipped["quality_checked"] is False
    assert skipped["items"][-1]["label"] is not None
    assert all(item["gradcam"] is None for item in skipped["items"])


async def test_patches_of_another_size_are_resized_like_an_image(
    inference_db, models_dir, trained_versions
):
    patches = sample_patches(trained_versions, 3)
    larger = np.stack(
        [np.asarray(Image.fromarray(p).resize((50, 50), Image.Resampling.BICUBIC)) for p in patches]
    )
    async with running_inference(inference_db, models_dir) as (_, client):
        answer = (await post_npy(client, npy(larger), "?quality=false")).json()
        alone = await each_alone(client, larger)
    for item, single in zip(answer["items"], alone, strict=True):
        assert item["malignant_probability"] == pytest.approx(
            single["probabilities"]["malignant"], abs=1e-5
        )


async def test_bad_arrays_sizes_and_callers_are_refused(inference_db, models_dir):
    tiny = npy(np.zeros((1, 8, 8, 3), np.uint8))
    async with running_inference(
        inference_db,
        models_dir,
        max_batch_patches=4,
        max_batch_patch_side=32,
        max_batch_array_bytes=64 * 1024,
    ) as (_, client):
        too_many = await post_npy(client, npy(np.zeros((5, 8, 8, 3), np.uint8)))
        too_wide = await post_npy(client, npy(np.zeros((1, 8, 33, 3), np.uint8)))
        floats = await post_npy(client, npy(np.zeros((1, 8, 8, 3), np.float32)))
        too_big = await post_npy(client, bytes(64 * 1024 + 1))
        declared = await post_npy(client, tiny, **{"Content-Length": str(10**9)})
        viewer = await post_npy(client, tiny, role="viewer")
        nobody = await client.post(
            "/predict/batch", content=tiny, headers={"Content-Type": "application/x-npy"}
        )
        empty = await post_npy(client, b"")
        other_type = await client.post(
            "/predict/batch",
            content=tiny,
            headers={**bearer(mint_token("clinician")), "Content-Type": "text/csv"},
        )
    assert too_many.status_code == 422 and "1 to 4 patches" in too_many.text
    assert too_wide.status_code == 422 and "1 to 32 pixels" in too_wide.text
    assert floats.status_code == 422 and "uint8" in floats.text
    assert too_big.status_code == 413 and "The array" in too_big.text
    assert declared.status_code == 413
    assert viewer.status_code == 403 and nobody.status_code == 401
    assert empty.status_code == 400
    assert other_type.status_code == 415
