"""The prediction flow: predict, then store the image, the overlay and the prediction.

Every call carries the caller's own token, so each service checks the caller and records
who did what. The model runs first (inference service); then one call to the data service
stores the image, the overlay (binary) and the prediction together, in one transaction. A
failure of the model still stores the image (alone) and is answered with the inference
service's error (503/504 when it is down or slow). The prediction is stored
under an idempotency key: the caller's `Idempotency-Key`, or one made here so that
repeating the store after a lost connection cannot store it twice. A caller repeating a key
gets the prediction stored the first time, without the model running again; a key reused
for a different image is refused.

Each upload is its own record in the data service, for the patient it was sent for (the
bytes are stored once); the image and its overlay are stored under keys made from the
prediction's, so that a repeated or retried request finds the records it stored before.
Only the gateway may store a prediction: it sends its service token, which signs the whole
body, the route and the key, with that call.

`stored_image` reads back what the flow stored: the analysed image or its overlay.
"""

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from common.errors import ServiceError
from common.service_tokens import SERVICE_TOKEN_HEADER, ServiceTokenSigner
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import raise_for_answer

# The data service says the same: only tokens of this issuer and audience store predictions.
SERVICE_ISSUER = "gateway"
STORE_PREDICTIONS_AUDIENCE = "data-service:predictions"
STORE_WITH_IMAGES_PATH = "/predictions/with-images"


class KeyReused(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            422,
            "This Idempotency-Key was used for a different image or patient; use a new key.",
            code="idempotency_key_reused",
        )


class NoServiceKey(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Predictions cannot be stored: the gateway's service signing key is not configured.",
            code="service_key_not_configured",
        )


@dataclass(frozen=True)
class Upload:
    data: bytes
    patient_id: uuid.UUID | None
    heatmap: bool
    idempotency_key: str | None


@dataclass(frozen=True)
class FlowResult:
    prediction: dict[str, Any]
    created: bool


class PredictionFlow:
    def __init__(
        self,
        downstreams: Downstreams,
        predict_timeout_s: float,
        signer: ServiceTokenSigner | None,
    ) -> None:
        self.downstreams = downstreams
        self.predict_timeout_s = predict_timeout_s
        self.signer = signer

    async def run(self, upload: Upload, caller: str, headers: dict[str, str]) -> FlowResult:
        """`caller`: the subject of the caller's token; `headers`: the caller's
        Authorization (and X-Forwarded-For) for every call."""
        if self.signer is None:
            raise NoServiceKey()  # before anything is stored or the model runs
        if upload.idempotency_key is not None:
            earlier = await self._stored_under_key(upload, headers)
            if earlier is not None:
                return FlowResult(earlier, created=False)
        key = upload.idempotency_key or f"gateway-{uuid.uuid4().hex}"
        try:
            prediction = await self._predict(upload.data, upload.heatmap, headers)
        except ServiceError:
            # The image is kept all the same, and its own problems (not an image, unknown
            # patient) are answered before the model's.
            await self._store_image(upload.data, upload.patient_id, f"{key}:image", headers)
            raise
        overlay = prediction.pop("heatmap_png_base64", None)
        return await self._store(
            upload, key, prediction, base64.b64decode(overlay) if overlay else None, caller, headers
        )

    async def _store(
        self,
        upload: Upload,
        key: str,
        prediction: dict[str, Any],
        overlay: bytes | None,
        caller: str,
        headers: dict[str, str],
    ) -> FlowResult:
        """The image, the overlay and the prediction stored in one call, as binary parts."""
        assert self.signer is not None
        parts = {
            "image": ("image", upload.data, "application/octet-stream"),
            "prediction": ("prediction.json", json.dumps(prediction).encode(), "application/json"),
        }
        if overlay is not None:
            parts["overlay"] = ("overlay.png", overlay, "image/png")
        # httpx encodes the body; the service token signs exactly these bytes.
        encoded = httpx.Request("POST", STORE_WITH_IMAGES_PATH, files=parts)
        content = encoded.read()
        service_token = self.signer.mint(
            STORE_PREDICTIONS_AUDIENCE,
            caller,
            content,
            path=STORE_WITH_IMAGES_PATH,
            idempotency_key=key,
        )
        answer = await self.downstreams.call(
            "data",
            "POST",
            STORE_WITH_IMAGES_PATH,
            idempotent=True,  # the key makes a repeat return the first prediction
            params={"patient_id": str(upload.patient_id)} if upload.patient_id else None,
            content=content,
            headers={
                **headers,
                "Content-Type": encoded.headers["Content-Type"],
                "Idempotency-Key": key,
                SERVICE_TOKEN_HEADER: service_token,
            },
        )
        raise_for_answer(answer)
        return FlowResult(answer.json(), created=answer.status_code == 201)

    async def _stored_under_key(
        self, upload: Upload, headers: dict[str, str]
    ) -> dict[str, Any] | None:
        answer = await self.downstreams.call(
            "data",
            "GET",
            "/predictions/by-key",
            idempotent=True,
            params={"key": upload.idempotency_key},
            headers=headers,
        )
        if answer.status_code == 404:
            return None
        raise_for_answer(answer)
        earlier = answer.json()
        image = await self.downstreams.call(
            "data", "GET", f"/images/{earlier['image_id']}", idempotent=True, headers=headers
        )
        raise_for_answer(image)
        # The same key for other bytes or another patient is another request, not a repeat.
        same_patient = earlier["patient_id"] == (
            str(upload.patient_id) if upload.patient_id else None
        )
        if image.json()["sha256"] != hashlib.sha256(upload.data).hexdigest() or not same_patient:
            raise KeyReused()
        return earlier

    async def _store_image(
        self, data: bytes, patient_id: uuid.UUID | None, key: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        answer = await self.downstreams.call(
            "data",
            "POST",
            "/images",
            idempotent=True,  # under its key: a repeat finds the record stored the first time
            params={"patient_id": str(patient_id)} if patient_id else None,
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream", "Idempotency-Key": key},
        )
        raise_for_answer(answer)
        return answer.json()

    async def _predict(self, data: bytes, heatmap: bool, headers: dict[str, str]) -> dict[str, Any]:
        answer = await self.downstreams.call(
            "inference",
            "POST",
            "/predict",
            idempotent=True,  # nothing is stored: a repeat only costs model time
            timeout_s=self.predict_timeout_s,
            params={"heatmap": "true" if heatmap else "false"},
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        raise_for_answer(answer)
        return answer.json()


async def stored_image(
    downstreams: Downstreams,
    prediction_id: uuid.UUID,
    which: Literal["image_id", "heatmap_ref"],
    headers: dict[str, str],
) -> httpx.Response:
    """The data service's answer with the content of the prediction's image or overlay
    (`which`), read with the caller's rights (`headers`, as for `PredictionFlow.run`)."""
    answer = await downstreams.call(
        "data", "GET", f"/predictions/{prediction_id}", idempotent=True, headers=headers
    )
    raise_for_answer(answer)
    image_id = answer.json()[which]
    if image_id is None:
        raise ServiceError(404, "This prediction has no heatmap.", code="heatmap_not_found")
    content = await downstreams.call(
        "data", "GET", f"/images/{image_id}/content", idempotent=True, headers=headers
    )
    raise_for_answer(content)
    return content
