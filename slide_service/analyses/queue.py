"""The analysis job queue: procrastinate on the slide service's own PostgreSQL database.

Why procrastinate: the jobs live in the database that already holds the analyses, so `make
run` needs no new server, a job and its analysis are backed up together, and the queue is
as durable as PostgreSQL is. It gives what the workers need without home-made code: retries
with exponential backoff (`RetryStrategy`), locks (one running analysis per user), job
cancellation and abort of a running job, and worker heartbeats, from which a job whose
worker died is found and handed to another (`get_stalled_jobs` / `retry_job`).
Celery or Dramatiq would need Redis or RabbitMQ beside PostgreSQL, and their at-least-once
delivery would still need the checkpoints the runner keeps here."""

from collections.abc import Callable

import psycopg_pool
from procrastinate import App, PsycopgConnector, RetryStrategy
from sqlalchemy.engine import make_url

QUEUE = "slide-analyses"
TASK = "slide_service.analyses.analyse_slide"
# Attempts of a job before it fails; the waits between them grow as 10 s * 2^n.
MAX_ATTEMPTS = 6
RETRY_BASE_S = 10


class TransientFailure(Exception):
    """A failure that may pass (a service or the database away): the job tries again later."""


RETRY = RetryStrategy(
    max_attempts=MAX_ATTEMPTS,
    exponential_wait=RETRY_BASE_S,
    retry_exceptions={TransientFailure},
)


def conninfo(database_url: str) -> str:
    """psycopg's connection string from the service's SQLAlchemy-style URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def user_lock(user_id: str) -> str:
    """One running analysis per user: procrastinate runs no two jobs with the same lock at
    once, and leaves the others waiting in order."""
    return f"analyses-of-user-{user_id}"


def create_queue_app(database_url: str, register: Callable[[App], None] | None = None) -> App:
    """The procrastinate app. The API only defers and cancels (no task function needed);
    the worker passes `register` to add the task itself."""
    app = App(
        connector=PsycopgConnector(conninfo=conninfo(database_url), min_size=1, max_size=4),
        import_paths=[],
    )
    if register is not None:
        register(app)
    return app


async def open_without_waiting(app: App, database_url: str) -> psycopg_pool.AsyncConnectionPool:
    """Open the app on a pool that connects in the background: the API starts (and its /ready
    says the database is away) even when the database is not there yet, where procrastinate's
    own pool would wait for it and fail the start after 30 s. The caller closes the pool."""
    pool = psycopg_pool.AsyncConnectionPool(
        conninfo(database_url),
        min_size=1,
        max_size=4,
        open=False,
        # Each connection is tried before it is lent, as procrastinate's own pool does: after
        # a restart of PostgreSQL the pool still holds connections to the old server.
        check=psycopg_pool.AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=False)
    await app.open_async(pool)
    return pool


async def defer(app: App, analysis_id: str, user_id: str) -> int:
    """Put the analysis on the queue; the job's id."""
    return await app.configure_task(TASK, queue=QUEUE, lock=user_lock(user_id)).defer_async(
        analysis_id=analysis_id
    )


async def cancel(app: App, job_id: int) -> None:
    """Cancel a waiting job; ask the worker running it to abort."""
    await app.job_manager.cancel_job_by_id_async(job_id, abort=True)
