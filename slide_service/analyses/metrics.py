"""The queue as Prometheus sees it, from the slide service's `/metrics`: jobs waiting and
running, the age of the oldest waiting one, and the workers alive (fresh heartbeat). Read
from procrastinate's tables every REFRESH_S by one task, never per scrape."""

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text

from common.db import Database
from slide_service.analyses.queue import QUEUE

logger = logging.getLogger("slide_service.analyses")
REFRESH_S = 10.0
# A worker whose heartbeat is older than this is not counted (heartbeats come every 5 s).
WORKER_ALIVE_S = 60

_QUEUE_SQL = text(
    "SELECT status::text AS status, count(*) AS jobs FROM procrastinate_jobs "
    "WHERE queue_name = :queue AND status IN ('todo', 'doing') GROUP BY status"
)
# Only jobs a worker could take now: one waiting behind its user's running analysis (the
# per-user lock) is not stuck, however long that one runs.
_OLDEST_SQL = text(
    "SELECT coalesce(extract(epoch FROM now() - min(e.at)), 0) FROM procrastinate_jobs j "
    "JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred' "
    "WHERE j.queue_name = :queue AND j.status = 'todo' "
    "AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()) "
    "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs running "
    "WHERE running.lock = j.lock AND running.status = 'doing')"
)
_WORKERS_SQL = text(
    "SELECT count(*) FROM procrastinate_workers "
    "WHERE last_heartbeat > now() - make_interval(secs => :alive)"
)


class QueueMetrics:
    def __init__(self, database: Database, registry: CollectorRegistry) -> None:
        self.database = database
        self.depth = Gauge(
            "slide_analysis_queue_depth",
            "Analysis jobs waiting (todo) and running (doing)",
            ["status"],
            registry=registry,
        )
        self.oldest = Gauge(
            "slide_analysis_oldest_queued_seconds",
            "Age of the oldest analysis job a worker could take now (0 when none waits); "
            "one behind its user's running analysis is not counted",
            registry=registry,
        )
        self.workers = Gauge(
            "slide_analysis_workers",
            "Analysis workers with a heartbeat in the last minute",
            registry=registry,
        )
        for status in ("todo", "doing"):
            self.depth.labels(status).set(0)

    async def refresh(self) -> None:
        async with self.database.sessions() as session:
            counts = {
                row.status: row.jobs
                for row in (await session.execute(_QUEUE_SQL, {"queue": QUEUE})).all()
            }
            oldest = await session.scalar(_OLDEST_SQL, {"queue": QUEUE})
            workers = await session.scalar(_WORKERS_SQL, {"alive": WORKER_ALIVE_S})
        for status in ("todo", "doing"):
            self.depth.labels(status).set(counts.get(status, 0))
        self.oldest.set(float(oldest or 0))
        self.workers.set(workers or 0)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the database away: /ready says so; next round
                logger.debug("queue metrics not refreshed: %s", type(exc).__name__)
            await asyncio.sleep(REFRESH_S)
