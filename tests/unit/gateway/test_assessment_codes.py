"""The gateway's public shapes carry the assessment as the data service stores it and
`ml.assessment` defines it: the same codes (the gateway mirrors them, its image holds no
`ml/`), every field passed through unchanged, and documented in `/openapi.json`."""

import uuid
from datetime import UTC, datetime

from data_service.predictions.schemas import Check as StoredCheck
from data_service.predictions.schemas import Order as StoredOrder
from data_service.predictions.schemas import PredictionOut
from data_service.stats.schemas import DayCount as StoredDayCount
from data_service.stats.schemas import Stats as StoredStats
from gateway.insights.schemas import DayCount, Stats
from gateway.main import create_app
from gateway.predictions.schemas import ASSESSMENTS, REASONS, Check, Order, Prediction
from gateway.settings import GatewaySettings
from ml.assessment import Assessment, Reason
from ml.assessment import Check as MeasuredCheck


def test_the_gateway_knows_the_same_assessments_and_reasons_as_ml():
    assert tuple(outcome.value for outcome in Assessment) == ASSESSMENTS
    assert tuple(reason.value for reason in Reason) == REASONS


def test_the_gateway_documents_every_field_the_data_service_answers():
    assert set(Prediction.model_fields) == set(PredictionOut.model_fields)
    assert set(Check.model_fields) == set(StoredCheck.model_fields)
    assert set(Stats.model_fields) == set(StoredStats.model_fields)
    assert set(DayCount.model_fields) == set(StoredDayCount.model_fields)
    assert Order == StoredOrder  # the listing takes the same orders


def stored(**changes) -> dict:
    """A prediction as the data service answers it (its own schema, dumped as JSON)."""
    checks = [
        MeasuredCheck("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE).as_dict(),
        MeasuredCheck("focus", 140.0, 40.0, "at_least", Reason.OUT_OF_FOCUS).as_dict(),
    ]
    body = {
        "id": uuid.uuid4(),
        "image_id": uuid.uuid4(),
        "patient_id": None,
        "model_version": "demo-synthetic-1",
        "label": None,
        "probability": None,
        "probabilities": {"benign": 0.3, "malignant": 0.7},
        "threshold": 0.35,
        "latency_ms": 4.0,
        "heatmap_ref": None,
        "assessment": "not_assessable",
        "reasons": ["no_tissue"],
        "checks": checks,
        "requested_by": uuid.uuid4(),
        "created_at": datetime.now(UTC),
        **changes,
    }
    return PredictionOut.model_validate(body).model_dump(mode="json")


def test_a_not_assessable_prediction_passes_through_the_gateway_unchanged():
    answer = stored()
    public = Prediction.model_validate(answer).model_dump(mode="json")
    assert public == answer
    assert public["label"] is None and public["probabilities"]["malignant"] == 0.7
    assert public["checks"][0] == {
        "measure": "tissue_fraction",
        "value": 0.02,
        "limit": 0.2,
        "comparison": "at_least",
        "reason": "no_tissue",
        "passed": False,
    }


def test_an_older_prediction_passes_through_as_not_recorded():
    answer = stored(label="benign", probability=0.7, assessment=None, reasons=None, checks=None)
    public = Prediction.model_validate(answer).model_dump(mode="json")
    assert public == answer
    assert (public["assessment"], public["reasons"], public["checks"]) == (None, None, None)


def test_the_openapi_schema_documents_the_assessment_and_the_new_counts():
    settings = GatewaySettings(_env_file=None)
    schema = create_app(settings).openapi()
    components = schema["components"]["schemas"]
    prediction = components["Prediction"]["properties"]
    assessment = prediction["assessment"]["anyOf"][0]
    assert assessment["enum"] == list(ASSESSMENTS)
    reasons = components["Check"]["properties"]["reason"]
    assert reasons["enum"] == list(REASONS)
    assert {"type": "null"} in prediction["label"]["anyOf"]
    assert {"by_assessment", "by_reason"} <= set(components["Stats"]["properties"])
    listing = schema["paths"]["/api/v1/predictions"]["get"]["parameters"]
    order = next(p for p in listing if p["name"] == "order")
    assert order["schema"]["enum"] == ["newest", "review_priority"]
