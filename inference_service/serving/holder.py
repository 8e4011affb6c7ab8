"""Which model this process serves: loaded on first use (or at start), one per process,
swapped without dropping requests when another version is activated."""

import asyncio
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from common.db import Database
from common.errors import ServiceError
from common.health import NotReady
from inference_service.registry import service as registry
from inference_service.registry.service import NoActiveVersion
from inference_service.serving.predictor import Predictor
from inference_service.serving.runtimes import AUTO, RuntimeRefused, choose_runtime
from ml.card import ModelCard

logger = logging.getLogger("inference_service.serving")


class ModelHolder:
    def __init__(
        self,
        database: Database,
        models_dir: Path,
        runtime: str = AUTO,
        runtime_threads: int = 2,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self.database = database
        self.models_dir = models_dir
        self.runtime = runtime
        self.runtime_threads = runtime_threads
        self.current: Predictor | None = None
        # The active version that cannot be served (and why), while the previous one serves.
        self.unservable: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self.runtime_info = Gauge(
            "inference_model_runtime_info",
            "1 for the model version served and the runtime of its prediction pass.",
            ["version", "runtime"],
            registry=metrics_registry,
        )

    async def _active_version(self) -> tuple[str, str, dict] | None:
        async with self.database.sessions() as session:
            found = await registry.active(session)
            return (found.version, found.path, found.card) if found else None

    async def _load(self, version: str, path: str, card: dict) -> Predictor:
        folder = self.models_dir.resolve() / path
        model_card = ModelCard.model_validate(card)
        # From the card alone, before seconds of loading: a runtime refused there is refused.
        choose_runtime(model_card, self.runtime)
        # Loading and tracing take seconds of CPU: off the event loop.
        predictor = await asyncio.to_thread(
            Predictor, version, folder, model_card, self.runtime, self.runtime_threads
        )
        await asyncio.to_thread(predictor.warm_up)
        logger.info("model loaded", extra={"version": version, "runtime": predictor.runtime})
        return predictor

    def _serve(self, predictor: Predictor) -> None:
        self.current = predictor
        self.unservable = None
        self.runtime_info.clear()
        self.runtime_info.labels(predictor.version, predictor.runtime).set(1)

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
                    self._serve(await self._load(*active))
                except RuntimeRefused:
                    raise
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
        if self.unservable is not None and self.unservable[0] == active[0]:
            return  # refused already: the current version goes on serving
        async with self._lock:
            if self.current is not None and active[0] != self.current.version:
                try:
                    self._serve(await self._load(*active))
                except RuntimeRefused as exc:
                    self.unservable = (active[0], exc.message)
                    logger.error(
                        "version %s is active but cannot be served (%s); %s serves on",
                        active[0],
                        exc.message,
                        self.current.version,
                    )

    async def watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be away; the current model still serves
                logger.warning("registry check failed: %s", type(exc).__name__)

    async def readiness(self) -> str | None:
        if self.current is not None:
            serving = f"serving {self.current.version} on {self.current.runtime}"
            if self.unservable is not None:
                version, reason = self.unservable
                return f"{serving}; active version {version} cannot be served: {reason}"
            return serving
        active = await self._active_version()
        if active is None:
            raise NotReady("no active model version")
        try:
            runtime = choose_runtime(ModelCard.model_validate(active[2]), self.runtime)
        except RuntimeRefused as exc:
            raise NotReady(f"{active[0]} active, but {exc.message}") from exc
        return f"{active[0]} active, loads on first use on {runtime}"
