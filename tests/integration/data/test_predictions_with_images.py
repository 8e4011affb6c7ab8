"""POST /predictions/with-images: the image, the overlay and the prediction stored by one
request in one transaction; a repeat under its key gives the first prediction; anything
wrong (token, parts, patient) stores nothing at all."""

import asyncio
import hashlib
import json
import uuid

import pytest

from tests.support.data import WITH_IMAGES, model_prediction, multipart, running_data
from tests.support.images import png_bytes
from tests.support.sql import fetch_async
from tests.support.tokens import bearer, mint_service_token, mint_token


def parts(seed: int, overlay: bool = True, **prediction: object) -> dict:
    result = {
        "image": png_bytes(seed),
        "prediction": (
            "prediction.json",
            json.dumps(model_prediction(**prediction)).encode(),
            "application/json",
        ),
    }
    if overlay:
        result["overlay"] = ("overlay.png", png_bytes(seed + 1000), "image/png")
    return result


async def counts(data_db) -> tuple[int, int]:
    rows = await fetch_async(
        data_db,
        "SELECT (SELECT count(*) FROM images) AS images, "
        "(SELECT count(*) FROM predictions) AS predictions",
    )
    return rows[0]["images"], rows[0]["predictions"]


async def test_the_image_overlay_and_prediction_are_stored_together(data, data_db, tmp_path):
    patient = await data.patient("WI-1")
    sent = parts(1)
    answer = await data.store_with_images(sent, patient["id"], key="flow-1")
    assert answer.status_code == 201, answer.text
    prediction = answer.json()
    assert prediction["patient_id"] == patient["id"]
    assert prediction["requested_by"] == data.clinician_id
    assert prediction["label"] == "malignant" and prediction["probability"] == 0.9
    stored_as = {"image": prediction["image_id"], "overlay": prediction["heatmap_ref"]}
    for part, image_id in stored_as.items():
        content = await data.client.get(f"/images/{image_id}/content", headers=data.clinician)
        expected = sent[part] if part == "image" else sent[part][1]
        assert content.status_code == 200 and content.content == expected
        sha256 = hashlib.sha256(expected).hexdigest()
        assert (tmp_path / "images" / sha256[:2] / sha256).read_bytes() == expected
    keys = await fetch_async(
        data_db, "SELECT id, idempotency_key, patient_id FROM images ORDER BY idempotency_key"
    )
    # The image under a key made from the prediction's (a repeat finds it); the overlay new.
    assert [(str(row["id"]), row["idempotency_key"]) for row in keys] == [
        (prediction["image_id"], "flow-1:image"),
        (prediction["heatmap_ref"], None),
    ]
    assert {str(row["patient_id"]) for row in keys} == {patient["id"]}
    stored = await data.client.get(f"/predictions/{prediction['id']}", headers=data.clinician)
    assert stored.json() == prediction


async def test_without_an_overlay_the_prediction_has_no_heatmap(data, data_db):
    answer = await data.store_with_images(parts(2, overlay=False))
    assert answer.status_code == 201, answer.text
    assert answer.json()["heatmap_ref"] is None and answer.json()["patient_id"] is None
    assert await counts(data_db) == (1, 1)


async def test_a_repeated_key_gives_the_first_prediction_and_another_upload_is_refused(
    data, data_db
):
    patient = await data.patient("WI-2")
    first = await data.store_with_images(parts(3), patient["id"], key="flow-3")
    again_parts = parts(3, label="benign", p=0.8)
    again = await data.store_with_images(again_parts, patient["id"], key="flow-3")
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    assert await counts(data_db) == (2, 1)

    other_image = await data.store_with_images(parts(4), patient["id"], key="flow-3")
    other_patient = await data.store_with_images(parts(3), key="flow-3")
    for refused in (other_image, other_patient):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    assert await counts(data_db) == (2, 1)

    burst = await asyncio.gather(
        *(data.store_with_images(parts(5), key="flow-burst") for _ in range(6))
    )
    assert {answer.status_code for answer in burst} <= {200, 201}, [a.text for a in burst]
    assert len({answer.json()["id"] for answer in burst}) == 1
    assert await counts(data_db) == (4, 2)


async def test_the_image_stored_alone_before_is_reused_under_its_key(data, data_db):
    """After the model failed, the gateway stored the image alone under `<key>:image`; the
    repeat that completes the flow finds that record instead of making another."""
    sent = parts(6)
    alone = await data.upload(sent["image"], key="flow-6:image")
    assert alone.status_code == 201, alone.text
    answer = await data.store_with_images(sent, key="flow-6")
    assert answer.status_code == 201, answer.text
    assert answer.json()["image_id"] == alone.json()["id"]
    assert await counts(data_db) == (2, 1)


async def test_only_the_gateways_token_for_this_very_request_is_accepted(data, data_db):
    cases = {
        "no token": ("", 401),
        "not a token": ("not.a.token", 401),
        "a token for another body": (
            mint_service_token(data.clinician_id, b"another body", path=WITH_IMAGES),
            403,
        ),
    }
    for case, (token, status) in cases.items():
        answer = await data.store_with_images(parts(7), key="flow-7", service_token=token)
        assert answer.status_code == status, (case, answer.text)
        assert answer.json()["error"]["code"] == "invalid_service_token", case
    assert await counts(data_db) == (0, 0)


async def test_a_token_for_one_request_does_not_store_another(data, data_db):
    """A captured token replayed with another body, under another key or at the route
    that stores a prediction alone, is refused."""
    content, content_type = multipart(parts(8))
    token = mint_service_token(data.clinician_id, content, path=WITH_IMAGES, idempotency_key="k8")
    other_body, other_type = multipart(parts(9))
    replays = [
        (other_body, other_type, "k8"),  # another upload
        (content, content_type, "k9"),  # another key
        (content, content_type, None),  # no key
    ]
    for body, media_type, key in replays:
        answer = await data.post_with_images(body, media_type, key=key, service_token=token)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "invalid_service_token"
    # The same body and key, but the token made for the route storing a prediction alone.
    elsewhere = mint_service_token(
        data.clinician_id, content, path="/predictions", idempotency_key="k8"
    )
    answer = await data.post_with_images(content, content_type, key="k8", service_token=elsewhere)
    assert answer.status_code == 403, answer.text
    assert await counts(data_db) == (0, 0)
    stored = await data.post_with_images(content, content_type, key="k8", service_token=token)
    assert stored.status_code == 201, stored.text


async def test_a_viewer_cannot_store_even_with_a_gateway_token(data, data_db):
    viewer = bearer(mint_token("viewer"))
    answer = await data.store_with_images(parts(10), headers=viewer)
    assert answer.status_code == 403, answer.text
    assert await counts(data_db) == (0, 0)


def _without(name: str):
    def change(sent: dict) -> dict:
        return {k: v for k, v in sent.items() if k != name}

    return change


BAD_BODIES = {
    "no image part": (_without("image"), 422, "validation_error"),
    "no prediction part": (_without("prediction"), 422, "validation_error"),
    "an unknown part": (
        lambda sent: {**_without("overlay")(sent), "extra": b"x"},
        422,
        "validation_error",
    ),
    "a fourth part": (lambda sent: {**sent, "extra": b"x"}, 400, "bad_request"),
    "an empty image": (lambda sent: {**sent, "image": b""}, 400, "empty_upload"),
    "an image that is a PDF": (lambda sent: {**sent, "image": b"%PDF-1.7 x"}, 415, None),
    "an overlay that is text": (
        lambda sent: {**sent, "overlay": ("o.png", b"<html>", "image/png")},
        415,
        None,
    ),
    "a truncated image": (lambda sent: {**sent, "image": sent["image"][:60]}, 422, None),
    "a prediction that is not JSON": (
        lambda sent: {**sent, "prediction": b"{not json"},
        422,
        "validation_error",
    ),
    "a prediction with an odd label": (
        lambda sent: {
            **sent,
            "prediction": json.dumps(model_prediction(label="cancer")).encode(),
        },
        422,
        "validation_error",
    ),
    "a prediction naming its own image": (
        lambda sent: {
            **sent,
            "prediction": json.dumps(
                {**model_prediction(), "image_id": str(uuid.uuid4())}
            ).encode(),
        },
        422,
        "validation_error",
    ),
    "a prediction part beyond 64 KiB": (
        lambda sent: {**sent, "prediction": b" " * (65 * 1024) + b"{}"},
        413,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_a_bad_body_is_refused_and_nothing_is_stored(data, data_db, case):
    change, status, code = BAD_BODIES[case]
    answer = await data.store_with_images(change(parts(11)), key="flow-11")
    assert answer.status_code == status, (case, answer.text)
    if code:
        assert answer.json()["error"]["code"] == code
    assert await counts(data_db) == (0, 0)


async def test_a_body_that_is_not_multipart_is_refused(data, data_db):
    content = json.dumps(model_prediction()).encode()
    token = mint_service_token(data.clinician_id, content, path=WITH_IMAGES)
    answer = await data.client.post(
        WITH_IMAGES,
        content=content,
        headers={**data.clinician, "Content-Type": "application/json", "X-Service-Token": token},
    )
    assert answer.status_code == 415, answer.text
    assert await counts(data_db) == (0, 0)


async def test_an_unknown_patient_stores_nothing(data, data_db):
    answer = await data.store_with_images(parts(12), str(uuid.uuid4()), key="flow-12")
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "patient_not_found"
    assert await counts(data_db) == (0, 0)


async def test_an_oversized_image_or_overlay_is_refused(data_db, tmp_path):
    async with running_data(data_db, tmp_path / "images", max_upload_bytes=4000) as data:
        small, large = png_bytes(13, size=8), png_bytes(14, size=64)
        assert len(small) < 4000 < len(large)
        for sent in (
            {**parts(13, overlay=False), "image": large},
            {**parts(13), "image": small, "overlay": ("o.png", large, "image/png")},
        ):
            answer = await data.store_with_images(sent, key="flow-13")
            assert answer.status_code == 413, answer.text
        assert await counts(data_db) == (0, 0)
