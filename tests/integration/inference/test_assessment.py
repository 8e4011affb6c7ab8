"""The model's own checks in the answer, from a trained version's card and statistics: the
out-of-distribution score of the same call's features, the band, calibrated probabilities;
an older card without them still served; statistics that changed refused."""

import json

import keras
import numpy as np
import pytest

from ml.card import ModelCard
from ml.contract import decode_image, preprocess_image
from ml.ood import Mahalanobis
from ml.quality import measure_quality
from tests.support.images import png_bytes
from tests.support.inference import running_inference
from tests.support.tokens import bearer, mint_token

# What the quality function measures, in order, and what the model adds.
QUALITY_MEASURES = tuple(measure_quality(np.full((8, 8, 3), 255, np.uint8)))
MODEL_MEASURES = ("out_of_distribution_score", "distance_from_threshold")


async def predict_batch(client, images: list[bytes]):
    return await client.post(
        "/predict/batch",
        headers=bearer(mint_token("clinician")),
        files=[("files", (f"{i}.png", image, "image/png")) for i, image in enumerate(images)],
    )


def sample_images(trained_versions, count: int = 6) -> list[bytes]:
    paths = sorted((trained_versions.parent / "data").glob("*/*/*.png"))
    return [p.read_bytes() for p in paths[:: max(1, len(paths) // count)][:count]]


async def test_each_answer_carries_the_assessment_from_the_cards_checks(
    inference_db, models_dir, trained_versions
):
    folder = models_dir / "tiny-a"
    card = ModelCard.model_validate_json((folder / "model_card.json").read_text())
    assert card.calibration and card.indeterminate_band and card.out_of_distribution
    images = [*sample_images(trained_versions), png_bytes(3, 32)]
    async with running_inference(inference_db, models_dir) as (_, client):
        response = await predict_batch(client, images)
    assert response.status_code == 200, response.text
    # The same statistics applied here to the features of the card's layer, called directly.
    model = keras.models.load_model(folder / "model.keras")
    features = keras.Model(model.inputs, model.get_layer(card.out_of_distribution.layer).output)
    inputs = np.stack([preprocess_image(decode_image(image), 32) for image in images])
    scores = Mahalanobis.load(folder / "ood.npz").scores(
        np.asarray(features(inputs, training=False))
    )
    for item, score in zip(response.json()["items"], scores, strict=True):
        p = item["probabilities"]["malignant"]
        assert item["probabilities"]["benign"] + p == pytest.approx(1, abs=2e-6)
        # The image's quality checks first, then the model's own.
        *image_checks, ood, band = item["checks"]
        assert [check["measure"] for check in image_checks] == list(QUALITY_MEASURES)
        assert [ood["measure"], band["measure"]] == list(MODEL_MEASURES)
        assert ood["value"] == pytest.approx(score, rel=1e-4)
        assert ood["limit"] == card.out_of_distribution.threshold
        assert ood["passed"] == (score <= card.out_of_distribution.threshold)
        assert band["value"] == pytest.approx(abs(p - card.decision_threshold), abs=2e-6)
        assert band["limit"] == card.indeterminate_band.half_width
        failed = [check["reason"] for check in item["checks"] if not check["passed"]]
        assert item["reasons"] == list(dict.fromkeys(failed))
        # A failed quality check refuses a verdict; the model's own only make it undecided.
        if {check["reason"] for check in image_checks if not check["passed"]}:
            assert item["assessment"] == "not_assessable"
            assert (item["label"], item["probability"]) == (None, None)
            continue
        assert item["assessment"] == ("indeterminate" if failed else "assessable")
        assert item["label"] == ("malignant" if p >= card.decision_threshold else "benign")
        assert item["probability"] == item["probabilities"][item["label"]]
    # Random pixels are not H&E tissue.
    assert response.json()["items"][-1]["assessment"] == "not_assessable"


async def test_an_older_card_without_calibration_band_or_statistics_is_still_served(
    inference_db, models_dir, trained_versions
):
    folder = models_dir / "tiny-a"
    card = json.loads((folder / "model_card.json").read_text())
    for section in ("calibration", "indeterminate_band", "out_of_distribution"):
        card.pop(section)
    (folder / "model_card.json").write_text(json.dumps(card))
    (folder / "ood.npz").unlink()
    [image] = sample_images(trained_versions, 1)
    model = keras.models.load_model(folder / "model.keras")
    raw = float(model(preprocess_image(decode_image(image), 32)[None], training=False)[0, 0])
    async with running_inference(inference_db, models_dir) as (_, client):
        [item] = (await predict_batch(client, [image])).json()["items"]
        detail = await client.get("/models/tiny-a", headers=bearer(mint_token("viewer")))
    assert detail.json()["status"] == "active"
    # Only the image's own checks apply: nothing from the model's missing sections.
    assert [check["measure"] for check in item["checks"]] == list(QUALITY_MEASURES)
    assert not {"out_of_distribution", "near_threshold"} & set(item["reasons"])
    assert item["probabilities"]["malignant"] == pytest.approx(raw, abs=1e-5)  # uncalibrated


@pytest.mark.parametrize("change", ["altered", "missing"])
async def test_statistics_that_are_not_the_trained_ones_are_refused(
    inference_db, models_dir, trained_versions, change
):
    from tests.support.inference import copy_versions

    copy_versions(trained_versions, models_dir, ["tiny-b"])
    statistics = models_dir / "tiny-b" / "ood.npz"
    if change == "altered":
        stored = Mahalanobis.load(statistics)
        Mahalanobis(stored.means, stored.precision * 0.5).save(statistics)
    else:
        statistics.unlink()
    async with running_inference(inference_db, models_dir) as (_, client):
        response = await client.post(
            "/models",
            json={"path": "tiny-b", "activate": True},
            headers=bearer(mint_token("admin")),
        )
    assert response.status_code == 422
    expected = "does not match the checksum on its card" if change == "altered" else "is missing"
    assert response.json()["error"]["message"] == f"tiny-b: ood.npz {expected}."
