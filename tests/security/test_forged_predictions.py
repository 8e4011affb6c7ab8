"""Only the gateway stores predictions. A clinician's token reaches the data service from
anywhere the network lets a caller in; with it alone, a forged prediction was stored. Now the
data service also demands the gateway's service token, made for that very request, and checks
what the body claims: the label is a class, the heatmap a stored image of the same patient.

These tests call the data service directly, as a compromised pod or a curious user inside
the network would."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.service_tokens import (
    SERVICE_TOKEN_HEADER,
    ServiceTokenSigner,
    key_id,
    load_private_key,
)
from tests.security.conftest import assert_envelope, counts
from tests.support.tokens import service_token_claims

pytestmark = pytest.mark.timeout(300)
AUDIENCE = "data-service:predictions"
PATH = "/predictions"


@pytest.fixture(scope="module")
def data_service(stack):
    with httpx.Client(base_url=stack.url("data"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def gateway_key(stack) -> Ed25519PrivateKey:
    """The key `make run` made for this stack's gateway (what only the gateway holds)."""
    key = load_private_key(path=stack.var_dir / "gateway-keys" / "service-signing.pem")
    assert key is not None
    return key


def forged_body(prediction: dict, **changes) -> bytes:
    body = {
        "image_id": prediction["image_id"],
        "model_version": prediction["model_version"],
        "label": "benign",
        "probability": 0.99,
        "probabilities": {"benign": 0.99, "malignant": 0.01},
        "threshold": 0.5,
        "latency_ms": 1.0,
        "assessment": "assessable",
        "reasons": [],
        "checks": [],
        **changes,
    }
    return json.dumps(body).encode()


def post(data_service, clinician, body: bytes, service_token: str | None) -> httpx.Response:
    headers = {**clinician.headers, "Content-Type": "application/json"}
    if service_token is not None:
        headers[SERVICE_TOKEN_HEADER] = service_token
    return data_service.post("/predictions", content=body, headers=headers)


def signed(key: Ed25519PrivateKey, kid_of: Ed25519PrivateKey, **claims) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": key_id(kid_of.public_key())})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_forged_prediction_with_a_clinicians_token_is_refused_and_nothing_is_stored(
    stack, data_service, databases, clinician, gateway_key, prediction
):
    body = forged_body(prediction)
    public_pem = (stack.var_dir / "gateway-keys" / "service-public.pem").read_bytes()
    header = b64(json.dumps({"alg": "HS256", "kid": key_id(gateway_key.public_key())}).encode())
    payload = b64(json.dumps(service_token_claims(clinician.id, body)).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    own_key = Ed25519PrivateKey.generate()
    past = int(time.time()) - 600
    refused = {
        "no service token": None,
        "not a token": "forged",
        "signed by another key": signed(
            own_key, own_key, **service_token_claims(clinician.id, body)
        ),
        "another key, the gateway's key id": signed(
            own_key, gateway_key, **service_token_claims(clinician.id, body)
        ),
        "wrong audience": signed(
            gateway_key, gateway_key, **service_token_claims(clinician.id, body, aud="data-service")
        ),
        "expired": signed(
            gateway_key,
            gateway_key,
            **service_token_claims(clinician.id, body, iat=past, exp=past + 60),
        ),
        "alg none": jwt.encode(
            service_token_claims(clinician.id, body), key=None, algorithm="none"
        ),
        "HS256 keyed with the public key": f"{header}.{payload}.{b64(mac)}",
        "the user's own access token": clinician.access_token,
    }
    before = counts(databases)
    for case, token in refused.items():
        answer = post(data_service, clinician, body, token)
        error = assert_envelope(answer, 401, "invalid_service_token")
        assert "service token" in error["message"], (case, error)
    # A genuine token, but made for another body or another user: a captured token is no
    # use for a request of one's own.
    signer = ServiceTokenSigner(gateway_key, "gateway")
    for token in (
        signer.mint(AUDIENCE, clinician.id, forged_body(prediction, label="malignant"), path=PATH),
        signer.mint(AUDIENCE, str(uuid.uuid4()), body, path=PATH),
        signer.mint(AUDIENCE, clinician.id, body, path="/predictions/with-images"),
        signer.mint(AUDIENCE, clinician.id, body, path=PATH, idempotency_key="another"),
    ):
        assert_envelope(post(data_service, clinician, body, token), 403, "invalid_service_token")
    assert counts(databases) == before


def test_an_odd_label_or_a_heatmap_that_is_no_stored_image_is_refused_even_from_the_gateway(
    data_service, databases, clinician, gateway_key, prediction
):
    """What the gateway signs is checked too: a bug (or a broken model) cannot file an
    unknown class or point the heatmap at anything but a stored image of the patient."""
    signer = ServiceTokenSigner(gateway_key, "gateway")
    before = counts(databases)
    cases = [
        ({"label": "cancer"}, 422, "validation_error"),
        ({"label": "=1+1"}, 422, "validation_error"),
        ({"probabilities": {"benign": 0.5, "malignant": 0.5, "other": 0.0}}, 422, None),
        ({"heatmap_ref": "../../etc/passwd"}, 422, "validation_error"),
        ({"heatmap_ref": str(uuid.uuid4())}, 404, "heatmap_not_found"),
    ]
    for change, status, code in cases:
        body = forged_body(prediction, **change)
        token = signer.mint(AUDIENCE, clinician.id, body, path=PATH)
        answer = post(data_service, clinician, body, token)
        assert_envelope(answer, status, code)
    assert counts(databases) == before
