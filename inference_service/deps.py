"""Typed dependencies for what routes take from the app (`app.state`), so a route's
signature states what it uses, and who may send a batch of patches: a user with a role that
may predict, or a slide-analysis worker acting for one."""

from dataclasses import dataclass
from typing import Annotated, get_args

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

# Who may call: the same three rules in every service.
from common.auth import Admin as Admin
from common.auth import Reader as Reader
from common.auth import Writer as Writer
from common.auth import current_principal
from common.deps import app_state
from common.errors import ServiceError
from common.service_tokens import SERVICE_TOKEN_HEADER, ServiceTokenRefused, ServiceTokenVerifier
from common.uploads import media_type, read_body
from inference_service.serving.arrays import NPY_MEDIA_TYPE
from inference_service.serving.service import Serving
from inference_service.settings import InferenceSettings

SettingsDep = Annotated[InferenceSettings, Depends(app_state("settings"))]
ServingDep = Annotated[Serving, Depends(app_state("serving"))]

# A slide-analysis worker has no user's bearer token: it sends its patches with a service
# token (`common.service_tokens`) signed by its own key, naming the user who asked for the
# analysis and bound to the very request (body, path).
SLIDE_WORKER_ISSUER = "slide-worker"
SLIDE_WORKER_AUDIENCE = "inference"

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /token.")
_service_token = APIKeyHeader(
    name=SERVICE_TOKEN_HEADER,
    scheme_name="SlideWorkerServiceToken",
    auto_error=False,
    description="A slide-analysis worker's service token (no Authorization header with it): "
    "for patches sent as one application/x-npy array.",
)
# Writer's rule, called directly: the route is reached with a bearer token or without one.
_may_predict = get_args(Writer)[1].dependency


@dataclass(frozen=True)
class PatchBatchCaller:
    """Who sends a batch to POST /predict/batch, and the .npy body, read once the caller
    was let in (and checked against a worker's token with the very bytes the route uses)."""

    user: str  # the user the patches are assessed for
    service: str | None  # the service acting for them (its token's issuer); None: the user
    npy_body: bytes | None  # None for another content type (multipart files)

    def __str__(self) -> str:
        return f"{self.service} for user {self.user}" if self.service else f"user {self.user}"


async def _read_npy(request: Request, settings: InferenceSettings) -> bytes:
    # A declared Content-Length beyond the limit is refused before any byte is read.
    return await read_body(request, settings.max_batch_array_bytes, what="The array")


async def _patch_batch_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    service_token: Annotated[str | None, Depends(_service_token)],
) -> PatchBatchCaller:
    is_npy = media_type(request) == NPY_MEDIA_TYPE
    if "authorization" in request.headers or service_token is None:
        # A user's own call, as before: a bearer token of a role that may predict (401
        # without one, when no service token came either).
        principal = await _may_predict(await current_principal(request, credentials))
        body = await _read_npy(request, settings) if is_npy else None
        return PatchBatchCaller(principal.subject, None, body)
    verifier: ServiceTokenVerifier | None = request.app.state.slide_worker_token_verifier
    if verifier is None:
        raise ServiceError(
            401,
            "Service tokens of slide-analysis workers are not accepted: the workers' public "
            "key (INFERENCE_SLIDE_WORKER_PUBLIC_KEY or INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE) "
            "is not configured.",
            code="service_key_not_configured",
        )
    # The signature first, so a forged token does not get a large body read.
    claims = await verifier.claims(service_token)
    user = claims.get("user")
    if not isinstance(user, str) or not user:
        raise ServiceTokenRefused("The service token names no user.")
    if not is_npy:
        raise ServiceError(
            403,
            "A slide-analysis worker's service token is accepted with patches sent as one "
            f"{NPY_MEDIA_TYPE} array only.",
        )
    body = await _read_npy(request, settings)
    verifier.check_request(claims, user, body, path=request.url.path)
    return PatchBatchCaller(user, SLIDE_WORKER_ISSUER, body)


# A clinician or admin with their own token, or a slide-analysis worker acting for a user.
PatchCaller = Annotated[PatchBatchCaller, Depends(_patch_batch_caller)]
