"""The Kubernetes manifests (infra/k8s) render, pass the API schemas, and agree with the code:
ports and variable names are the services' own settings, probes hit the real endpoints,
and no secret value lives in the base.

Offline: `kubectl kustomize` renders, `kubernetes-validate` checks the result against the
OpenAPI schemas of one Kubernetes version; no cluster is needed.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

from auth_service.settings import AuthSettings
from data_service.settings import DataSettings
from devstack import ROOT
from frontend.config.settings import FrontendSettings
from gateway.settings import GatewaySettings
from inference_service.settings import InferenceSettings
from slide_service.settings import SlideSettings

K8S = ROOT / "infra" / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
NAMESPACE = "cancer-detection"
# kubectl 1.32 ships Kustomize v5.5; validate against the same API version.
KUBERNETES_VERSION = "1.32.0"
VALIDATOR = str(Path(sys.executable).with_name("kubernetes-validate"))

# Component -> its settings, and the package whose `migrate` owns its database (if any).
COMPONENTS = {
    "auth": (AuthSettings, "auth_service"),
    "inference": (InferenceSettings, "inference_service"),
    "data": (DataSettings, "data_service"),
    "slides": (SlideSettings, "slide_service"),
    "gateway": (GatewaySettings, None),
    "frontend": (FrontendSettings, None),
}
DATABASE_OWNERS = [name for name, (_, package) in COMPONENTS.items() if package]
# Deployments that are not a service of their own: the component whose image and settings
# they run. The slide-analysis workers serve only metrics, and have no Service.
WORKERS = {"slide-worker": "slides"}
WORKER_METRICS_PORT = 9103  # SLIDE_WORKER_METRICS_PORT's default
WORKER_QUEUE_QUERY = (
    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'slide-analyses' "
    "AND status IN ('todo', 'doing')"
)
# KEDA's schemas for its kinds (v1alpha1 of release v2.20.1, the openAPIV3Schema of its CRDs
# without descriptions); kubernetes-validate knows only the built-in kinds.
KEDA_SCHEMAS = Path(__file__).with_name("schemas")
AUTOSCALED = {"gateway", "inference"}
UID = 10001  # the `app` user of every Dockerfile


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed; these tests render the manifests with `kubectl "
            "kustomize`. Install kubectl >= 1.27 (it bundles Kustomize v5): "
            "https://kubernetes.io/docs/tasks/tools/#kubectl, or `apt-get install kubectl` "
            "from the pkgs.k8s.io repository."
        )
    return path


def render(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return result.stdout


def parse(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def example_text() -> str:
    return render(EXAMPLE)


@pytest.fixture(scope="module")
def base_text() -> str:
    return render(BASE)


@pytest.fixture(scope="module")
def example(example_text: str) -> list[dict]:
    return parse(example_text)


@pytest.fixture(scope="module")
def base(base_text: str) -> list[dict]:
    return parse(base_text)


def of_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def generated(documents: list[dict], kind: str, name: str) -> dict:
    """A ConfigMap or Secret by its generator name (the rendered one has a hash suffix)."""
    matches = [
        d
        for d in documents
        if d["kind"] == kind and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", d["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one generated {kind} {name}, found {len(matches)}"
    return matches[0]


def env_names(settings_class) -> set[str]:
    """Every variable the settings class reads (a field with aliases has each of them)."""
    prefix = settings_class.model_config["env_prefix"]
    names = set()
    for name, field in settings_class.model_fields.items():
        names.update(
            getattr(field.validation_alias, "choices", None) or [f"{prefix}{name}".upper()]
        )
    return names


def main_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def all_containers(deployment: dict) -> list[dict]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def container_env(container: dict, documents: list[dict]) -> dict[str, str | None]:
    """Variable -> value (None when it comes from a Secret), from `env` and `envFrom`."""
    values: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            values.update(of_kind(documents, "ConfigMap")[name].get("data", {}))
        else:
            name = source["secretRef"]["name"]
            values.update(dict.fromkeys(of_kind(documents, "Secret")[name].get("data", {})))
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value")
    return values


def cpu(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory(quantity: str | int) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match[1]) * units.get(match[2] or "", 1)


# --- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["example", "base"])
def test_rendered_manifests_pass_the_api_schemas_strictly(which, request, tmp_path):
    rendered = tmp_path / f"{which}.yaml"
    rendered.write_text(request.getfixturevalue(f"{which}_text"))
    result = subprocess.run(
        [VALIDATOR, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validator_rejects_an_unknown_field(example_text, tmp_path):
    """--strict really is strict here: a misspelt field fails, it is not ignored."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(example_text.replace("readinessProbe:", "readinesProbe:", 1))
    result = subprocess.run(
        [VALIDATOR, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


# --- what is deployed ------------------------------------------------------------------


def settings_of(deployment: str):
    return COMPONENTS[WORKERS.get(deployment, deployment)][0]


def test_one_deployment_and_one_service_per_component(example):
    assert set(of_kind(example, "Deployment")) == set(COMPONENTS) | set(WORKERS)
    services = of_kind(example, "Service")
    assert set(services) == set(COMPONENTS)
    assert {s["spec"].get("type", "ClusterIP") for s in services.values()} == {"ClusterIP"}


def test_everything_is_in_the_namespace(example):
    assert set(of_kind(example, "Namespace")) == {NAMESPACE}
    for document in example:
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") == NAMESPACE, document["metadata"]


def test_services_select_their_deployments_pods(example):
    deployments = of_kind(example, "Deployment")
    for name, service in of_kind(example, "Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        assert deployments[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- ports and settings ----------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_ports_are_the_services_default_ports(example, component):
    default = COMPONENTS[component][0].model_fields["port"].default
    container = main_container(of_kind(example, "Deployment")[component])
    assert [p["containerPort"] for p in container["ports"]] == [default]
    port_name = container["ports"][0]["name"]
    (service_port,) = of_kind(example, "Service")[component]["spec"]["ports"]
    assert service_port["port"] == default
    assert service_port["targetPort"] in (default, port_name)


@pytest.mark.parametrize("component", [*COMPONENTS, *WORKERS])
def test_every_variable_is_a_setting_of_its_service(example, component):
    known = env_names(settings_of(component))
    for container in all_containers(of_kind(example, "Deployment")[component]):
        unknown = set(container_env(container, example)) - known
        assert not unknown, f"{component}/{container['name']} sets {sorted(unknown)}"


def test_services_find_each_other_by_their_service_names_and_ports(example):
    deployments = of_kind(example, "Deployment")

    def url(component: str) -> str:
        port = COMPONENTS[component][0].model_fields["port"].default
        return f"http://{component}:{port}"

    expected = {
        "gateway": {
            "GATEWAY_AUTH_URL": url("auth"),
            "GATEWAY_INFERENCE_URL": url("inference"),
            "GATEWAY_DATA_URL": url("data"),
            "GATEWAY_SLIDE_URL": url("slides"),
        },
        "inference": {"INFERENCE_AUTH_URL": url("auth")},
        "data": {"DATA_AUTH_URL": url("auth")},
        "slides": {"SLIDE_AUTH_URL": url("auth")},
        "frontend": {"FRONTEND_GATEWAY_URL": url("gateway")},
    }
    for component, variables in expected.items():
        env = container_env(main_container(deployments[component]), example)
        assert {name: env.get(name) for name in variables} == variables
    # Every process listens on all interfaces, or no probe or Service reaches it.
    for component, (settings_class, _) in COMPONENTS.items():
        prefix = settings_class.model_config["env_prefix"]
        env = container_env(main_container(deployments[component]), example)
        assert env.get(f"{prefix}HOST") == "0.0.0.0"


def test_secret_references_resolve_to_keys_of_the_same_name(example):
    secrets = of_kind(example, "Secret")
    for deployment in of_kind(example, "Deployment").values():
        for container in all_containers(deployment):
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference is None:
                    continue
                assert reference["key"] == variable["name"]
                assert reference["name"] in secrets
                if not reference.get("optional"):
                    assert reference["key"] in secrets[reference["name"]]["data"]


@pytest.mark.parametrize("component", DATABASE_OWNERS)
def test_database_urls_come_from_a_secret(example, component):
    prefix = COMPONENTS[component][0].model_config["env_prefix"]
    for container in all_containers(of_kind(example, "Deployment")[component]):
        (variable,) = [v for v in container["env"] if v["name"] == f"{prefix}DATABASE_URL"]
        assert "secretKeyRef" in variable["valueFrom"], container["name"]


def test_the_signing_key_and_admin_come_from_the_secret(example):
    auth = main_container(of_kind(example, "Deployment")["auth"])
    from_secret = {v["name"] for v in auth["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    assert {"AUTH_SIGNING_KEY", "AUTH_ADMIN_EMAIL", "AUTH_ADMIN_PASSWORD"} <= from_secret


def test_the_view_link_key_comes_from_the_secret_and_only_to_the_slide_service(example):
    holders = set()
    for name, deployment in of_kind(example, "Deployment").items():
        for container in all_containers(deployment):
            env = {v["name"]: v for v in container.get("env", [])}
            if "SLIDE_VIEW_LINK_SECRET" in env:
                assert "secretKeyRef" in env["SLIDE_VIEW_LINK_SECRET"]["valueFrom"]
                holders.add(f"{name}/{container['name']}")
    assert holders == {"slides/slides"}  # not the migration, not another service
    # Production: the development key is refused, so a missing or short key stops the pod.
    env = container_env(main_container(of_kind(example, "Deployment")["slides"]), example)
    assert env["SLIDE_ENVIRONMENT"] == "production"


# --- migrations ------------------------------------------------------------------------


@pytest.mark.parametrize("component", DATABASE_OWNERS)
def test_migrations_run_before_the_service_starts(example, component):
    deployment = of_kind(example, "Deployment")[component]
    init_containers = deployment["spec"]["template"]["spec"]["initContainers"]
    package = COMPONENTS[component][1]
    (migrate,) = init_containers
    assert migrate["command"] == ["python", "-m", f"{package}.migrate", "upgrade"]
    assert migrate["image"] == main_container(deployment)["image"]


def test_services_without_a_database_have_no_migration(example):
    for component in set(COMPONENTS) - set(DATABASE_OWNERS):
        spec = of_kind(example, "Deployment")[component]["spec"]["template"]["spec"]
        assert not spec.get("initContainers"), component


# --- probes, resources, security -------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_probes_hit_ready_and_health(example, component):
    container = main_container(of_kind(example, "Deployment")[component])
    ready, alive = {
        "frontend": ("/_stcore/health", "/_stcore/health"),
        # The gateway's /ready aggregates the downstreams: one of them down must not take
        # the whole API (and sign-in) out of the Service.
        "gateway": ("/health", "/health"),
    }.get(component, ("/ready", "/health"))
    port_names = {p["name"] for p in container["ports"]}
    port_numbers = {p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", ready), ("livenessProbe", alive)):
        assert probe in container, f"{component} has no {probe}"
        check = container[probe]["httpGet"]
        assert check["path"] == path, f"{component} {probe}"
        assert check["port"] in port_names | port_numbers, f"{component} {probe}"


@pytest.mark.parametrize("component", [*COMPONENTS, *WORKERS])
def test_every_container_has_requests_and_limits(example, component):
    for container in all_containers(of_kind(example, "Deployment")[component]):
        resources = container.get("resources", {})
        where = f"{component}/{container['name']}"
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request is not None and limit is not None, f"{where}: {resource}"
            size = cpu if resource == "cpu" else memory
            assert size(request) <= size(limit), f"{where}: {resource} request above limit"


def test_inference_has_room_for_tensorflow(example):
    resources = main_container(of_kind(example, "Deployment")["inference"])["resources"]
    assert memory(resources["requests"]["memory"]) >= 2**30
    assert memory(resources["limits"]["memory"]) >= 2 * 2**30


@pytest.mark.parametrize("component", [*COMPONENTS, *WORKERS])
def test_pods_run_as_the_images_unprivileged_user(example, component):
    pod = of_kind(example, "Deployment")[component]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("automountServiceAccountToken") is False
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for container in all_containers(of_kind(example, "Deployment")[component]):
        context = container["securityContext"]
        where = f"{component}/{container['name']}"
        assert context.get("runAsUser", UID) == UID, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert context["readOnlyRootFilesystem"] is True, where
        # A read-only root still needs a writable /tmp.
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and tmp[0]["name"] in empty_dirs, f"{where}: no emptyDir on /tmp"


def test_the_namespace_enforces_the_restricted_pod_security_standard(example):
    labels = of_kind(example, "Namespace")[NAMESPACE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- storage ---------------------------------------------------------------------------


def volume_at(deployment: dict, mount_path: str) -> tuple[dict, dict]:
    """The mount at `mount_path` in the main container, and the pod volume it names."""
    container = main_container(deployment)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    return mount, volume


def test_models_are_a_read_only_claim_at_the_models_dir(example):
    deployment = of_kind(example, "Deployment")["inference"]
    models_dir = container_env(main_container(deployment), example)["INFERENCE_MODELS_DIR"]
    mount, volume = volume_at(deployment, models_dir)
    assert mount.get("readOnly") is True
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in of_kind(example, "PersistentVolumeClaim")


@pytest.mark.parametrize("component", ["data", "slides"])
def test_stores_are_a_writable_shared_claim_at_the_storage_dir(example, component):
    deployment = of_kind(example, "Deployment")[component]
    prefix = COMPONENTS[component][0].model_config["env_prefix"]
    storage_dir = container_env(main_container(deployment), example)[f"{prefix}STORAGE_DIR"]
    mount, volume = volume_at(deployment, storage_dir)
    assert not mount.get("readOnly")
    claim = of_kind(example, "PersistentVolumeClaim")[volume["persistentVolumeClaim"]["claimName"]]
    # More than one replica writes to it, possibly from different nodes.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # Files the service creates must be writable by its user on a fresh volume.
    assert deployment["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == UID


# --- scaling and routing ---------------------------------------------------------------


def test_gateway_and_inference_are_autoscaled(example):
    hpas = of_kind(example, "HorizontalPodAutoscaler")
    assert {h["apiVersion"] for h in hpas.values()} == {"autoscaling/v2"}
    targets = {h["spec"]["scaleTargetRef"]["name"]: h for h in hpas.values()}
    assert set(targets) == AUTOSCALED
    deployments = of_kind(example, "Deployment")
    for name, hpa in targets.items():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # A fixed count in the Deployment would fight the autoscaler at every apply.
        assert "replicas" not in deployments[name]["spec"], name
        # Utilization is measured against the CPU request.
        assert main_container(deployments[name])["resources"]["requests"]["cpu"]


def test_the_ingress_routes_the_api_to_the_gateway_and_the_rest_to_the_frontend(example):
    services = of_kind(example, "Service")
    routes = {}
    for ingress in of_kind(example, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                port_names = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
                port_numbers = {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
                assert backend["port"].get("name") in port_names or (
                    backend["port"].get("number") in port_numbers
                )
                routes[path["path"]] = backend["name"]
    assert routes == {
        "/api": "gateway",
        "/api/v1/slides": "gateway",
        "/slide-upload": "frontend",
        "/": "frontend",
    }


def test_the_frontend_ingress_keeps_websockets_open(example):
    frontend = of_kind(example, "Ingress")["frontend"]
    annotations = frontend["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_slide_uploads_get_a_large_streamed_body_and_the_rest_of_the_api_does_not(example):
    ingresses = of_kind(example, "Ingress")
    gateway = GatewaySettings(_env_file=None)
    # The relay outwaits the gateway, so the gateway's answer (even its 504) reaches the user.
    waits = FrontendSettings(_env_file=None).slide_upload_timeout_s
    assert waits > gateway.slide_upload_timeout_s

    def body_limit(name: str) -> int:
        annotations = ingresses[name]["metadata"]["annotations"]
        return memory(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].upper() + "i")

    for name in ("gateway-slides", "frontend-slide-upload"):
        annotations = ingresses[name]["metadata"]["annotations"]
        assert body_limit(name) > gateway.max_slide_bytes, name
        # Streamed through: nginx does not first spool 4 GiB to its own disk.
        assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
        for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
            seconds = int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"])
            assert seconds > max(gateway.slide_upload_timeout_s, waits), (name, timeout)
    # The API's other routes keep their small limit.
    assert body_limit("gateway") < 100 * 2**20
    # The upload ticket lives in the frontend pod that made it: the app's sticky cookie.
    upload = ingresses["frontend-slide-upload"]["metadata"]["annotations"]
    app = ingresses["frontend"]["metadata"]["annotations"]
    for key in ("affinity", "session-cookie-name"):
        key = f"nginx.ingress.kubernetes.io/{key}"
        assert upload[key] == app[key], key


# --- images and secrets ----------------------------------------------------------------


def test_base_images_are_the_compose_images(base):
    for name, deployment in of_kind(base, "Deployment").items():
        for container in all_containers(deployment):
            assert container["image"].split(":")[0] == f"cds/{WORKERS.get(name, name)}"


def test_the_overlay_sets_registry_and_tag_of_every_image(example):
    for name, deployment in of_kind(example, "Deployment").items():
        for container in all_containers(deployment):
            repository, _, tag = container["image"].rpartition(":")
            assert repository.endswith(f"/cds/{WORKERS.get(name, name)}"), container["image"]
            assert tag and tag != "latest", container["image"]


def test_no_secret_in_the_base_has_a_value(base):
    secrets = of_kind(base, "Secret")
    assert secrets, "the base declares the Secret the Deployments refer to"
    for name, secret in secrets.items():
        assert not secret.get("data") and not secret.get("stringData"), name
    # Nor is one hidden among the plain settings.
    for name, config in of_kind(base, "ConfigMap").items():
        for key in config.get("data", {}):
            assert not re.search(r"DATABASE_URL|PASSWORD|SIGNING_KEY|SECRET|REDIS_URL", key), name


def test_the_example_secrets_are_placeholders():
    values = dotenv_values(EXAMPLE / "secrets.example.env")
    assert values
    for key, value in values.items():
        assert value and ("CHANGE_ME" in value or "example" in value), key
    for key_file in ("signing-key", "slide-worker-key", "slide-worker-public-key"):
        text = (EXAMPLE / f"{key_file}.example").read_text()
        assert "CHANGE_ME" in text and "KEY-----" not in text, key_file


@pytest.mark.parametrize("component", DATABASE_OWNERS)
def test_only_the_migration_gets_the_owners_login(example, component):
    """The service runs as its runtime login; the owner's URL, which could alter or drop the
    tables (and so disable the audit triggers), reaches the migration initContainer alone."""
    prefix = COMPONENTS[component][0].model_config["env_prefix"]
    deployment = of_kind(example, "Deployment")[component]
    (migrate,) = deployment["spec"]["template"]["spec"]["initContainers"]
    migrate_env = {v["name"]: v for v in migrate["env"]}
    reference = migrate_env[f"{prefix}MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert reference["key"] == f"{prefix}MIGRATION_DATABASE_URL"
    assert f"{prefix}DATABASE_URL" in migrate_env  # names the runtime login to grant
    service_env = container_env(main_container(deployment), example)
    assert f"{prefix}MIGRATION_DATABASE_URL" not in service_env
    placeholders = dotenv_values(EXAMPLE / "secrets.example.env")
    name = component.lower()
    assert placeholders[f"{prefix}MIGRATION_DATABASE_URL"].startswith(f"postgresql://{name}:")
    assert placeholders[f"{prefix}DATABASE_URL"].startswith(f"postgresql://{name}_runtime:")


# --- slide-analysis workers ------------------------------------------------------------


def test_the_slide_worker_runs_the_slide_services_image_as_a_worker(example):
    deployments = of_kind(example, "Deployment")
    worker, slides = deployments["slide-worker"], deployments["slides"]
    container = main_container(worker)
    assert container["image"] == main_container(slides)["image"]
    assert container["command"] == ["python", "-m", "slide_service.worker"]
    # The ScaledObject owns the count: a fixed one would fight it at every apply.
    assert "replicas" not in worker["spec"]
    # The database (the queue) is migrated by the slides Deployment, not by each worker.
    assert not worker["spec"]["template"]["spec"].get("initContainers")
    env = container_env(container, example)
    assert env["SLIDE_INFERENCE_URL"] == "http://inference:8001"
    assert env["SLIDE_ENVIRONMENT"] == "production"
    from_secret = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"]}
    assert set(from_secret) == {"SLIDE_DATABASE_URL", "SLIDE_WORKER_SIGNING_KEY"}
    assert "SLIDE_MIGRATION_DATABASE_URL" not in env and "SLIDE_VIEW_LINK_SECRET" not in env


def test_the_slide_worker_reads_the_slide_store_read_only(example):
    deployments = of_kind(example, "Deployment")
    storage_dir = container_env(main_container(deployments["slide-worker"]), example)[
        "SLIDE_STORAGE_DIR"
    ]
    assert (
        storage_dir
        == container_env(main_container(deployments["slides"]), example)["SLIDE_STORAGE_DIR"]
    )
    mount, volume = volume_at(deployments["slide-worker"], storage_dir)
    _, slides_volume = volume_at(deployments["slides"], storage_dir)
    assert mount.get("readOnly") is True
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim == slides_volume["persistentVolumeClaim"]["claimName"]
    # Workers on any node mount it beside the slides pods.
    assert of_kind(example, "PersistentVolumeClaim")[claim]["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def test_the_slide_worker_is_probed_and_scraped_on_its_metrics_port(example):
    worker = of_kind(example, "Deployment")["slide-worker"]
    container = main_container(worker)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("metrics", WORKER_METRICS_PORT)
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(WORKER_METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_slide_worker_port_is_the_settings_default():
    assert SlideSettings.model_fields["worker_metrics_port"].default == WORKER_METRICS_PORT


def test_inference_checks_the_workers_tokens_with_the_public_key_from_the_secret(example):
    inference = main_container(of_kind(example, "Deployment")["inference"])
    env = {v["name"]: v for v in inference["env"]}
    reference = env["INFERENCE_SLIDE_WORKER_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"]
    assert reference["key"] == "INFERENCE_SLIDE_WORKER_PUBLIC_KEY"
    # The private key goes to the workers alone.
    holders = {
        name
        for name, deployment in of_kind(example, "Deployment").items()
        for container in all_containers(deployment)
        for variable in container.get("env", [])
        if variable["name"] == "SLIDE_WORKER_SIGNING_KEY"
    }
    assert holders == {"slide-worker"}


def test_keda_scales_the_slide_worker_on_the_queue_depth(example):
    (scaled,) = of_kind(example, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        "apps/v1",
        "Deployment",
    )
    assert target["name"] in of_kind(example, "Deployment")
    assert target["name"] == "slide-worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["query"] == WORKER_QUEUE_QUERY
    assert float(trigger["metadata"]["targetQueryValue"]) == 1
    # The connection from the Secret, through a TriggerAuthentication of the namespace.
    assert (
        "connection" not in trigger["metadata"] and "connectionFromEnv" not in trigger["metadata"]
    )
    authentication = of_kind(example, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    (reference,) = authentication["spec"]["secretTargetRef"]
    assert reference["parameter"] == "connection"
    # The generated Secret's real name (with its hash), and a key it has.
    secret = of_kind(example, "Secret")[reference["name"]]
    assert reference["key"] == "SLIDE_DATABASE_URL" and reference["key"] in secret["data"]


def keda_errors(document: dict) -> list[str]:
    """What KEDA's schema for the document's kind refuses, unknown fields included (the API
    server's strict field validation, which kubectl uses by default)."""

    def strict(node):
        if isinstance(node, dict):
            node = {key: strict(value) for key, value in node.items()}
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
        elif isinstance(node, list):
            node = [strict(value) for value in node]
        return node

    version = document["apiVersion"].rpartition("/")[2]
    path = KEDA_SCHEMAS / f"keda-v2.20.1-{document['kind'].lower()}.json"
    assert version == "v1alpha1" and path.is_file(), (document["kind"], version)
    schema = strict(json.loads(path.read_text()))
    # metadata is checked by the API server, not by the CRD's schema.
    body = {key: value for key, value in document.items() if key != "metadata"}
    return [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(body)]


def test_the_keda_objects_pass_kedas_schemas(example):
    keda = [d for d in example if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for document in keda:
        assert keda_errors(document) == [], document["kind"]


def test_kedas_schemas_refuse_a_misspelt_field(example):
    (scaled,) = of_kind(example, "ScaledObject").values()
    broken = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 8}}
    assert keda_errors(broken)
    broken = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "one"}}
    assert keda_errors(broken)
