"""The gateway's service-token key: without one it stores nothing and runs no model; a key
that is not an Ed25519 private key stops it at start."""

import pytest
from fastapi.testclient import TestClient

from devstack.postgres import free_port
from gateway.main import create_app
from gateway.settings import GatewaySettings
from tests.support import tokens
from tests.support.images import png_bytes
from tests.support.tokens import GATEWAY_SERVICE_PUBLIC_PEM, bearer, mint_token


def settings(**overrides) -> GatewaySettings:
    # Nothing listens here: a call that reached a downstream would be a 503 naming it.
    dead = f"http://127.0.0.1:{free_port()}"
    return GatewaySettings(
        _env_file=None, auth_url=dead, inference_url=dead, data_url=dead, **overrides
    )


def test_without_a_signing_key_a_prediction_is_refused_before_any_downstream_call():
    app = create_app(settings())
    app.state.token_verifier = tokens.test_verifier()
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/predictions",
            files={"file": ("x.png", png_bytes(1), "image/png")},
            headers=bearer(mint_token("clinician")),
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "service_key_not_configured"


@pytest.mark.parametrize(
    "key", ["not a key", GATEWAY_SERVICE_PUBLIC_PEM], ids=["text", "public key"]
)
def test_a_key_that_is_no_ed25519_private_key_stops_the_gateway_at_start(key):
    with pytest.raises(ValueError, match="service signing key"):
        create_app(settings(service_signing_key=key))
