"""The in-memory gateway of the frontend's tests answers only what the real gateway could:
each answer is checked against the gateway's own response models."""

import httpx
import pytest

from frontend.utils.gateway_client import GatewayClient
from tests.unit.frontend.fake_gateway import (
    PASSWORD,
    ContractDrift,
    FakeGateway,
    contract_problem,
)


def signed_in(fake: FakeGateway, role: str = "clinician") -> GatewayClient:
    client = fake.client({})
    client.login(f"{role}@example.com", PASSWORD)
    return client


def test_a_session_through_every_faked_route_fits_the_gateways_models():
    fake = FakeGateway()
    client = signed_in(fake, "admin")
    patient = client.create_patient("H-1")
    prediction = fake.add_prediction(patient_id=patient["id"])
    client.review(prediction["id"], "disagree", corrected_label="benign")
    client.predictions(patient_id=patient["id"])
    client.reviews(prediction["id"])
    client.explain(prediction["id"], "Where did the model look?")
    client.heatmap(prediction["id"])
    client.stats()
    client.label_export()
    client.models()
    client.model("v1")
    client.model_figure("v1", "exploration/samples.png")
    client.activate_model("v2")
    client.create_user("new@example.com", "Dr New", "viewer", "a long unusual passphrase")
    client.users()
    client.logout()
    assert fake.drift == []


def test_a_record_the_gateway_could_not_answer_with_makes_the_fake_raise():
    fake = FakeGateway()
    client = signed_in(fake)
    prediction = fake.add_prediction()
    prediction["label"] = "uncertain"  # no label of the API
    with pytest.raises(ContractDrift, match="label"):
        client.prediction(prediction["id"])
    assert len(fake.drift) == 1


@pytest.mark.parametrize(
    ("spoil", "ask"),
    [
        (lambda fake: fake.add_prediction().pop("threshold"), lambda c: c.predictions()),
        (lambda fake: fake.add_patient("H-2").update(sex="n/a"), lambda c: c.patients()),
        (lambda fake: fake.models["v2"].update(status="retired"), lambda c: c.models()),
        (
            lambda fake: fake.reviews.append({"prediction_id": "p", "verdict": "agree"}),
            lambda c: c.reviews("p"),
        ),
    ],
    ids=["prediction page", "patient page", "model list", "review list"],
)
def test_a_bad_record_in_a_page_or_list_makes_the_fake_raise(spoil, ask):
    fake = FakeGateway()
    client = signed_in(fake)
    spoil(fake)
    with pytest.raises(ContractDrift):
        ask(client)


def test_an_error_must_be_the_envelope_with_a_status_the_route_documents():
    request = httpx.Request("GET", "http://gateway.test/api/v1/stats")
    bare = httpx.Response(503, json={"detail": "Service Unavailable"})
    assert "refuses" in contract_problem(request, bare)
    enveloped = {"error": {"code": "conflict", "message": "No.", "request_id": "r"}}
    assert "does not document" in contract_problem(request, httpx.Response(409, json=enveloped))
    assert contract_problem(request, httpx.Response(504, json=enveloped)) is None


def test_a_success_on_a_path_the_gateway_does_not_have_is_drift():
    request = httpx.Request("GET", "http://gateway.test/api/v1/specimens")
    problem = contract_problem(request, httpx.Response(200, json=[]))
    assert problem == "GET /api/v1/specimens answered 200, but the gateway has no such route"
