"""Typed dependencies, so routes read like their contract: who may do what (clinicians
create and read, viewers read, only admins export or read the audit trail, only the gateway
stores predictions) and what the app factory set up for them (settings, the image files)."""

from typing import Annotated

from fastapi import Depends, Request

# Who may call: the same three rules in every service.
from common.auth import Admin as Admin
from common.auth import Principal
from common.auth import Reader as Reader
from common.auth import Writer as Writer
from common.deps import app_state
from common.deps import page_limit as page_limit
from common.errors import ServiceError
from common.service_tokens import SERVICE_TOKEN_HEADER, ServiceTokenVerifier
from data_service.images.storage import ImageStore
from data_service.settings import DataSettings

SettingsDep = Annotated[DataSettings, Depends(app_state("settings"))]
ImageStoreDep = Annotated[ImageStore, Depends(app_state("image_store"))]

# Predictions are stored by the gateway alone, after the model answered: a clinician's token
# reaches the data service from anywhere the network allows, so the gateway's service token
# (signed with a key only the gateway holds) must come with it. The gateway says the same.
GATEWAY_ISSUER = "gateway"
STORE_PREDICTIONS_AUDIENCE = "data-service:predictions"


async def _from_gateway(request: Request, who: Writer) -> Principal:
    verifier: ServiceTokenVerifier | None = request.app.state.gateway_token_verifier
    if verifier is None:
        raise ServiceError(
            503,
            "Predictions cannot be stored: the gateway's service key is not configured.",
            code="service_key_not_configured",
        )
    await verifier.verify(
        request.headers.get(SERVICE_TOKEN_HEADER),
        who.subject,
        await request.body(),  # kept by the request: the route reads it again, not the network
        path=request.url.path,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return who


# A clinician or admin whose request the gateway vouched for.
GatewayCall = Annotated[Principal, Depends(_from_gateway)]
