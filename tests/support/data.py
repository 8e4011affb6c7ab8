"""The data service in-process against a real database, with tokens from the test key."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.support.images import png_bytes
from tests.support.services import data_app
from tests.support.tokens import bearer, mint_token, test_verifier


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
        params = {"patient_id": patient_id} if patient_id else {}
        response = await self.client.post(
            "/images",
            params=params,
            headers=self.clinician,
            files={"file": ("x.png", png_bytes(seed), "image/png")},
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

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
        return await self.client.post(
            "/predictions",
            json={
                "image_id": image_id,
                "model_version": version,
                "label": label,
                "probability": max(p, 1 - p),
                "probabilities": {"benign": 1 - p, "malignant": p},
                "threshold": 0.5,
                "latency_ms": latency_ms,
                **fields,
            },
            headers={**(headers or self.clinician), **({"Idempotency-Key": key} if key else {})},
        )


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
