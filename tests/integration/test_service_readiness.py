"""Every service with a database answers /health, /ready and /metrics against a real PostgreSQL,
and /ready follows the database going away and coming back."""

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from devstack.postgres import free_port, with_database
from tests.support.inference import copy_versions
from tests.support.services import DATABASE_SERVICES
from tests.support.tcp_proxy import TcpProxy

SERVICES = sorted(DATABASE_SERVICES)


@pytest.fixture
def build(trained_versions):
    def make(service, database_url, tmp_path):
        if service in ("data", "slides"):
            return DATABASE_SERVICES[service](database_url, storage_dir=tmp_path / "files")
        if service == "inference":  # ready only with a model version to serve
            models_dir = copy_versions(trained_versions, tmp_path / "models", ["tiny-a"])
            return DATABASE_SERVICES[service](database_url, models_dir=models_dir)
        return DATABASE_SERVICES[service](database_url)

    return make


def wait_for_status(client, status, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/ready")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.mark.parametrize("service", SERVICES)
def test_health_ready_and_metrics(service, migrated_database_url, tmp_path, build):
    app = build(service, migrated_database_url(service), tmp_path)
    with TestClient(app) as client:
        health = client.get("/health")
        ready = client.get("/ready")
        metrics = client.get("/metrics")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": service}
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["status"] == "up"
    assert metrics.status_code == 200
    assert 'http_requests_total{handler="/ready",method="GET",status="200"} 1.0' in metrics.text


@pytest.mark.parametrize("service", SERVICES)
def test_ready_follows_the_database_down_and_back(service, migrated_database_url, tmp_path, build):
    real = make_url(migrated_database_url(service))
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432).start()
    through_proxy = real.set(host="127.0.0.1", port=proxy.port)
    app = build(service, through_proxy.render_as_string(hide_password=False), tmp_path)
    try:
        with TestClient(app) as client:
            assert client.get("/ready").status_code == 200

            proxy.stop()
            down = wait_for_status(client, 503)
            assert down.status_code == 503
            body = down.json()
            assert body["checks"]["database"]["status"] == "down"
            assert body["checks"]["database"]["reason"]
            assert body["error"]["code"] == "not_ready"
            assert "database" in body["error"]["message"]
            assert client.get("/health").status_code == 200  # the process itself is fine

            proxy.start()
            assert wait_for_status(client, 200).status_code == 200
    finally:
        proxy.stop()


@pytest.mark.parametrize("service", SERVICES)
def test_ready_is_503_when_the_database_does_not_exist(service, pg_server_url, tmp_path, build):
    missing = with_database(pg_server_url, "test_database_that_was_never_created")
    with TestClient(build(service, missing, tmp_path)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert "test_database_that_was_never_created" in response.json()["checks"]["database"]["reason"]


def test_ready_is_503_when_nothing_listens_at_the_database_address(tmp_path, build):
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/auth"
    with TestClient(build("auth", unreachable, tmp_path)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["status"] == "down"


@pytest.mark.parametrize("service", ["data", "slides"])
def test_service_is_not_ready_when_its_file_storage_is_unusable(
    service, migrated_database_url, tmp_path
):
    not_a_folder = tmp_path / "occupied"
    not_a_folder.write_text("a file where the storage folder should be")
    app = DATABASE_SERVICES[service](migrated_database_url(service), storage_dir=not_a_folder)
    with TestClient(app) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "up"
    assert checks["storage"]["status"] == "down"
