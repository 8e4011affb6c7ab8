"""What cannot run here (no Docker engine, no GitHub runner), checked offline with the tools
that read it: the compose file with Compose itself, the Dockerfiles with hadolint, the
workflows with actionlint and GitHub's schema; and that compose, Dockerfiles and the
services' settings name the same ports and variables (no drift)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from auth_service.settings import AuthSettings
from data_service.settings import DataSettings
from devstack import ROOT
from frontend.config.settings import FrontendSettings
from gateway.settings import GatewaySettings
from inference_service.settings import InferenceSettings
from tests.unit.test_configuration import env_names

BIN = Path(sys.executable).parent
SECRETS = {
    "POSTGRES_PASSWORD": "pg",
    "AUTH_DB_PASSWORD": "a",
    "INFERENCE_DB_PASSWORD": "i",
    "DATA_DB_PASSWORD": "d",
    "GRAFANA_ADMIN_PASSWORD": "g",
}
# compose service -> (settings class, folder with its Dockerfile, extra of pyproject.toml)
COMPONENTS = {
    "gateway": (GatewaySettings, "gateway", "gateway"),
    "auth": (AuthSettings, "auth_service", "auth"),
    "inference": (InferenceSettings, "inference_service", "inference"),
    "data": (DataSettings, "data_service", "data"),
    "frontend": (FrontendSettings, "frontend", "frontend"),
}
PUBLISHING = {"gateway", "frontend", "prometheus", "grafana"}


def tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is installed by `make install` (dev extra)"
    return str(path)


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [tool("docker-compose"), "--project-directory", str(ROOT), *args],
        cwd=ROOT,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def services() -> dict:
    rendered = compose("--profile", "tunnel", "config", "--format", "json", env=SECRETS)
    assert rendered.returncode == 0, rendered.stderr
    return json.loads(rendered.stdout)["services"]


def test_compose_file_is_valid():
    checked = compose("config", "-q", env=SECRETS)
    assert checked.returncode == 0, checked.stderr


def test_compose_refuses_to_start_without_the_database_passwords():
    checked = compose("config", "-q")
    assert checked.returncode != 0
    for name in ("POSTGRES_PASSWORD", "AUTH_DB_PASSWORD", "DATA_DB_PASSWORD"):
        assert name in checked.stderr


def test_only_the_entry_points_publish_ports(services):
    assert {name for name, s in services.items() if s.get("ports")} == PUBLISHING
    for name in ("prometheus", "grafana"):  # for operators on the host, not the world
        assert all(p.get("host_ip") == "127.0.0.1" for p in services[name]["ports"])
    assert services["ngrok"]["profiles"] == ["tunnel"]


def test_each_service_waits_for_its_migration_and_dependencies_to_be_healthy(services):
    for name in ("auth", "inference", "data"):
        depends = services[name]["depends_on"]
        assert depends[f"{name}-migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert services[f"{name}-migrate"]["depends_on"]["postgres"]["condition"] == (
            "service_healthy"
        )
    for name, upstream in (("gateway", ("auth", "inference", "data")), ("frontend", ("gateway",))):
        depends = services[name]["depends_on"]
        assert {u: depends[u]["condition"] for u in upstream} == dict.fromkeys(
            upstream, "service_healthy"
        )


def test_each_service_uses_its_own_database_login(services):
    for name in ("auth", "inference", "data"):
        for service in (name, f"{name}-migrate"):
            url = services[service]["environment"][f"{name.upper()}_DATABASE_URL"]
            assert url.startswith(f"postgresql://{name}:"), url
            assert url.endswith(f"@postgres:5432/{name}")


def test_compose_sets_only_variables_the_services_read(services):
    for name, (settings_class, _, _) in COMPONENTS.items():
        # With the names a field reads besides its prefixed one (REDIS_URL, OPENAI_API_KEY).
        variables = env_names(settings_class)
        for variable in services[name]["environment"]:
            assert variable in variables, f"{name} does not read {variable}"


def test_compose_ports_are_the_services_own(services):
    for name, (settings_class, _, _) in COMPONENTS.items():
        port = settings_class.model_fields["port"].default
        published = [p["target"] for p in services[name].get("ports", [])]
        assert published in ([], [port]), name
        prefix = settings_class.model_config["env_prefix"]
        # Whoever calls the service uses its own port.
        for other in services.values():
            for value in (other.get("environment") or {}).values():
                for host, called in re.findall(r"http://(\w+):(\d+)", value or ""):
                    if host == name:
                        assert int(called) == port, (name, value)
        assert f"{prefix}PORT" not in services[name]["environment"]  # the default is used


def test_migrations_run_the_services_own_migration_modules(services):
    for name in ("auth", "inference", "data"):
        command = " ".join(services[f"{name}-migrate"]["command"])
        assert f"python -m {name}_service.migrate upgrade" in command
        assert (ROOT / f"{name}_service" / "migrate.py").is_file()


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_each_dockerfile_passes_hadolint(name):
    dockerfile = ROOT / COMPONENTS[name][1] / "Dockerfile"
    linted = subprocess.run(
        [tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_each_image_installs_only_its_extra_runs_unprivileged_and_checks_health(name):
    settings_class, folder, extra = COMPONENTS[name]
    text = (ROOT / folder / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2  # a build stage and a slim runtime
    assert f"uv sync --frozen --no-install-project --extra {extra}\n" in text
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    port = settings_class.model_fields["port"].default
    assert f"EXPOSE {port}\n" in text
    assert "HEALTHCHECK" in text and f"127.0.0.1:{port}/" in text
    assert f'CMD ["python", "-m", "{folder}"]' in text  # what `make run` runs, too


def test_the_inference_image_takes_models_from_a_build_argument():
    text = (ROOT / "inference_service" / "Dockerfile").read_text()
    assert "ARG MODELS=models" in text and "COPY --chown=10001 ${MODELS} /models" in text
    assert "INFERENCE_MODELS_DIR=/models" in text


def test_the_build_context_leaves_out_data_local_models_and_secrets():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"var", ".env", "*.pem", ".git", ".venv", "**/secrets.env"} <= ignored


def test_model_files_are_tracked_with_git_lfs():
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.keras filter=lfs diff=lfs merge=lfs -text" in attributes


@pytest.mark.parametrize("workflow", sorted((ROOT / ".github" / "workflows").glob("*.yml")))
def test_workflows_pass_actionlint_and_githubs_schema(workflow):
    for command in (
        [tool("actionlint"), str(workflow)],
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
    ):
        checked = subprocess.run(command, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ci_runs_what_a_developer_runs():
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: .ci/run" in ci and "make lint" in ci and "make typecheck" in ci
    assert "exec make test" in (ROOT / ".ci" / "run").read_text()
    images = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    # YAML reads the `on:` key as True.
    assert images[True]["push"] == {"branches": ["main"]}  # every push to main, no path filter
    build = images["jobs"]["build"]
    assert build["strategy"]["matrix"]["component"] == list(COMPONENTS)
    checkout = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["lfs"] is True  # the model files themselves, not LFS pointers
    push = next(s for s in build["steps"] if "build-push-action" in s.get("uses", ""))
    assert push["with"]["tags"].splitlines() == [
        "${{ env.REPOSITORY }}:${{ github.sha }}",
        "${{ env.REPOSITORY }}:latest",
    ]


def test_make_up_down_logs_wrap_compose():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(COMPOSE) up --build --detach --wait" in makefile
    assert "$(COMPOSE) down" in makefile and "$(COMPOSE) logs --follow" in makefile
