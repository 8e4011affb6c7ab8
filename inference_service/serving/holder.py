"""Which model this process serves: loaded on first use (or at start), one per process,
swapped without dropping requests when another version is activated."""

import asyncio
import logging
from pathlib import Path

from common.db import Database
from common.errors import ServiceError
from common.health import NotReady
from inference_service.registry import service as registry
from inference_service.registry.service import NoActiveVersion
from inference_service.serving.predictor import Predictor
from ml.card import ModelCard

logger = logging.getLogger("inference_service.serving")


class ModelHolder:
    def __init__(self, database: Database, models_dir: Path) -> None:
        self.database = database
        self.models_dir = models_dir
        self.current: Predictor | None = None
        self._lock = asyncio.Lock()

    async def _active_version(self) -> tuple[str, str, dict] | None:
        async with self.database.sessions() as session:
            found = await registry.active(session)
            return (found.version, found.path, found.card) if found else None

    async def _load(self, version: str, path: str, card: dict) -> Predictor:
        folder = self.models_dir.resolve() / path
        # Loading and tracing take seconds of CPU: off the event loop.
        predictor = await asyncio.to_thread(
            Predictor, version, folder, ModelCard.model_validate(card)
        )
        await asyncio.to_thread(predictor.warm_up)
        logger.info("model loaded", extra={"version": version})
        return predictor

    async def get(self) -> Predictor:
        """The served model, loading the active version if none is loaded yet."""
        if self.current is not None:
            return self.current
        async with self._lock:  # one load, however many requests arrive meanwhile
            if self.current is None:
                active = await self._active_version()
                if active is None:
                    raise NoActiveVersion()
                try:
                    self.current = await self._load(*active)
                except Exception as exc:
                    logger.exception("cannot load model version %s", active[0])
                    raise ServiceError(
                        503,
                        f"The active model version {active[0]} cannot be loaded.",
                        code="model_unavailable",
                    ) from exc
        return self.current

    async def refresh(self) -> None:
        """Follow the registry: when another version is active, load it, then swap.
        Requests already holding the old model finish with it."""
        active = await self._active_version()
        if active is None or self.current is None or active[0] == self.current.version:
            return
        async with self._lock:
            if self.current is not None and active[0] != self.current.version:
                self.current = await self._load(*active)

    async def watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be away; the current model still serves
                logger.warning("registry check failed: %s", type(exc).__name__)

    async def readiness(self) -> str | None:
        if self.current is not None:
            return f"serving {self.current.version}"
        active = await self._active_version()
        if active is None:
            raise NotReady("no active model version")
        return f"{active[0]} active, loads on first use"
