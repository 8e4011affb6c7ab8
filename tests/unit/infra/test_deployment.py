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
from slide_service.settings import SlideSettings
from tests.unit.test_configuration import env_names

BIN = Path(sys.executable).parent
SECRETS = {
    "POSTGRES_PASSWORD": "pg",
    "AUTH_DB_PASSWORD": "a",
    "INFERENCE_DB_PASSWORD": "i",
    "DATA_DB_PASSWORD": "d",
    "AUTH_RUNTIME_DB_PASSWORD": "auth-runtime-secret",
    "INFERENCE_RUNTIME_DB_PASSWORD": "inference-runtime-secret",
    "DATA_RUNTIME_DB_PASSWORD": "data-runtime-secret",
    "SLIDES_DB_PASSWORD": "s",
    "SLIDES_RUNTIME_DB_PASSWORD": "slides-runtime-secret",
    "SLIDE_VIEW_LINK_SECRET": "view-link-secret-" + "x" * 32,
    "GRAFANA_ADMIN_PASSWORD": "g",
}
# compose service -> (settings class, folder with its Dockerfile, extra of pyproject.toml)
COMPONENTS = {
    "gateway": (GatewaySettings, "gateway", "gateway"),
    "auth": (AuthSettings, "auth_service", "auth"),
    "inference": (InferenceSettings, "inference_service", "inference"),
    "data": (DataSettings, "data_service", "data"),
    "slides": (SlideSettings, "slide_service", "slides"),
    "frontend": (FrontendSettings, "frontend", "frontend"),
}
PUBLISHING = {"gateway", "frontend", "prometheus", "grafana"}
# The compose services with a database of their own (named as the service), migrated first.
WITH_DATABASE = ("auth", "inference", "data", "slides")


def env_prefix(name: str) -> str:
    return COMPONENTS[name][0].model_config["env_prefix"]


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
    for name in ("DATA_RUNTIME_DB_PASSWORD", "SLIDES_DB_PASSWORD", "SLIDE_VIEW_LINK_SECRET"):
        checked = compose("config", "-q", env={k: v for k, v in SECRETS.items() if k != name})
        assert checked.returncode != 0 and name in checked.stderr, name


def test_only_the_entry_points_publish_ports(services):
    assert {name for name, s in services.items() if s.get("ports")} == PUBLISHING
    for name in ("prometheus", "grafana"):  # for operators on the host, not the world
        assert all(p.get("host_ip") == "127.0.0.1" for p in services[name]["ports"])
    assert services["ngrok"]["profiles"] == ["tunnel"]


def test_each_service_waits_for_its_migration_and_dependencies_to_be_healthy(services):
    for name in WITH_DATABASE:
        depends = services[name]["depends_on"]
        assert depends[f"{name}-migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert services[f"{name}-migrate"]["depends_on"]["postgres"]["condition"] == (
            "service_healthy"
        )
    for name, upstream in (
        ("gateway", ("auth", "inference", "data", "slides")),
        ("frontend", ("gateway",)),
    ):
        depends = services[name]["depends_on"]
        assert {u: depends[u]["condition"] for u in upstream} == dict.fromkeys(
            upstream, "service_healthy"
        )


def test_each_service_runs_as_its_runtime_login_and_migrates_as_the_owner(services):
    for name in WITH_DATABASE:
        prefix = env_prefix(name)  # of its settings; the passwords are named for the database
        owner_password = SECRETS[f"{name.upper()}_DB_PASSWORD"]
        running = services[name]["environment"]
        runtime_password = SECRETS[f"{name.upper()}_RUNTIME_DB_PASSWORD"]
        assert running[f"{prefix}DATABASE_URL"] == (
            f"postgresql://{name}_runtime:{runtime_password}@postgres:5432/{name}"
        )
        # The owner's login stays with the migration step: the service never sees it.
        assert f"{prefix}MIGRATION_DATABASE_URL" not in running
        assert not any(f"{name}:{owner_password}@" in v for v in running.values())
        migrating = services[f"{name}-migrate"]["environment"]
        assert migrating[f"{prefix}MIGRATION_DATABASE_URL"] == (
            f"postgresql://{name}:{owner_password}@postgres:5432/{name}"
        )
        # Names the login to grant; its password is not needed there.
        assert (
            migrating[f"{prefix}DATABASE_URL"]
            == f"postgresql://{name}_runtime@postgres:5432/{name}"
        )


def test_the_postgres_init_script_makes_the_database_and_logins_of_each_service(services):
    script = (ROOT / "infra" / "postgres" / "init" / "01-databases.sh").read_text()
    (loop,) = re.findall(r"^for service in ([\w ]+); do$", script, re.MULTILINE)
    assert tuple(loop.split()) == WITH_DATABASE
    given = services["postgres"]["environment"]
    for name in WITH_DATABASE:
        for variable in (f"{name.upper()}_DB_PASSWORD", f"{name.upper()}_RUNTIME_DB_PASSWORD"):
            assert given[variable] == SECRETS[variable], variable


def test_only_the_slide_service_gets_the_view_link_key(services):
    secret = SECRETS["SLIDE_VIEW_LINK_SECRET"]
    holders = {n for n, s in services.items() if secret in json.dumps(s.get("environment") or {})}
    assert holders == {"slides"}
    assert services["slides"]["environment"]["SLIDE_VIEW_LINK_SECRET"] == secret
    # Production: the service refuses the development key when the variable is missing or short.
    assert services["slides"]["environment"]["SLIDE_ENVIRONMENT"] == "production"


def secrets_written_into_read_only_roots(config: dict) -> list[tuple[str, str]]:
    """(service, secret) pairs compose would copy into a read-only root filesystem.

    Compose writes a secret defined by `environment:` (or `content:`) into the container, which
    fails on a read-only root (docker/compose#12303); only `file:` secrets are bind-mounted.
    """
    defined = config.get("secrets") or {}
    found = []
    for name, service in config["services"].items():
        if not service.get("read_only"):
            continue
        for entry in service.get("secrets") or []:
            source = entry if isinstance(entry, str) else entry["source"]
            if "file" not in defined.get(source, {}):
                found.append((name, source))
    return found


def test_no_read_only_container_gets_a_secret_compose_must_write_into_it():
    rendered = compose("config", "--format", "json", env=SECRETS)
    assert rendered.returncode == 0, rendered.stderr
    assert secrets_written_into_read_only_roots(json.loads(rendered.stdout)) == []
    # The check catches the combination that kept the slide service from starting.
    broken = {
        "services": {"slides": {"read_only": True, "secrets": [{"source": "key"}]}},
        "secrets": {"key": {"environment": "SLIDE_VIEW_LINK_SECRET"}},
    }
    assert secrets_written_into_read_only_roots(broken) == [("slides", "key")]
    broken["secrets"]["key"] = {"file": "./key.txt"}
    assert secrets_written_into_read_only_roots(broken) == []


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
    for name in WITH_DATABASE:
        package = COMPONENTS[name][1]
        command = " ".join(services[f"{name}-migrate"]["command"])
        assert f"python -m {package}.migrate upgrade" in command
        assert (ROOT / package / "migrate.py").is_file()


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


def test_the_images_workflow_builds_each_component_from_its_own_dockerfile(tmp_path):
    images = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    (folder,) = [s for s in images["jobs"]["build"]["steps"] if s.get("id") == "folder"]
    for name, (_, directory, _) in COMPONENTS.items():
        output = tmp_path / f"{name}.out"
        script = folder["run"].replace("${{ matrix.component }}", name)
        subprocess.run(
            ["bash", "-euc", script], env={"GITHUB_OUTPUT": str(output)}, check=True, cwd=ROOT
        )
        assert output.read_text() == f"dockerfile={directory}/Dockerfile\n", name


def test_ci_has_node_before_make_installs_the_slide_viewer():
    """`make install` (behind lint, typecheck and test) runs npm for the viewer's bundle."""
    makefile = (ROOT / "Makefile").read_text()
    assert "npm ci --prefix $(VIEWER)" in makefile
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    for name, job in jobs.items():
        steps = job["steps"]
        installs = [
            i
            for i, step in enumerate(steps)
            if re.search(r"make (lint|typecheck|test|install)|\.ci/run", step.get("run", ""))
        ]
        if not installs:
            continue
        node = [i for i, s in enumerate(steps) if "actions/setup-node@" in s.get("uses", "")]
        assert node and node[0] < installs[0], name


def test_make_up_down_logs_wrap_compose():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(COMPOSE) up --build --detach --wait" in makefile
    assert "$(COMPOSE) down" in makefile and "$(COMPOSE) logs --follow" in makefile


# --- supply chain ----------------------------------------------------------------------

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKERFILES = [ROOT / folder / "Dockerfile" for _, folder, _ in COMPONENTS.values()]
# An image reference is pinned when it names its content: `name[:tag]@sha256:<64 hex>`.
PINNED_IMAGE = re.compile(r"^[\w./:-]+@sha256:[0-9a-f]{64}$")
# Referenced by tag only, and why (README, "Supply chain"): no digest of them could be checked
# when the others were pinned. Our own images (cds/...) are built here and tagged per commit.
UNPINNED_IMAGES = {
    "docker/dockerfile:1": "BuildKit's Dockerfile frontend, a moving tag by design",
    "ghcr.io/astral-sh/uv:0.13.9": "no published digest of it could be checked",
    "ngrok/ngrok:3": "no published digest of it could be checked",
    "node:20-slim": "the frontend's build stage only (npm ci of the viewer); no digest checked",
}


def workflow_steps(path: Path) -> list[dict]:
    jobs = yaml.safe_load(path.read_text())["jobs"]
    return [step for job in jobs.values() for step in job.get("steps", [])]


def external_images() -> dict[str, str]:
    """Every image pulled from a registry -> where it is named."""
    found: dict[str, str] = {}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        where = str(dockerfile.relative_to(ROOT))
        for image in re.findall(r"^# syntax=(\S+)", text, re.MULTILINE):
            found[image] = where
        for image in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
            found[image] = where
        stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE))
        for image in set(re.findall(r"COPY\s+--from=(\S+)", text)) - stages:
            found[image] = where
    for path in WORKFLOWS:
        jobs = yaml.safe_load(path.read_text())["jobs"]
        for job in jobs.values():
            container = job.get("container")
            if container:
                found[container if isinstance(container, str) else container["image"]] = path.name
            for service in job.get("services", {}).values():
                found[service["image"]] = path.name
    compose_file = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose_file["services"].items():
        if "build" not in service:  # our own images are built from this repository
            found[service["image"]] = f"docker-compose.yml: {name}"
    return found


def test_every_action_is_pinned_by_a_full_commit_sha_with_its_tag_beside_it():
    uses = [(path, s["uses"]) for path in WORKFLOWS for s in workflow_steps(path) if "uses" in s]
    assert len(uses) >= 7, uses
    for path, action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path.name}: {action}"
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), f"{path.name}: {line}"


def test_every_pulled_image_is_pinned_by_digest_or_a_known_exception():
    images = external_images()
    # The ones that must be there, so a parser that finds nothing cannot pass.
    names = {image.split("@")[0] for image in images}
    assert {"python:3.11-slim", "postgres:16-alpine", "prom/prometheus:v3.5.0"} <= names
    for image, where in images.items():
        if image in UNPINNED_IMAGES:
            continue
        assert PINNED_IMAGE.match(image), f"{where}: {image} is not pinned by digest"
    # An exception that got pinned (or removed) leaves the list.
    assert set(UNPINNED_IMAGES) <= set(images)


def test_the_same_base_image_has_the_same_digest_everywhere():
    digests: dict[str, set[str]] = {}
    for image in external_images():
        name, _, digest = image.partition("@")
        digests.setdefault(name, set()).add(digest)
    assert {name: d for name, d in digests.items() if len(d) > 1} == {}


def test_dependabot_keeps_the_pins_fresh():
    config = ROOT / ".github" / "dependabot.yml"
    checked = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    updates = yaml.safe_load(config.read_text())["updates"]
    ecosystems = {u["package-ecosystem"]: u for u in updates}
    assert {"github-actions", "docker", "docker-compose"} <= set(ecosystems)
    folders = {f"/{dockerfile.parent.name}" for dockerfile in DOCKERFILES}
    assert set(ecosystems["docker"]["directories"]) == folders


def test_every_compose_container_is_read_only_without_capabilities(services):
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert "/tmp" in service.get("tmpfs", []), name
        if name != "postgres":
            assert not service.get("cap_add"), name
    # PostgreSQL's entrypoint gives its data folder to `postgres` as root, then switches user.
    assert set(services["postgres"]["cap_add"]) == {
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "SETGID",
        "SETUID",
    }
    assert "/var/run/postgresql" in services["postgres"]["tmpfs"]


def test_what_compose_containers_keep_is_on_volumes(services):
    """With a read-only root, state lives only on named volumes: the ones that hold data."""
    expected = {
        "postgres": "/var/lib/postgresql/data",
        "auth": "/var/lib/auth/keys",
        "data": "/data/images",
        "slides": "/data/slides",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
    }
    # Each store is where its service writes: uploads are renamed into place on that volume.
    assert services["data"]["environment"]["DATA_STORAGE_DIR"] == expected["data"]
    assert services["slides"]["environment"]["SLIDE_STORAGE_DIR"] == expected["slides"]
    for name, target in expected.items():
        volumes = {v["target"]: v for v in services[name].get("volumes", [])}
        assert volumes[target]["type"] == "volume", name
        assert not volumes[target].get("read_only"), name


def test_ci_audits_the_locked_dependencies_and_make_test_does_not():
    ci = ROOT / ".github" / "workflows" / "ci.yml"
    runs = [step.get("run", "") for step in workflow_steps(ci)]
    (audit,) = [run for run in runs if "pip-audit" in run]
    assert "uv export --frozen --all-extras" in audit
    assert "--requirement locked-requirements.txt" in audit and "--strict" in audit
    # The advisory database is not reachable offline: the local suite never calls it.
    for path in (ROOT / "Makefile", ROOT / ".ci" / "run", ROOT / "pyproject.toml"):
        assert "pip-audit" not in path.read_text(), path


# --- slide-analysis workers --------------------------------------------------------------

WORKER = "slide-worker"
WORKER_KEYS = "slide-worker-keys"


def mount_of(service: dict, path: str) -> dict:
    """The volume whose mount holds `path` (a file in it, or the folder itself)."""
    (mount,) = [
        v
        for v in service.get("volumes", [])
        if path == v["target"] or path.startswith(v["target"] + "/")
    ]
    return mount


def test_the_slide_worker_scales_with_compose(services):
    """`docker compose up --scale slide-worker=N`: nothing in the service may be one of a kind."""
    worker = services[WORKER]
    assert "container_name" not in worker  # compose refuses to scale a named container
    assert not worker.get("ports")  # one host port cannot be bound N times
    assert not any((net or {}).get("ipv4_address") for net in worker["networks"].values())
    assert worker["command"] == ["python", "-m", "slide_service.worker"]
    # The slide service's image, built the same way.
    assert worker["image"] == services["slides"]["image"]
    assert worker["build"] == services["slides"]["build"]


def test_the_slide_worker_reads_the_slides_and_the_queue_of_the_slide_service(services):
    worker, slides = services[WORKER], services["slides"]
    env = worker["environment"]
    # The queue's tables are in the slides database, reached as its runtime login.
    assert env["SLIDE_DATABASE_URL"] == slides["environment"]["SLIDE_DATABASE_URL"]
    assert "slides_runtime:" in env["SLIDE_DATABASE_URL"]
    assert env["SLIDE_STORAGE_DIR"] == slides["environment"]["SLIDE_STORAGE_DIR"]
    store = mount_of(worker, env["SLIDE_STORAGE_DIR"])
    assert store["source"] == mount_of(slides, env["SLIDE_STORAGE_DIR"])["source"]
    assert store["target"] == env["SLIDE_STORAGE_DIR"]
    assert store["read_only"] is True  # a worker never changes a slide file
    inference_port = InferenceSettings.model_fields["port"].default
    assert env["SLIDE_INFERENCE_URL"] == f"http://inference:{inference_port}"
    # On the network of the database and of inference, and nothing public.
    for peer in ("postgres", "inference"):
        assert set(worker["networks"]) & set(services[peer]["networks"]), peer
    assert set(worker["networks"]) == {"internal"}
    # Not the owner's login (the migration's), nor the slide service's view-link key.
    assert f"slides:{SECRETS['SLIDES_DB_PASSWORD']}@" not in json.dumps(env)
    assert "SLIDE_VIEW_LINK_SECRET" not in env
    depends = {name: d["condition"] for name, d in worker["depends_on"].items()}
    assert depends == {
        "postgres": "service_healthy",
        "slides-migrate": "service_completed_successfully",
        WORKER_KEYS: "service_completed_successfully",
        "inference": "service_healthy",
    }
    check = " ".join(worker["healthcheck"]["test"])
    assert "http://127.0.0.1:9103/metrics" in check  # the worker's metrics, not the API's port


def test_the_slide_worker_key_pair_is_made_once_and_split(services):
    keys = services[WORKER_KEYS]
    command = keys["command"]
    assert command[:4] == ["python", "-m", "common.service_tokens", "ensure"]
    private, public = command[4:]
    assert keys["restart"] == "no" and keys["network_mode"] == "none"
    assert keys["image"] == services["slides"]["image"]
    private_volume = mount_of(keys, private)["source"]
    public_volume = mount_of(keys, public)["source"]
    assert private_volume != public_volume
    # The worker signs with the private key, from its volume, read-only.
    worker = services[WORKER]
    signing = worker["environment"]["SLIDE_WORKER_SIGNING_KEY_FILE"]
    assert signing == private
    assert mount_of(worker, signing)["source"] == private_volume
    assert mount_of(worker, signing)["read_only"] is True
    # Inference checks with the public key, and never sees the private one.
    inference = services["inference"]
    checking = inference["environment"]["INFERENCE_SLIDE_WORKER_PUBLIC_KEY_FILE"]
    assert checking == public
    assert mount_of(inference, checking)["source"] == public_volume
    assert mount_of(inference, checking)["read_only"] is True
    holders = {
        n
        for n, s in services.items()
        for v in s.get("volumes", [])
        if v.get("source") == private_volume
    }
    assert holders == {WORKER_KEYS, WORKER}
    assert inference["depends_on"][WORKER_KEYS]["condition"] == "service_completed_successfully"
    # The image makes the volumes' mount points, owned by its user, so the one-shot service
    # (not root) can write the keys into fresh volumes.
    dockerfile = (ROOT / "slide_service" / "Dockerfile").read_text()
    for folder in {private.rpartition("/")[0], public.rpartition("/")[0]}:
        assert folder in dockerfile, folder
    assert "chown 10001 /var/lib/slide-worker/keys /var/lib/slide-worker/public" in dockerfile


def test_the_slide_worker_sets_only_variables_the_slide_service_reads(services):
    variables = env_names(SlideSettings)
    for variable in services[WORKER]["environment"]:
        assert variable in variables, f"{WORKER}: SlideSettings has no {variable}"
