"""`python -m slide_service.worker`: a slide-analysis worker. It pulls analysis jobs from the
queue in the slide service's database, runs them (`slide_service.analyses.runner`), and
hands on the jobs of workers that died: every `worker_stalled_check_s` it looks for jobs
held by a worker whose heartbeat stopped and puts them back on the queue, where the next
free worker resumes them from their last checkpoint.

Scale it by running more of them (`docker compose up --scale slide-worker=4`, or the
Kubernetes Deployment that KEDA scales on the queue's depth): they share nothing but the
database. Its Prometheus metrics are served on `worker_metrics_port`."""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
from procrastinate import App, JobContext
from procrastinate.exceptions import ConnectorException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from common.db import Database
from common.http import create_http_client
from common.logging import configure_logging
from common.service_tokens import ServiceTokenSigner, load_private_key
from slide_service.analyses.inference import (
    WORKER_ISSUER,
    BatchClient,
    InferenceRefused,
    InferenceUnavailable,
    ModelChanged,
)
from slide_service.analyses.models import Analysis
from slide_service.analyses.queue import (
    MAX_ATTEMPTS,
    QUEUE,
    RETRY,
    TASK,
    TransientFailure,
    create_queue_app,
)
from slide_service.analyses.runner import AnalysisFailed, AnalysisRunner, AnalysisStopped
from slide_service.settings import SlideSettings, get_settings
from slide_service.slides.storage import SlideStore

logger = logging.getLogger("slide_service.worker")
# Errors of a database that is away for now (restart, failover, network): worth a retry.
DATABASE_AWAY = (OperationalError, InterfaceError, DBAPIError, OSError, ConnectionError)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter(
            "slide_analysis_jobs",
            "Analysis jobs ended by this worker, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "slide_analysis_job_seconds",
            "Time one run of an analysis job took",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
            registry=registry,
        )
        self.tiles = Counter(
            "slide_analysis_tiles", "Tiles done, by result", ["result"], registry=registry
        )
        self.rate = Gauge(
            "slide_analysis_tiles_per_second",
            "Tiles per second of the job running now (0 when idle)",
            registry=registry,
        )
        for outcome in ("succeeded", "failed", "cancelled", "retried"):
            self.jobs.labels(outcome)
        for result in ("analysed", "skipped"):
            self.tiles.labels(result)


class Worker:
    def __init__(self, settings: SlideSettings, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        key = load_private_key(
            settings.worker_signing_key.get_secret_value() if settings.worker_signing_key else None,
            settings.worker_signing_key_file,
        )
        if key is None:
            raise SystemExit(
                "SLIDE_WORKER_SIGNING_KEY or SLIDE_WORKER_SIGNING_KEY_FILE must name the worker's "
                "Ed25519 key (make it with `python -m common.service_tokens ensure PRIVATE PUBLIC`;"
                " the inference service gets the public one)"
            )
        self.database = Database(settings.database_url, pool_size=4)
        self.http: httpx.AsyncClient = create_http_client(
            settings.inference_url, read_timeout_s=settings.inference_timeout_s
        )
        self.runner = AnalysisRunner(
            self.database,
            SlideStore(settings.storage_dir.resolve()),
            BatchClient(
                self.http, ServiceTokenSigner(key, WORKER_ISSUER), settings.inference_wait_s
            ),
            batch_tiles=settings.analysis_batch_tiles,
            read_threads=settings.read_threads,
        )
        self.metrics = metrics or WorkerMetrics(CollectorRegistry())
        self.runner.on_batch = self._count_batch
        self._batch_started = time.perf_counter()
        self.app: App = create_queue_app(settings.database_url, self._register)

    def _count_batch(self, analysed: int, skipped: int) -> None:
        now = time.perf_counter()
        self.metrics.tiles.labels("analysed").inc(analysed)
        self.metrics.tiles.labels("skipped").inc(skipped)
        self.metrics.rate.set((analysed + skipped) / max(now - self._batch_started, 1e-6))
        self._batch_started = now

    def _register(self, app: App) -> None:
        app.task(name=TASK, queue=QUEUE, retry=RETRY, pass_context=True)(self.analyse_slide)

    async def analyse_slide(self, context: JobContext, analysis_id: str) -> None:
        analysis = uuid.UUID(analysis_id)
        started = time.perf_counter()
        self._batch_started = started
        outcome = "failed"
        try:
            await self.runner.run(analysis, context.should_abort)
            outcome = "succeeded"
        except AnalysisStopped:
            outcome = "cancelled"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except AnalysisFailed as exc:
            await self._fail(analysis, exc.code, exc.message)
            raise
        except ModelChanged as exc:
            message = (
                f"Another model version ({exc}) became active during the analysis; start it again "
                "to analyse the slide with that version."
            )
            await self._fail(analysis, "model_changed", message)
            raise AnalysisFailed("model_changed", message) from exc
        except InferenceRefused as exc:
            await self._fail(analysis, "inference_refused", f"{exc}.")
            raise AnalysisFailed("inference_refused", str(exc)) from exc
        except (InferenceUnavailable, *DATABASE_AWAY) as exc:
            reason = (
                str(exc)
                if isinstance(exc, InferenceUnavailable)
                else f"the database could not be reached ({type(exc).__name__})"
            )
            attempts = (context.job.attempts if context.job else 0) + 1
            if attempts >= MAX_ATTEMPTS:
                await self._fail(
                    analysis, "unavailable", f"Gave up after {attempts} attempts: {reason}."
                )
                raise AnalysisFailed("unavailable", reason) from exc
            outcome = "retried"
            await self._waiting(analysis, f"Waiting to try again (attempt {attempts}): {reason}.")
            raise TransientFailure(reason) from exc
        finally:
            self.metrics.jobs.labels(outcome).inc()
            self.metrics.seconds.observe(time.perf_counter() - started)
            self.metrics.rate.set(0)

    async def _set(self, analysis_id: uuid.UUID, **values: object) -> None:
        """Record the job's state; best effort, since the database may be what failed."""
        try:
            async with self.database.sessions() as session, session.begin():
                await session.execute(
                    update(Analysis)
                    .where(Analysis.id == analysis_id, Analysis.status.in_(("queued", "running")))
                    .values(**values)
                )
        except DATABASE_AWAY as exc:
            logger.warning("analysis %s: state not recorded: %s", analysis_id, type(exc).__name__)

    async def _fail(self, analysis_id: uuid.UUID, code: str, message: str) -> None:
        logger.warning("analysis %s failed: %s", analysis_id, message)
        await self._set(
            analysis_id,
            status="failed",
            error_code=code,
            error_message=message,
            finished_at=datetime.now(UTC),
        )

    async def _waiting(self, analysis_id: uuid.UUID, message: str) -> None:
        logger.info("analysis %s: %s", analysis_id, message)
        await self._set(analysis_id, status="queued", error_code="waiting", error_message=message)

    async def requeue_stalled(self) -> int:
        """Put back on the queue the jobs of workers whose heartbeat stopped."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self.settings.worker_stalled_after_s
        )
        count = 0
        for job in stalled:
            logger.warning("job %s of a stalled worker goes back on the queue", job.id)
            await self.app.job_manager.retry_job(job)
            count += 1
        return count

    async def _watch_stalled(self) -> None:
        while True:
            try:
                await self.requeue_stalled()
            except Exception as exc:  # the database away: the next round tries again
                logger.warning("stalled-job check failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.worker_stalled_check_s)

    async def run(self) -> None:
        async with self.app.open_async():
            watcher = asyncio.create_task(self._watch_stalled())
            try:
                await self.app.run_worker_async(
                    queues=[QUEUE],
                    name=f"slide-worker-{uuid.uuid4().hex[:8]}",
                    concurrency=self.settings.worker_concurrency,
                    update_heartbeat_interval=self.settings.worker_heartbeat_s,
                    stalled_worker_timeout=self.settings.worker_stalled_after_s,
                    abort_job_polling_interval=self.settings.worker_heartbeat_s,
                    fetch_job_polling_interval=self.settings.worker_heartbeat_s,
                    shutdown_graceful_timeout=self.settings.worker_shutdown_s,
                )
            finally:
                watcher.cancel()
                await self.http.aclose()
                await self.database.dispose()


async def run_until_stopped(settings: SlideSettings, metrics: WorkerMetrics) -> None:
    """Run the worker; when the database goes away under it (procrastinate's loop stops on a
    lost connection), start it again once the database answers, after a growing pause. Its
    job is left `doing` by the lost worker and is handed on by the stalled-job check. A
    stop signal ends the worker normally, and this loop with it."""
    pause_s = 1.0
    while True:
        worker = Worker(settings, metrics)
        try:
            await worker.run()
            return
        except (*DATABASE_AWAY, psycopg.Error, ConnectorException) as exc:
            logger.warning(
                "the worker lost its database (%s); starting again in %.0f s",
                type(exc).__name__,
                pause_s,
            )
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, 30.0)


def main() -> None:
    settings = get_settings()
    configure_logging("slide-worker", settings.log_level)
    registry = CollectorRegistry()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, registry=registry)
    asyncio.run(run_until_stopped(settings, WorkerMetrics(registry)))


if __name__ == "__main__":
    main()
