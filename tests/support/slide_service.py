"""The slide service in-process against a real database, with tokens from the test key."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.support.services import slide_app
from tests.support.tokens import bearer, mint_token, test_verifier


@dataclass
class SlideHarness:
    app: FastAPI
    client: httpx.AsyncClient
    storage_dir: Path
    clinician: dict
    admin: dict
    viewer: dict
    clinician_id: str

    async def upload(
        self,
        data: bytes,
        filename: str = "slide.svs",
        patient_id: str | None = None,
        headers: dict | None = None,
        content_type: str = "application/octet-stream",
        **params: object,
    ) -> httpx.Response:
        query = {"patient_id": patient_id or str(uuid.uuid4()), "filename": filename, **params}
        return await self.client.post(
            "/slides",
            params=query,
            content=data,
            headers={"Content-Type": content_type, **(headers or self.clinician)},
        )

    async def slide(self, data: bytes, filename: str = "slide.svs", **params: object) -> dict:
        response = await self.upload(data, filename, **params)
        assert response.status_code == 201, response.text
        return response.json()

    async def grant(self, slide_id: str) -> str:
        response = await self.client.post(f"/slides/{slide_id}/view-links", headers=self.viewer)
        assert response.status_code == 200, response.text
        return response.json()["grant"]

    def stored_files(self) -> list[Path]:
        """Every file under the storage folder (temporary ones included)."""
        return sorted(p for p in self.storage_dir.rglob("*") if p.is_file())

    async def metric(self, name: str) -> float:
        text = (await self.client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@asynccontextmanager
async def running_slides(
    database_url: str, storage_dir: Path, **overrides: object
) -> AsyncIterator[SlideHarness]:
    app = slide_app(database_url, storage_dir=storage_dir, environment="test", **overrides)
    app.state.token_verifier = test_verifier()
    clinician_id = str(uuid.uuid4())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://slides", timeout=60
        ) as client:
            yield SlideHarness(
                app,
                client,
                storage_dir,
                bearer(mint_token("clinician", clinician_id)),
                bearer(mint_token("admin")),
                bearer(mint_token("viewer")),
                clinician_id,
            )
