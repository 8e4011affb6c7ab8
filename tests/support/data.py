"""The data service in-process against a real database, with tokens from the test key."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from fastapi import FastAPI

from common.service_tokens import SERVICE_TOKEN_HEADER
from tests.support.images import png_bytes
from tests.support.services import data_app
from tests.support.tokens import bearer, mint_service_token, mint_token, test_verifier


@dataclass
class DataHarness:
    app: FastAPI
    client: httpx.AsyncClient
    clinician: dict
    clinician_id: str

    async def patient(self, reference: str) -> dict:
        response = await self.client.post(
            "/patients", json={"external_ref": reference}, headers=self.clinician
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def image(self, seed: int, patient_id: str | None = None) -> dict:
        response = await self.upload(png_bytes(seed), patient_id)
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def upload(
        self, data: bytes, patient_id: str | None = None, key: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/images",
            params={"patient_id": patient_id} if patient_id else {},
            headers={**self.clinician, **({"Idempotency-Key": key} if key else {})},
            files={"file": ("x.png", data, "image/png")},
        )

    async def prediction(
        self,
        image_id: str,
        label: str = "malignant",
        version: str = "v1",
        latency_ms: float = 10.0,
        headers: dict | None = None,
        key: str | None = None,
        **fields: object,
    ) -> httpx.Response:
        p = 0.8 if label == "malignant" else 0.2
        body = {
            "image_id": image_id,
            "model_version": version,
            "label": label,
            "probability": max(p, 1 - p),
            "probabilities": {"benign": 1 - p, "malignant": p},
            "threshold": 0.5,
            "latency_ms": latency_ms,
            "assessment": "assessable",
            "reasons": [],
            "checks": [],
            **fields,
        }
        return await self.store_prediction(body, headers, key)

    async def store_prediction(
        self,
        body: dict,
        headers: dict | None = None,
        key: str | None = None,
        service_token: str | None = None,
    ) -> httpx.Response:
        """POST /predictions as the gateway sends it: with its service token for this body
        and the caller (the harness's clinician unless `headers` name another)."""
        content = json.dumps(body).encode()
        caller = headers or self.clinician
        if service_token is None:
            service_token = mint_service_token(subject_of(caller), content, idempotency_key=key)
        return await self.client.post(
            "/predictions",
            content=content,
            headers={
                **caller,
                "Content-Type": "application/json",
                SERVICE_TOKEN_HEADER: service_token,
                **({"Idempotency-Key": key} if key else {}),
            },
        )

    async def store_with_images(
        self,
        parts: dict,
        patient_id: str | None = None,
        key: str | None = None,
        service_token: str | None = None,
        headers: dict | None = None,
    ) -> httpx.Response:
        """POST /predictions/with-images as the gateway sends it: `parts` as multipart (see
        `multipart`), with its service token for this body, route and key unless
        `service_token` is given."""
        return await self.post_with_images(
            *multipart(parts), patient_id, key, service_token, headers
        )

    async def post_with_images(
        self,
        content: bytes,
        content_type: str,
        patient_id: str | None = None,
        key: str | None = None,
        service_token: str | None = None,
        headers: dict | None = None,
    ) -> httpx.Response:
        caller = headers or self.clinician
        if service_token is None:
            service_token = mint_service_token(
                subject_of(caller), content, path=WITH_IMAGES, idempotency_key=key
            )
        return await self.client.post(
            WITH_IMAGES,
            params={"patient_id": patient_id} if patient_id else {},
            content=content,
            headers={
                **caller,
                "Content-Type": content_type,
                SERVICE_TOKEN_HEADER: service_token,
                **({"Idempotency-Key": key} if key else {}),
            },
        )


WITH_IMAGES = "/predictions/with-images"


def multipart(parts: dict) -> tuple[bytes, str]:
    """The body and content type of `parts` (name: bytes, or a (filename, bytes, type) tuple)
    as multipart, each a file part, as httpx encodes them."""
    files = {
        name: part if isinstance(part, tuple) else (name, part, "application/octet-stream")
        for name, part in parts.items()
    }
    encoded = httpx.Request("POST", WITH_IMAGES, files=files)
    return encoded.read(), encoded.headers["Content-Type"]


def model_prediction(label: str = "malignant", p: float = 0.9, **fields: object) -> dict:
    """The model's answer as the gateway passes it on (the prediction part)."""
    return {
        "model_version": "v1",
        "label": label,
        "probability": p,
        "probabilities": {label: p, "benign" if label == "malignant" else "malignant": 1 - p},
        "threshold": 0.5,
        "latency_ms": 10.0,
        "assessment": "assessable",
        "reasons": [],
        "checks": [],
        **fields,
    }


def subject_of(headers: dict) -> str:
    """The subject of the bearer token in `headers` (a token the tests made)."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return jwt.decode(token, options={"verify_signature": False})["sub"]


@asynccontextmanager
async def running_data(
    database_url: str, storage_dir: Path, **overrides: object
) -> AsyncIterator[DataHarness]:
    app = data_app(database_url, storage_dir=storage_dir, **overrides)
    app.state.token_verifier = test_verifier()
    clinician_id = str(uuid.uuid4())
    async with app.router.lifespan_context(app):
        # An unexpected error is answered as the client would see it: a 500 envelope.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://data") as client:
            yield DataHarness(
                app, client, bearer(mint_token("clinician", clinician_id)), clinician_id
            )
