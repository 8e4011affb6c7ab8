"""Assessments on stored predictions: stored and read back, hostile bodies refused, the
statistics and the export that count and mark them, and the review queue's order."""

import base64
import csv
import io
import math
import uuid

import asyncpg
import httpx
import pytest

from common.service_tokens import ServiceTokenSigner
from data_service.stats import rollups
from gateway.predictions.flow import PredictionFlow, Upload
from gateway.predictions.schemas import Prediction
from ml.assessment import Check, Reason
from tests.support.images import png_bytes
from tests.support.sql import fetch_async
from tests.support.tokens import GATEWAY_SERVICE_KEY, bearer, mint_token

NO_TISSUE = Check("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE).as_dict()
IN_FOCUS = Check("focus", 140.0, 40.0, "at_least", Reason.OUT_OF_FOCUS).as_dict()
NEAR = Check("distance_from_threshold", 0.01, 0.05, "at_least", Reason.NEAR_THRESHOLD).as_dict()


def not_assessable(**changes) -> dict:
    """What the inference service answers for blank glass: no label, probabilities kept."""
    return {
        "label": None,
        "probability": None,
        "probabilities": {"benign": 0.3, "malignant": 0.7},
        "assessment": "not_assessable",
        "reasons": ["no_tissue"],
        "checks": [NO_TISSUE, IN_FOCUS],
        **changes,
    }


def indeterminate(**changes) -> dict:
    return {
        "label": "malignant",
        "probability": 0.51,
        "probabilities": {"benign": 0.49, "malignant": 0.51},
        "assessment": "indeterminate",
        "reasons": ["near_threshold"],
        "checks": [IN_FOCUS, NEAR],
        **changes,
    }


async def count_predictions(data_db) -> int:
    return (await fetch_async(data_db, "SELECT count(*) AS n FROM predictions"))[0]["n"]


async def test_an_assessment_its_reasons_and_checks_are_stored_and_read_back(data):
    image = await data.image(101)
    refused = await data.prediction(image["id"], **not_assessable())
    assert refused.status_code == 201, refused.text
    body = refused.json()
    assert body["label"] is None and body["probability"] is None
    assert body["probabilities"] == {"benign": 0.3, "malignant": 0.7}  # kept for audit
    assert (body["assessment"], body["reasons"]) == ("not_assessable", ["no_tissue"])
    assert body["checks"] == [NO_TISSUE, IN_FOCUS]
    got = await data.client.get(f"/predictions/{body['id']}", headers=bearer(mint_token("viewer")))
    assert got.json() == body
    listed = await data.client.get("/predictions", headers=data.clinician)
    assert listed.json()["items"] == [body]

    undecided = (await data.prediction(image["id"], **indeterminate())).json()
    assert (undecided["label"], undecided["assessment"]) == ("malignant", "indeterminate")
    assert undecided["checks"][1]["passed"] is False


async def test_an_older_prediction_reads_as_not_recorded(data, data_db):
    image = await data.image(102)
    [row] = await fetch_async(
        data_db,
        "INSERT INTO predictions (id, image_id, model_version, label, probability, "
        "probabilities, threshold, latency_ms, requested_by) VALUES (gen_random_uuid(), $1, "
        "'v0', 'benign', 0.9, '{\"benign\": 0.9, \"malignant\": 0.1}', 0.5, 1, $2) "
        "RETURNING id",
        uuid.UUID(image["id"]),
        uuid.UUID(data.clinician_id),
    )
    got = (await data.client.get(f"/predictions/{row['id']}", headers=data.clinician)).json()
    assert (got["label"], got["assessment"], got["reasons"], got["checks"]) == (
        "benign",
        None,
        None,
        None,
    )


HOSTILE = {
    "unknown reason code": not_assessable(reasons=["looks_odd"]),
    "reason code in another case": not_assessable(reasons=["NO_TISSUE"]),
    "unknown assessment": not_assessable(assessment="maybe"),
    "a label with not_assessable": not_assessable(label="benign", probability=0.3),
    "a probability with no label": not_assessable(probability=0.7),
    "no label with assessable": indeterminate(assessment="assessable", label=None),
    "no label with indeterminate": indeterminate(label=None, probability=None),
    "a label without its probability": indeterminate(probability=None),
    "not_assessable without a reason": not_assessable(reasons=[]),
    "indeterminate without a reason": indeterminate(reasons=[]),
    "a reason twice": not_assessable(reasons=["no_tissue", "no_tissue"]),
    "more reasons than there are": not_assessable(reasons=["no_tissue"] * 20),
    "10,000 checks": not_assessable(checks=[NO_TISSUE] * 10_000),
    "a check with an unknown reason": not_assessable(checks=[{**NO_TISSUE, "reason": "x"}]),
    "a check with an extra field": not_assessable(checks=[{**NO_TISSUE, "note": "=1+1"}]),
    "a check without its limit": not_assessable(
        checks=[{k: v for k, v in NO_TISSUE.items() if k != "limit"}]
    ),
    "a check that lies about passing": not_assessable(checks=[{**NO_TISSUE, "passed": True}]),
    "a check compared another way": not_assessable(checks=[{**NO_TISSUE, "comparison": "equal"}]),
    "a measure named like a formula": not_assessable(
        checks=[{**NO_TISSUE, "measure": '=HYPERLINK("x")'}]
    ),
    "a measure of 10,000 characters": not_assessable(
        checks=[{**NO_TISSUE, "measure": "a" * 10_000}]
    ),
    "a value that is text": not_assessable(checks=[{**NO_TISSUE, "value": "0.02"}]),
    # json.dumps writes NaN and Infinity, as Python's own parser reads them.
    "a value that is not a number": not_assessable(checks=[{**NO_TISSUE, "value": math.nan}]),
    "an infinite limit": not_assessable(checks=[{**NO_TISSUE, "limit": math.inf}]),
    "checks that are not a list": not_assessable(checks={"tissue_fraction": 0.02}),
    "no assessment": {
        k: v
        for k, v in indeterminate(assessment="assessable", reasons=[]).items()
        if k != "assessment"
    },
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_or_inconsistent_assessment_is_refused_and_nothing_stored(
    data, data_db, change
):
    image = await data.image(103)
    body = {
        "image_id": image["id"],
        "model_version": "v1",
        "threshold": 0.5,
        "latency_ms": 1.0,
        **change,
    }
    answer = await data.store_prediction(body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert await count_predictions(data_db) == 0


@pytest.mark.parametrize(
    ("label", "probability", "assessment", "reasons"),
    [
        ("benign", 0.9, "not_assessable", ["no_tissue"]),  # a verdict on what was refused
        (None, None, "assessable", []),  # no verdict on what was assessed
        (None, None, None, None),  # an older row always had a label
        ("benign", None, "assessable", []),  # a label without its probability
        ("benign", 0.9, "unsure", []),  # no such assessment
        ("benign", 0.9, "assessable", None),  # an assessment without its reasons
    ],
)
async def test_the_database_refuses_rows_that_break_the_rules_too(
    data, data_db, label, probability, assessment, reasons
):
    image = await data.image(105)
    with pytest.raises(asyncpg.CheckViolationError):
        await fetch_async(
            data_db,
            "INSERT INTO predictions (id, image_id, model_version, label, probability, "
            "probabilities, threshold, latency_ms, requested_by, assessment, reasons) VALUES "
            "(gen_random_uuid(), $1, 'v1', $2, $3, '{}', 0.5, 1, $4, $5, $6)",
            uuid.UUID(image["id"]),
            label,
            probability,
            uuid.UUID(data.clinician_id),
            assessment,
            reasons,
        )


async def _older_prediction(data, data_db, image_id: str, label: str = "benign") -> str:
    [row] = await fetch_async(
        data_db,
        "INSERT INTO predictions (id, image_id, model_version, label, probability, "
        "probabilities, threshold, latency_ms, requested_by) VALUES (gen_random_uuid(), $1, "
        "'v0', $2, 0.9, '{\"benign\": 0.9, \"malignant\": 0.1}', 0.5, 1, $3) RETURNING id",
        uuid.UUID(image_id),
        label,
        uuid.UUID(data.clinician_id),
    )
    # Counted as the migration that added the rollups counted the rows stored before it.
    async with data.app.state.database.sessions() as session:
        await rollups.count_prediction(session, row["id"])
        await session.commit()
    return str(row["id"])


async def test_statistics_count_assessments_and_reasons_in_the_period(data, data_db):
    image = await data.image(106)
    await _older_prediction(data, data_db, image["id"])
    await data.prediction(image["id"], **not_assessable())
    await data.prediction(
        image["id"],
        **not_assessable(
            reasons=["no_tissue", "out_of_focus"],
            checks=[NO_TISSUE, {**IN_FOCUS, "value": 3.0, "passed": False}],
        ),
    )
    await data.prediction(image["id"], **indeterminate())
    await data.prediction(image["id"], "benign")
    # Assessable, with a check that only warns at this site.
    await data.prediction(image["id"], "malignant", reasons=["pen_or_artefact"])

    stats = (await data.client.get("/stats", headers=bearer(mint_token("viewer")))).json()
    assert stats["predictions"] == 6
    assert stats["by_assessment"] == {
        "assessable": 2,
        "indeterminate": 1,
        "not_assessable": 2,
        "not_recorded": 1,
    }
    assert stats["by_reason"] == {
        "no_tissue": 2,
        "out_of_focus": 1,
        "not_h_and_e": 0,
        "pen_or_artefact": 1,
        "exposure": 0,
        "out_of_distribution": 0,
        "near_threshold": 1,
    }
    # Not-assessable images have no label: they are counted, but under no label.
    assert stats["by_label"] == {"benign": 2, "malignant": 2}
    [day] = stats["by_day"]
    assert day["count"] == 6 and day["by_label"] == {"benign": 2, "malignant": 2}
    assert day["by_assessment"] == {
        "not_recorded": 1,
        "not_assessable": 2,
        "indeterminate": 1,
        "assessable": 2,
    }

    empty = (
        await data.client.get(
            "/stats",
            headers=data.clinician,
            params={"created_from": "2000-01-01T00:00:00Z", "created_to": "2000-01-02T00:00:00Z"},
        )
    ).json()
    assert set(empty["by_assessment"].values()) == {0} and len(empty["by_assessment"]) == 4
    assert set(empty["by_reason"].values()) == {0} and len(empty["by_reason"]) == len(Reason)


async def test_the_export_marks_assessments_and_gives_no_label_where_nobody_gave_one(data, data_db):
    patient = await data.patient("H-EXP-1")
    images = [await data.image(110 + i, patient["id"]) for i in range(4)]
    refused_agreed = (await data.prediction(images[0]["id"], **not_assessable())).json()
    refused_corrected = (await data.prediction(images[1]["id"], **not_assessable())).json()
    undecided = (await data.prediction(images[2]["id"], **indeterminate())).json()
    older = await _older_prediction(data, data_db, images[3]["id"])
    reviews = [
        (refused_agreed["id"], {"verdict": "agree"}),
        (refused_corrected["id"], {"verdict": "disagree", "corrected_label": "benign"}),
        (undecided["id"], {"verdict": "agree"}),
        (older, {"verdict": "agree"}),
    ]
    for prediction_id, review in reviews:
        answer = await data.client.post(
            f"/predictions/{prediction_id}/reviews", json=review, headers=data.clinician
        )
        assert answer.status_code == 201, answer.text

    export = await data.client.get("/exports/labels", headers=bearer(mint_token("admin")))
    assert export.status_code == 200
    rows = {r["image_id"]: r for r in csv.DictReader(io.StringIO(export.text))}
    agreed = rows[images[0]["id"]]
    assert (agreed["label"], agreed["path"], agreed["model_label"]) == ("", "", "")
    assert (agreed["assessment"], agreed["reasons"]) == ("not_assessable", "no_tissue")
    corrected = rows[images[1]["id"]]
    assert corrected["label"] == "benign" and corrected["path"].startswith("benign/H-EXP-1_")
    assert (corrected["model_label"], corrected["assessment"]) == ("", "not_assessable")
    assert (rows[images[2]["id"]]["assessment"], rows[images[2]["id"]]["reasons"]) == (
        "indeterminate",
        "near_threshold",
    )
    assert rows[images[2]["id"]]["label"] == "malignant"
    assert (rows[images[3]["id"]]["assessment"], rows[images[3]["id"]]["reasons"]) == (
        "not_recorded",
        "",
    )


async def _listing(data, headers: dict | None = None, **params) -> dict:
    answer = await data.client.get("/predictions", params=params, headers=headers or data.clinician)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _review_order_pages(data, limit: int, headers: dict | None = None, **params) -> list[str]:
    seen, cursor = [], None
    while True:
        page = await _listing(
            data,
            headers,
            order="review_priority",
            limit=limit,
            **params,
            **({"cursor": cursor} if cursor else {}),
        )
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_the_review_order_puts_indeterminate_and_disputed_predictions_first(data):
    image = await data.image(120)

    async def store(**fields) -> str:
        return (await data.prediction(image["id"], **fields)).json()["id"]

    oldest = await store()
    undecided_old = await store(**indeterminate())
    disputed = await store(label="benign")
    plain = await store()
    refused = await store(**not_assessable())
    agreed = await store()
    undecided_new = await store(**indeterminate())
    for prediction_id, review in (
        (disputed, {"verdict": "disagree", "corrected_label": "malignant"}),
        (agreed, {"verdict": "agree"}),
    ):
        answer = await data.client.post(
            f"/predictions/{prediction_id}/reviews", json=review, headers=data.clinician
        )
        assert answer.status_code == 201, answer.text

    expected = [undecided_new, disputed, undecided_old, agreed, refused, plain, oldest]
    whole = await _listing(data, order="review_priority")
    assert [item["id"] for item in whole["items"]] == expected
    for limit in (1, 2, 3, 7):  # every way a page boundary can fall, across the two groups
        assert await _review_order_pages(data, limit) == expected, limit
    # The default is still newest first; filters apply in either order.
    by_age = [oldest, undecided_old, disputed, plain, refused, agreed, undecided_new]
    newest = await _listing(data)
    assert [item["id"] for item in newest["items"]] == by_age[::-1]
    unreviewed = await _review_order_pages(data, 2, reviewed="false")
    assert unreviewed == [undecided_new, undecided_old, refused, plain, oldest]


async def test_a_second_reviewers_queue_keeps_what_another_disputed_and_drops_their_own(data):
    image = await data.image(122)
    second_reader = bearer(mint_token("clinician"))

    async def store(**fields) -> str:
        return (await data.prediction(image["id"], **fields)).json()["id"]

    async def review(prediction_id: str, headers: dict, **verdict) -> None:
        answer = await data.client.post(
            f"/predictions/{prediction_id}/reviews", json=verdict, headers=headers
        )
        assert answer.status_code == 201, answer.text

    async def queue(headers: dict) -> list[str]:
        return await _review_order_pages(data, 2, headers, reviewed_by_me="false")

    plain = await store()
    disputed = await store(label="benign")
    undecided = await store(**indeterminate())
    agreed_by_second = await store()
    newest = await store()
    await review(disputed, data.clinician, verdict="disagree", corrected_label="malignant")
    await review(agreed_by_second, second_reader, verdict="agree")

    # The first reader disputed one: it leaves their queue and heads the second reader's.
    assert await queue(data.clinician) == [undecided, newest, agreed_by_second, plain]
    assert await queue(second_reader) == [undecided, disputed, newest, plain]
    # With the old filter, a disputed prediction (reviewed once) never reached anyone again.
    assert disputed not in await _review_order_pages(data, 2, reviewed="false")
    # The second reading stays beside the first: both current, one per reviewer.
    await review(disputed, second_reader, verdict="agree")
    assert await queue(second_reader) == [undecided, newest, plain]
    reviews = await data.client.get(f"/predictions/{disputed}/reviews", headers=data.clinician)
    assert sorted((r["verdict"], r["is_current"]) for r in reviews.json()) == [
        ("agree", True),
        ("disagree", True),
    ]
    # And what a reader has reviewed, on its own.
    mine = await _listing(data, reviewed_by_me="true")
    assert [item["id"] for item in mine["items"]] == [disputed]


async def test_a_cursor_of_one_order_is_refused_by_the_other(data):
    image = await data.image(121)
    for _ in range(3):
        await data.prediction(image["id"])
    newest = (await _listing(data, limit=1))["next_cursor"]
    prioritised = (await _listing(data, limit=1, order="review_priority"))["next_cursor"]
    assert newest and prioritised
    no_such_tier = base64.urlsafe_b64encode(
        f"9|2026-01-01T00:00:00+00:00|{uuid.uuid4()}".encode()
    ).decode()
    for params in (
        {"order": "review_priority", "cursor": newest},
        {"cursor": prioritised},
        {"order": "oldest"},
        {"order": "review_priority", "cursor": no_such_tier},
    ):
        answer = await data.client.get("/predictions", params=params, headers=data.clinician)
        assert answer.status_code == 422, (params, answer.text)


class Downstreams:
    """The gateway's downstream calls: the model answers as the wire contract says (here,
    blank glass), and the data service is the real one, in-process."""

    def __init__(self, data, answer: dict) -> None:
        self.data = data
        self.answer = answer

    async def call(self, service: str, method: str, path: str, *, idempotent: bool, **kwargs):
        kwargs.pop("timeout_s", None)
        if service == "inference":
            return httpx.Response(200, json=self.answer)
        return await self.data.client.request(method, path, **kwargs)


async def test_the_gateways_flow_stores_the_models_assessment_and_answers_it_unchanged(data):
    answer = {
        "model_version": "demo-synthetic-1",
        "threshold": 0.35,
        "latency_ms": 3.0,
        "heatmap_focus": None,
        **not_assessable(),
    }
    flow = PredictionFlow(
        Downstreams(data, answer), 5.0, ServiceTokenSigner(GATEWAY_SERVICE_KEY, "gateway")
    )
    result = await flow.run(
        Upload(png_bytes(130), None, heatmap=False, idempotency_key=None),
        data.clinician_id,
        data.clinician,
    )
    assert result.created
    public = Prediction.model_validate(result.prediction).model_dump(mode="json")
    for field in ("label", "probability", "probabilities", "assessment", "reasons", "checks"):
        assert public[field] == answer[field], field
    stored = await data.client.get(f"/predictions/{public['id']}", headers=data.clinician)
    assert stored.json()["assessment"] == "not_assessable"


async def test_a_prediction_leaves_the_disputed_group_when_its_last_disagreement_is_superseded(
    data, data_db
):
    image = await data.image(121)
    disputed = (await data.prediction(image["id"], label="benign")).json()["id"]
    newer = (await data.prediction(image["id"], label="benign")).json()["id"]
    second = bearer(mint_token("clinician", str(uuid.uuid4())))

    async def review(headers: dict, verdict: str) -> None:
        body = {"verdict": verdict}
        if verdict == "disagree":
            body["corrected_label"] = "malignant"
        answer = await data.client.post(
            f"/predictions/{disputed}/reviews", json=body, headers=headers
        )
        assert answer.status_code == 201, answer.text

    async def first_in_queue() -> str:
        return (await _listing(data, order="review_priority"))["items"][0]["id"]

    assert await first_in_queue() == newer
    await review(data.clinician, "disagree")
    await review(second, "disagree")
    assert await first_in_queue() == disputed
    await review(data.clinician, "agree")  # the second reviewer still disagrees
    assert await first_in_queue() == disputed
    await review(second, "agree")
    assert await first_in_queue() == newer
    [row] = await fetch_async(data_db, "SELECT disputed FROM predictions WHERE id = $1", disputed)
    assert row["disputed"] is False
