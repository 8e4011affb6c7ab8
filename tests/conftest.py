"""Fixtures shared by the whole suite: a real PostgreSQL server and fresh databases on it.

The server is `TEST_DATABASE_URL` when set, else the one on 127.0.0.1:5432 when it answers,
else a testcontainers PostgreSQL where a Docker engine runs, else the same private server
`make run` would start. Every database a test session creates is dropped at its end.
"""

import asyncio
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from common.migrations import drop_database, ensure_database, upgrade
from devstack import ROOT
from devstack.postgres import (
    LOCAL_SERVER_URL,
    drop_login,
    runtime_login_name,
    server_answers,
    with_database,
)
from tests.support.private_postgres import running_private_postgres

# Tokens are made where they are used, never while the test modules are imported.
pytest_plugins = ["tests.support.token_guard"]

SERVICE_DIRS = {
    "auth": ROOT / "auth_service",
    "inference": ROOT / "inference_service",
    "data": ROOT / "data_service",
    "slides": ROOT / "slide_service",
}


# Packages whose tests share one launched stack (package-scoped fixtures): each runs on one
# worker under `pytest -n` (`make test`), so that its stack starts once.
STACK_PACKAGES = {"browser", "e2e", "security", "reliability"}
# Modules of those packages that start a stack of their own (other settings) and need not
# wait behind the package's: their own group, free to run on the other worker.
OWN_STACK_MODULES = {"e2e/test_gateway.py"}


def worker_group(test_file: Path, fixture_names: Iterable[str] = ()) -> str:
    """The `--dist loadgroup` group of a test: a worker takes a whole group, so what a group's
    tests share (a stack, the trained test versions, a module's fixtures) is made once."""
    parts = test_file.relative_to(ROOT / "tests").parts
    if parts[0] in STACK_PACKAGES and "/".join(parts) not in OWN_STACK_MODULES:
        return parts[0]
    if "trained_versions" in fixture_names:
        return "trained_versions"
    return "/".join(parts)


# First: pytest-xdist reads the groups in its own hook of the same name, and a group added
# after it has run is silently ignored (the tests then spread over both workers, and each
# starts the package's stack again). tests/unit/test_worker_groups.py keeps it so.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        group = worker_group(Path(item.path), getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.xdist_group(group))


def _docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
    elif server_answers(LOCAL_SERVER_URL):
        yield LOCAL_SERVER_URL
    elif _docker_engine_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
    else:
        with running_private_postgres("cds-test-pg-") as server:
            yield server.url


@pytest.fixture(scope="session")
def new_database_url(pg_server_url: str) -> Iterator[Callable[[str], str]]:
    """Make URLs of uniquely named databases; whatever of them exists at the end is dropped."""
    made: list[str] = []

    def make(prefix: str) -> str:
        url = with_database(pg_server_url, f"test_{prefix}_{uuid.uuid4().hex[:10]}")
        made.append(url)
        return url

    yield make
    for url in made:
        asyncio.run(drop_database(url))
        # The login a launched stack made to serve it (devstack.stack.separate_runtime_login).
        asyncio.run(drop_login(url, runtime_login_name(url)))


@pytest.fixture(scope="session")
def migrated_database_url(new_database_url: Callable[[str], str]) -> Callable[[str], str]:
    """A fresh, fully migrated database for one service (a key of SERVICE_DIRS)."""

    def make(service: str) -> str:
        url = new_database_url(service)
        upgrade(SERVICE_DIRS[service], url)
        return url

    return make


@pytest.fixture(scope="session")
def created_database_url(new_database_url: Callable[[str], str]) -> Callable[[str], str]:
    """A fresh, empty database."""

    def make(prefix: str) -> str:
        url = new_database_url(prefix)
        asyncio.run(ensure_database(url))
        return url

    return make


@pytest.fixture(scope="session")
def trained_versions(tmp_path_factory):
    """Two small trained versions, 'tiny-a' and 'tiny-b', made once per session."""
    root = tmp_path_factory.mktemp("inference-models")
    from tests.support.inference import train_tiny_versions

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        return train_tiny_versions(root, ("tiny-a", "tiny-b"))
