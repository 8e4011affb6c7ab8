"""The inference service, as the analyses see it: which model version is active and at which
scale it works (asked with the requester's own token when an analysis is started), and its
batch endpoint, which workers send tiles to as one .npy array with a service token.

The model stays the inference service's: versions, activation and batching are in one place,
and a worker needs no TensorFlow, no model files and no registry access. Workers wait out a
restarting inference service (retries with exponential backoff, `tenacity`), and name it when
it stays away."""

import base64
import io
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from common.errors import ServiceError
from common.service_tokens import SERVICE_TOKEN_HEADER, ServiceTokenSigner

logger = logging.getLogger("slide_service.analyses")
BATCH_PATH = "/predict/batch"
INFERENCE_AUDIENCE = "inference"
WORKER_ISSUER = "slide-worker"
RETRIED_STATUSES = {502, 503, 504}


@dataclass(frozen=True)
class ActiveModel:
    version: str
    threshold: float
    microns_per_pixel: float | None
    patch_px: int | None
    input_side: int


class InferenceUnavailable(Exception):
    """The inference service did not answer within the wait: a job may try again later."""


class InferenceRefused(Exception):
    """The inference service refused the batch itself (4xx): trying again will not help."""


class ModelChanged(Exception):
    """Another model version became active while the analysis ran."""


def no_model() -> ServiceError:
    return ServiceError(
        503, "No model version is active in the inference service.", code="no_active_model"
    )


def no_model_scale(version: str) -> ServiceError:
    return ServiceError(
        503,
        f"The active model ({version}) does not say at which scale it works (microns per pixel "
        "and patch size on its card), so a slide cannot be cut into tiles for it. Activate a "
        "version trained with a known scale.",
        code="no_model_scale",
    )


def inference_down() -> ServiceError:
    return ServiceError(
        503, "The inference service cannot be reached now.", code="inference_unavailable"
    )


def active_model_from_card(version: str, card: dict[str, Any]) -> ActiveModel:
    model_input = card.get("input") or {}
    size = model_input.get("size") or [0]
    return ActiveModel(
        version=version,
        threshold=float(card.get("decision_threshold", 0.5)),
        microns_per_pixel=model_input.get("microns_per_pixel"),
        patch_px=model_input.get("patch_px"),
        input_side=int(size[0]),
    )


async def active_model(client: httpx.AsyncClient, bearer: str) -> ActiveModel:
    """The active version and its card's scale, read with the caller's token."""
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        listed = await client.get("/models", headers=headers)
        if listed.status_code >= 500:
            raise inference_down()
        listed.raise_for_status()
        active = next((v for v in listed.json() if v.get("status") == "active"), None)
        if active is None:
            raise no_model()
        detail = await client.get(f"/models/{active['version']}", headers=headers)
        detail.raise_for_status()
    except httpx.TransportError as exc:
        raise inference_down() from exc
    except httpx.HTTPStatusError as exc:
        logger.warning("inference refused the model lookup: %s", exc.response.status_code)
        raise inference_down() from exc
    return active_model_from_card(active["version"], detail.json()["card"])


@dataclass(frozen=True)
class BatchAnswer:
    model_version: str
    threshold: float
    items: list[dict[str, Any]]


def npy_bytes(patches: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(patches), allow_pickle=False)
    return buffer.getvalue()


def gradcam_map(item: dict[str, Any]) -> NDArray[np.uint8] | None:
    gradcam = item.get("gradcam")
    if not gradcam:
        return None
    rows, cols = gradcam["shape"]
    data = np.frombuffer(base64.b64decode(gradcam["data_base64"]), dtype=np.uint8)
    return data.reshape(rows, cols)


def _retried(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in RETRIED_STATUSES


class BatchClient:
    """Sends tiles to the batch endpoint on behalf of the analysis's requester."""

    def __init__(
        self, client: httpx.AsyncClient, signer: ServiceTokenSigner, wait_s: float
    ) -> None:
        self.client = client
        self.signer = signer
        self.wait_s = wait_s

    async def predict(
        self, patches: NDArray[np.uint8], user: str, *, heatmap: bool = False, quality: bool = True
    ) -> BatchAnswer:
        body = npy_bytes(patches)
        params = {"heatmap": str(heatmap).lower(), "quality": str(quality).lower()}
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retried),
                wait=wait_exponential_jitter(initial=0.5, max=15.0),
                stop=stop_after_delay(self.wait_s),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        logger.info(
                            "inference batch, attempt %d", attempt.retry_state.attempt_number
                        )
                    # A token per attempt: each lives a minute, a wait may be longer.
                    token = self.signer.mint(INFERENCE_AUDIENCE, user, body, path=BATCH_PATH)
                    response = await self.client.post(
                        BATCH_PATH,
                        content=body,
                        params=params,
                        headers={
                            "Content-Type": "application/x-npy",
                            SERVICE_TOKEN_HEADER: token,
                        },
                    )
                    response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status in RETRIED_STATUSES:
                raise InferenceUnavailable(
                    f"the inference service answered {status} for {self.wait_s:.0f} s"
                ) from exc
            raise InferenceRefused(_refusal(exc.response)) from exc
        except httpx.TransportError as exc:
            raise InferenceUnavailable(
                f"the inference service could not be reached for {self.wait_s:.0f} s "
                f"({type(exc).__name__})"
            ) from exc
        answer = response.json()
        return BatchAnswer(answer["model_version"], float(answer["threshold"]), answer["items"])


def _refusal(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return f"the inference service refused the tiles ({response.status_code}): {message}"
