"""The private PostgreSQL that `make run` and the test suite fall back to when no server answers."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from common.migrations import ensure_database
from devstack.postgres import (
    PrivatePostgres,
    free_port,
    resolve_server,
    server_answers,
    with_database,
)


@pytest.fixture
def base_dir():
    base = Path(tempfile.mkdtemp(prefix="cds-private-pg-"))
    base.chmod(0o755)  # as root, the server runs as an unprivileged user who must reach it
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_private_server_starts_serves_restarts_with_its_data_and_stops(base_dir):
    server = PrivatePostgres(base_dir, free_port())
    server.start()
    try:
        assert server.is_running()
        assert server_answers(server.url)
        assert asyncio.run(ensure_database(with_database(server.url, "kept")))

        server.stop()
        assert not server.is_running()
        assert not server_answers(server.url, timeout_s=1)

        server.start()  # same data folder: the database made before is still there
        assert asyncio.run(ensure_database(with_database(server.url, "kept"))) is False
        server.start()  # starting a running server is harmless
        assert server.is_running()
    finally:
        server.stop()


def test_resolve_server_prefers_database_url(base_dir):
    url, private = resolve_server({"DATABASE_URL": "postgresql://u:p@db.example:5432/x"}, base_dir)
    assert (url, private) == ("postgresql://u:p@db.example:5432/x", None)
