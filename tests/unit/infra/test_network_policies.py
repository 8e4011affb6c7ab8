"""Who can reach whom under infra/k8s's NetworkPolicies, decided offline.

The example overlay is rendered with `kubectl kustomize`, and every connection below is
judged by tests/support/network_policies.py, which applies the API's NetworkPolicy rules
(selectors, namespaces, ports, address blocks) to the rendered policies and pods.
"""

import pytest

from tests.support.network_policies import Endpoint, PolicySet, selects
from tests.unit.infra.test_kubernetes import (
    COMPONENTS,
    EXAMPLE,
    NAMESPACE,
    WORKER_METRICS_PORT,
    main_container,
    of_kind,
    parse,
    render,
)

BACKENDS = ("auth", "inference", "data", "slides")
WORKER = "slide-worker"
# Who opens connections to the database: the services, and the workers (the queue).
DATABASE_USERS = (*BACKENDS, WORKER)
DATABASE = Endpoint("database", "203.0.113.10")  # the managed PostgreSQL, outside the cluster
INTERNET = Endpoint("internet", "198.51.100.7")
NAME = "app.kubernetes.io/name"


def port_of(component: str) -> int:
    """The port a component answers on (the worker's: its metrics)."""
    if component == WORKER:
        return WORKER_METRICS_PORT
    return COMPONENTS[component][0].model_fields["port"].default


def pod_outside(name: str, namespace: str, labels: dict[str, str], ip: str) -> Endpoint:
    return Endpoint(name, ip, namespace, labels, {"kubernetes.io/metadata.name": namespace})


INGRESS_CONTROLLER = pod_outside(
    "ingress-controller", "ingress-nginx", {NAME: "ingress-nginx"}, "10.2.0.5"
)
PROMETHEUS = pod_outside("prometheus", "monitoring", {NAME: "prometheus"}, "10.2.0.6")
KUBE_DNS = pod_outside("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.2.0.10")
# Carries the gateway's label, but in another namespace: it gets none of the gateway's reach.
IMPOSTOR = pod_outside("impostor", "default", {NAME: "gateway"}, "10.2.0.7")


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    return parse(render(EXAMPLE))


@pytest.fixture(scope="module")
def policies(documents) -> PolicySet:
    return PolicySet(documents)


@pytest.fixture(scope="module")
def pods(documents) -> dict[str, Endpoint]:
    """Each Deployment's pod, as the policies see it, with an address in the pod network."""
    namespace = of_kind(documents, "Namespace")[NAMESPACE]
    namespace_labels = {
        **namespace["metadata"].get("labels", {}),
        "kubernetes.io/metadata.name": NAMESPACE,  # set by the API server on every namespace
    }
    found = {}
    for number, (name, deployment) in enumerate(sorted(of_kind(documents, "Deployment").items())):
        ports = {p["name"]: p["containerPort"] for p in main_container(deployment)["ports"]}
        found[name] = Endpoint(
            name,
            f"10.1.0.{number + 1}",
            NAMESPACE,
            deployment["spec"]["template"]["metadata"]["labels"],
            namespace_labels,
            ports,
        )
    return found


def stray_pods(pods: dict[str, Endpoint]) -> list[Endpoint]:
    """Pods in the namespace that no component's label names (a debug shell, an intruder)."""
    namespace_labels = pods["gateway"].namespace_labels
    return [
        Endpoint("unlabelled", "10.1.0.50", NAMESPACE, {}, namespace_labels),
        Endpoint("debug", "10.1.0.51", NAMESPACE, {"app": "debug"}, namespace_labels),
    ]


def everyone(pods: dict[str, Endpoint]) -> list[Endpoint]:
    return [
        *pods.values(),
        *stray_pods(pods),
        INGRESS_CONTROLLER,
        PROMETHEUS,
        KUBE_DNS,
        IMPOSTOR,
    ]


def reaching(policies: PolicySet, pods: dict[str, Endpoint], target: Endpoint, port: int) -> set:
    return {s.name for s in everyone(pods) if s != target and policies.allows(s, target, port)}


def test_the_example_renders_the_policies(policies):
    names = {p["metadata"]["name"] for p in policies.policies}
    assert {"default-deny", "dns", "database", *COMPONENTS} <= names


def test_a_pod_without_a_components_label_reaches_nothing_and_nothing_reaches_it(policies, pods):
    for stray in stray_pods(pods):
        for component, pod in pods.items():
            assert not policies.allows(stray, pod, port_of(component)), (stray.name, component)
        for protocol in ("UDP", "TCP"):
            assert not policies.allows(stray, KUBE_DNS, 53, protocol), stray.name
        assert not policies.allows(stray, DATABASE, 5432), stray.name
        assert not policies.allows(stray, INTERNET, 443), stray.name
        for port in (80, 8000, 8080):
            assert reaching(policies, pods, stray, port) == set(), (stray.name, port)


def test_only_the_gateway_reaches_inference_data_and_slides(policies, pods):
    for component in ("data", "slides"):
        assert reaching(policies, pods, pods[component], port_of(component)) == {
            "gateway",
            "prometheus",  # /metrics is served on the service port
        }, component
    # And the slide-analysis workers inference, with their batches of tiles.
    assert reaching(policies, pods, pods["inference"], port_of("inference")) == {
        "gateway",
        WORKER,
        "prometheus",
    }


def test_the_slide_worker_reaches_the_database_and_inference_only(policies, pods):
    worker = pods[WORKER]
    reached = {name for name, pod in pods.items() if policies.allows(worker, pod, port_of(name))}
    assert reached == {"inference"}
    assert policies.allows(worker, DATABASE, 5432)
    for protocol in ("UDP", "TCP"):
        assert policies.allows(worker, KUBE_DNS, 53, protocol)
    for port in (443, 80, 6379):
        assert not policies.allows(worker, INTERNET, port), port
    # Not auth's keys, nor another port of inference.
    assert not policies.allows(worker, pods["auth"], port_of("auth"))
    assert not policies.allows(worker, pods["inference"], port_of("inference") + 1)


def test_only_prometheus_reaches_the_slide_worker_and_only_its_metrics(policies, pods):
    worker = pods[WORKER]
    assert reaching(policies, pods, worker, WORKER_METRICS_PORT) == {"prometheus"}
    for port in (8003, 8001, 22, WORKER_METRICS_PORT + 1):
        assert reaching(policies, pods, worker, port) == set(), port


def test_auth_is_reached_by_the_gateway_and_by_the_services_fetching_its_keys(policies, pods):
    assert reaching(policies, pods, pods["auth"], port_of("auth")) == {
        "gateway",
        "inference",  # the JWKS, to check tokens
        "data",
        "slides",
        "prometheus",
    }


def test_the_backends_answer_on_their_port_only(policies, pods):
    for component in BACKENDS:
        for port in (22, 5432, 8080, port_of(component) + 1000):
            assert reaching(policies, pods, pods[component], port) == set(), (component, port)


def test_the_ingress_controller_reaches_only_the_gateway_and_the_frontend(policies, pods):
    reached = {
        name
        for name, pod in pods.items()
        if policies.allows(INGRESS_CONTROLLER, pod, port_of(name))
    }
    assert reached == {"gateway", "frontend"}
    assert reaching(policies, pods, pods["frontend"], port_of("frontend")) == {"ingress-controller"}
    assert reaching(policies, pods, pods["gateway"], port_of("gateway")) == {
        "ingress-controller",
        "frontend",
        "prometheus",
    }


def test_each_service_reaches_its_database_and_dns(policies, pods):
    for component, pod in pods.items():
        for protocol in ("UDP", "TCP"):
            assert policies.allows(pod, KUBE_DNS, 53, protocol), (component, protocol)
        assert policies.allows(pod, DATABASE, 5432) is (component in DATABASE_USERS), component


def test_only_the_gateway_leaves_the_cluster_and_only_for_https_and_redis(policies, pods):
    for component, pod in pods.items():
        assert policies.allows(pod, INTERNET, 443) is (component == "gateway"), component
    assert policies.allows(pods["gateway"], INTERNET, 6379)
    assert not policies.allows(pods["gateway"], INTERNET, 22)
    # The outside range leaves out the pod network: not a way around the rules above.
    for component in BACKENDS:
        assert not policies.allows(pods["gateway"], pods[component], 443), component


def test_who_each_component_calls(policies, pods):
    calls = {
        (source, target)
        for source in pods
        for target in pods
        if source != target and policies.allows(pods[source], pods[target], port_of(target))
    }
    assert calls == {
        ("frontend", "gateway"),
        ("gateway", "auth"),
        ("gateway", "inference"),
        ("gateway", "data"),
        ("gateway", "slides"),
        ("inference", "auth"),
        ("data", "auth"),
        ("slides", "auth"),
        (WORKER, "inference"),
    }


def test_every_deployment_is_covered_by_a_default_deny(policies, pods):
    default_deny = [
        p
        for p in policies.policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(default_deny) == 1
    for component, pod in pods.items():
        for direction in ("Ingress", "Egress"):
            assert default_deny[0] in policies.selecting(pod, direction), (component, direction)


def test_without_the_policies_every_pod_reaches_everything(documents, pods):
    """The evaluator does not deny on its own: the rules above come from the policies."""
    open_cluster = PolicySet([d for d in documents if d["kind"] != "NetworkPolicy"])
    for stray in stray_pods(pods):
        for component, pod in pods.items():
            assert open_cluster.allows(stray, pod, port_of(component))
        assert open_cluster.allows(stray, DATABASE, 5432)


# --- the evaluator's reading of the API's rules -------------------------------------------


def policy(name: str, pod_selector: dict, **spec) -> dict:
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"podSelector": pod_selector, **spec},
    }


def test_the_evaluator_applies_selectors_namespaces_ports_and_blocks():
    web = Endpoint("web", "10.0.0.1", "ns", {"app": "web"}, {"team": "a"}, {"http": 8080})
    same_ns = Endpoint("client", "10.0.0.2", "ns", {"role": "client"}, {"team": "a"})
    other_ns = Endpoint("other", "10.0.0.3", "other", {"role": "client"}, {"team": "b"})
    peer_and = {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {}}
    rules = PolicySet(
        [
            policy(
                "web",
                {"matchLabels": {"app": "web"}},
                policyTypes=["Ingress"],
                ingress=[{"from": [peer_and], "ports": [{"port": "http"}]}],
            )
        ]
    )
    assert rules.allows(other_ns, web, 8080)  # both selectors in one peer: AND
    assert not rules.allows(same_ns, web, 8080)  # not in a namespace labelled team=b
    assert not rules.allows(other_ns, web, 8081)  # the named port is 8080
    assert not rules.allows(other_ns, web, 8080, "UDP")
    # A podSelector alone means the policy's own namespace.
    own = PolicySet([policy("web", {}, ingress=[{"from": [{"podSelector": {}}]}])])
    assert own.allows(same_ns, web, 1) and not own.allows(other_ns, web, 1)
    # An ipBlock's except ranges are excluded; pod selectors never match an outside address.
    outside = Endpoint("outside", "192.0.2.1")
    block = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}
    egress = PolicySet([policy("out", {}, policyTypes=["Egress"], egress=[{"to": [block]}])])
    assert egress.allows(web, outside, 443) and not egress.allows(web, same_ns, 443)
    assert selects({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {})
    assert not selects({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {})
