"""The whole stack as `make run` starts it: real processes under supervisord, real PostgreSQL."""

import json
import socket
import uuid
from pathlib import Path

import pytest
from dotenv import dotenv_values
from streamlit.testing.v1 import AppTest

from devstack import ROOT
from devstack.launcher import (
    BANNER_LAST_LINE,
    LaunchedStack,
    StackDidNotStart,
    processes_with_env,
)
from frontend.config.settings import get_settings
from tests.support.launcher import RESTART_TIMEOUT_S, get, stack_database_urls, wait_for
from tests.support.sql import fetch

pytestmark = pytest.mark.timeout(600)


def ready_status(stack: LaunchedStack) -> int | None:
    response = get(f"{stack.url('gateway')}/ready")
    return response.status_code if response is not None else None


def test_gateway_reports_every_downstream_ready(stack):
    response = get(f"{stack.url('gateway')}/ready")
    assert response is not None and response.status_code == 200, stack.output()
    checks = response.json()["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "auth": "up",
        "inference": "up",
        "data": "up",
        "slides": "up",
    }


def test_every_service_answers_health_ready_and_metrics(stack):
    for name in ("auth", "inference", "data", "slides", "gateway"):
        for path in ("/health", "/ready", "/metrics"):
            response = get(f"{stack.url(name)}{path}")
            assert response is not None and response.status_code == 200, (name, path)
    assert "process_resident_memory_bytes" in get(f"{stack.url('data')}/metrics").text


def test_request_id_sent_to_gateway_appears_in_downstream_logs(stack):
    request_id = f"e2e-{uuid.uuid4().hex}"
    response = get(f"{stack.url('gateway')}/ready", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    for name in ("auth", "inference", "data", "slides"):
        wait_for(
            lambda name=name: request_id in stack.log(name), 30, f"the request id in {name}.log"
        )
    line = next(ln for ln in stack.log("auth").splitlines() if request_id in ln)
    assert '"service": "auth"' in line and '"path": "/ready"' in line


def about_page(gateway_url: str) -> None:
    from frontend.components.about import render_about
    from frontend.utils.gateway_client import GatewayClient

    render_about(GatewayClient(gateway_url))


def test_frontend_is_served_and_signs_in_through_the_gateway(stack, monkeypatch):
    health = get(f"{stack.url('frontend')}/_stcore/health")
    assert health is not None and health.text == "ok"
    monkeypatch.setenv("FRONTEND_GATEWAY_URL", stack.url("gateway"))
    get_settings.cache_clear()
    credentials = dotenv_values(stack.var_dir / "admin-credentials.env")
    app = AppTest.from_file(str(ROOT / "frontend" / "app.py"), default_timeout=30)
    app.run()
    app.text_input[0].input(credentials["ADMIN_EMAIL"])
    app.text_input[1].input(credentials["ADMIN_PASSWORD"])
    app.button[0].click().run()
    get_settings.cache_clear()
    assert not app.exception
    assert [h.value for h in app.header] == ["Analyse images"]

    about = AppTest.from_function(about_page, args=(stack.url("gateway"),), default_timeout=30)
    about.run()
    assert [s.value for s in about.success] == ["All services are ready."]
    assert [m.value for m in about.metric] == ["ready"] * 4  # auth, inference, data, slides


def test_stopping_a_service_makes_the_gateway_report_it_down_then_recover(stack):
    stopped = stack.supervisorctl("stop", "inference")
    assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    try:
        wait_for(lambda: ready_status(stack) == 503, 30, "/ready to answer 503 with inference down")
        body = get(f"{stack.url('gateway')}/ready").json()
        assert body["checks"]["inference"]["status"] == "down"
        # Why is for the logs: the public answer names the component, not the error text.
        assert "reason" not in body["checks"]["inference"]
        wait_for(lambda: "unreachable" in stack.log("gateway"), 30, "the reason in gateway.log")
        assert body["checks"]["auth"]["status"] == "up"
        assert "inference" in body["error"]["message"]
    finally:
        started = stack.supervisorctl("start", "inference")
    assert "started" in started.stdout, started.stdout + started.stderr
    wait_for(
        lambda: ready_status(stack) == 200,
        RESTART_TIMEOUT_S,
        "/ready to answer 200 after inference restarted",
    )


def test_ctrl_c_stops_everything_and_a_second_run_keeps_the_data(stack, database_urls):
    reference = f"E2E-{uuid.uuid4().hex[:8]}"
    fetch(
        database_urls["data"],
        "INSERT INTO patients (id, external_ref) VALUES ($1, $2)",
        uuid.uuid4(),
        reference,
    )
    assert stack.interrupt() == 0
    assert stack.output().rstrip().endswith("[devstack] stopped")
    assert not stack.ready_file.exists()  # a stopped stack does not claim to be ready
    for name in stack.ports:
        assert get(f"{stack.url(name)}/health") is None, f"{name} still answers"
    assert stack.leftover_pids() == []

    # `make run` again, in the same folder: the package's later tests use this second run.
    stack.start()
    assert ready_status(stack) == 200
    rows = fetch(
        database_urls["data"],
        "SELECT external_ref FROM patients WHERE external_ref = $1",
        reference,
    )
    assert [row["external_ref"] for row in rows] == [reference]
    assert stack.output().count(BANNER_LAST_LINE) == 2
    ready = json.loads(stack.ready_file.read_text())
    assert ready["launcher_pid"] == stack.process.pid
    assert ready["urls"]["gateway"] == stack.url("gateway")


def test_make_run_bootstrapped_the_demo_model(stack):
    folder = stack.models_dir / "demo-synthetic-1"
    card = json.loads((folder / "model_card.json").read_text())
    shipped = ROOT / "models" / "demo-synthetic-1"
    # The shipped version, copied: nothing was trained.
    assert (folder / "model.keras").read_bytes() == (shipped / "model.keras").read_bytes()
    assert card["input"]["size"] == [128, 128, 3]
    assert card["training_data"]["synthetic"] is True
    assert "not a medical device" in card["warning"]
    assert "[demo model] copied the shipped demo model" in stack.output()
    assert "training" not in stack.output()


def test_a_stack_that_cannot_start_says_which_process_and_leaves_nothing_behind(
    new_database_url, pg_server_url
):
    urls = stack_database_urls(new_database_url, "e2e_broken")
    # No Prometheus: what is tested is how a service that cannot start is reported.
    broken = LaunchedStack(urls, pg_server_url, {"DEVSTACK_PROMETHEUS": "no-prometheus-here"})
    # Its port is taken: the gateway exits at every start until the launcher gives up on it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", broken.ports["gateway"]))
        taken.listen()
        with pytest.raises(StackDidNotStart) as failure:
            broken.start()
    message = str(failure.value)
    assert "[devstack] gateway failed to start (" in message
    assert "its last log lines:" in message
    assert "address already in use" in message  # the service's own words, from its log
    assert "[devstack] stopped" in message
    assert broken.leftover_pids() == []
    for name in broken.ports:
        assert get(f"{broken.url(name)}/health") is None, f"{name} still answers"
    assert not broken.var_dir.exists()


def test_the_services_run_as_their_own_runtime_logins(stack, database_urls):
    """`make run` serves each database as `<database>_runtime`: no superuser, no owner, and on
    the audit events only INSERT and SELECT. Seen from the server: who is connected."""
    response = get(f"{stack.url('gateway')}/ready")  # every service queries its database
    assert response is not None and response.status_code == 200, stack.output()
    for name, url in database_urls.items():
        database = url.rsplit("/", 1)[1]
        role = f"{database}_runtime"

        def connected(url=url, database=database) -> set[str]:
            rows = fetch(
                url,
                "SELECT DISTINCT usename::text AS login FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            return {row["login"] for row in rows}

        assert wait_for(connected, 30, f"{name}'s connections to {database}") == {role}, name
        (login,) = fetch(url, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", role)
        assert login["rolsuper"] is False
        owners = fetch(
            url, "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'"
        )
        assert role not in {row["tableowner"] for row in owners}, name
    (audit,) = fetch(
        database_urls["data"],
        "SELECT has_table_privilege($1, 'audit_events', 'INSERT') AS adds, "
        "has_table_privilege($1, 'audit_events', 'UPDATE') AS changes, "
        "has_table_privilege($1, 'audit_events', 'DELETE') AS removes, "
        "has_table_privilege($1, 'audit_events', 'TRUNCATE') AS truncates",
        f"{database_urls['data'].rsplit('/', 1)[1]}_runtime",
    )
    assert dict(audit) == {"adds": True, "changes": False, "removes": False, "truncates": False}


def test_the_data_service_process_has_the_runtime_login_and_not_the_owners(stack, database_urls):
    """What the launcher passed to the running data service: its environment, from /proc."""
    environments = []
    for pid in processes_with_env("DEVSTACK_VAR_DIR", str(stack.var_dir)):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        variables = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        environments.append((command, variables))
    (data,) = [env for command, env in environments if b"data_service" in command]
    database = database_urls["data"].rsplit("/", 1)[1]
    assert data["DATA_DATABASE_URL"].startswith(f"postgresql://{database}_runtime:")
    for _, variables in environments:
        assert not [k for k in variables if k.endswith("MIGRATION_DATABASE_URL")]
