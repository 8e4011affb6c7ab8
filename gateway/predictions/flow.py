"""The prediction flow: store the image, predict, store the overlay and the prediction.

Every call carries the caller's own token, so each service checks the caller and records
who did what. The image is stored (data service) while the model runs (inference service);
a failure of the model leaves the stored image in place and is answered with the
inference service's error (503/504 when it is down or slow). The prediction is stored
under an idempotency key: the caller's `Idempotency-Key`, or one made here so that
repeating the store after a lost connection cannot store it twice. A caller repeating a key
gets the prediction stored the first time, without the model running again; a key reused
for a different image is refused.

`stored_image` reads back what the flow stored: the analysed image or its overlay.
"""

import asyncio
import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import raise_for_answer


class KeyReused(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            422,
            "This Idempotency-Key was used for a different image; use a new key.",
            code="idempotency_key_reused",
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
    def __init__(self, downstreams: Downstreams, predict_timeout_s: float) -> None:
        self.downstreams = downstreams
        self.predict_timeout_s = predict_timeout_s

    async def run(self, upload: Upload, headers: dict[str, str]) -> FlowResult:
        """`headers`: the caller's Authorization (and X-Forwarded-For) for every call."""
        if upload.idempotency_key is not None:
            earlier = await self._stored_under_key(upload, headers)
            if earlier is not None:
                return FlowResult(earlier, created=False)
        image: dict[str, Any] | BaseException
        prediction: dict[str, Any] | BaseException
        image, prediction = await asyncio.gather(
            self._store_image(upload.data, upload.patient_id, headers),
            self._predict(upload.data, upload.heatmap, headers),
            return_exceptions=True,
        )
        # The image's own problems (not an image, unknown patient) come first; then the
        # model's. Either way, an image already stored stays stored.
        if isinstance(image, BaseException):
            raise image
        if isinstance(prediction, BaseException):
            raise prediction
        heatmap_ref = None
        overlay = prediction.pop("heatmap_png_base64", None)
        if overlay:
            heatmap = await self._store_image(base64.b64decode(overlay), upload.patient_id, headers)
            heatmap_ref = heatmap["id"]
        key = upload.idempotency_key or f"gateway-{uuid.uuid4().hex}"
        answer = await self.downstreams.call(
            "data",
            "POST",
            "/predictions",
            idempotent=True,  # the key makes a repeat return the first prediction
            json={**prediction, "image_id": image["id"], "heatmap_ref": heatmap_ref},
            headers={**headers, "Idempotency-Key": key},
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
        if image.json()["sha256"] != hashlib.sha256(upload.data).hexdigest():
            raise KeyReused()
        return earlier

    async def _store_image(
        self, data: bytes, patient_id: uuid.UUID | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        answer = await self.downstreams.call(
            "data",
            "POST",
            "/images",
            idempotent=True,  # stored once per content: a repeat finds the first record
            params={"patient_id": str(patient_id)} if patient_id else None,
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
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
