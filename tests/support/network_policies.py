"""Kubernetes NetworkPolicy semantics over rendered manifests, without a cluster.

What the API documents (networking.k8s.io/v1), and nothing a CNI adds:
- a pod is isolated for ingress (egress) when a policy of its namespace selects it with
  `Ingress` (`Egress`) among its policyTypes; then only what one of those policies' rules
  allows reaches it (leaves it). A pod no policy isolates is open in that direction;
- a connection needs both: the source's egress and the destination's ingress;
- a rule without `from`/`to` matches every peer, one without `ports` every port; a peer with
  `podSelector` alone means pods of the policy's own namespace, with `namespaceSelector`
  alone every pod of the matching namespaces, with both the matching pods in those; an
  `ipBlock` matches addresses (its `except` ranges excluded);
- a port is a number or a name of the destination container's ports, protocol TCP unless
  said, with `endPort` for a range.
Addresses outside the cluster (a managed database, the internet) have no ingress policies.
"""

from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

_DEFAULT_PROTOCOL = "TCP"


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels set) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions, all of them; {} selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _policy_types(policy: dict) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def _peer_matches(peer: dict, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ip_address(other.ip)
        if address not in ip_network(block["cidr"]):
            return False
        return not any(address in ip_network(c) for c in block.get("except") or [])
    if other.namespace is None:  # pod and namespace selectors never match outside addresses
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def _port_matches(
    rule_ports: list[dict] | None, port: int, protocol: str, target: Endpoint
) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", _DEFAULT_PROTOCOL) != protocol:
            continue
        wanted = rule_port.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = target.named_ports.get(wanted)
            if wanted is None:
                continue
        if wanted <= port <= rule_port.get("endPort", wanted):
            return True
    return False


class PolicySet:
    def __init__(self, documents: list[dict]) -> None:
        self.policies = [d for d in documents if d["kind"] == "NetworkPolicy"]

    def selecting(self, pod: Endpoint, direction: str) -> list[dict]:
        """The policies that isolate `pod` in `direction` ("Ingress" or "Egress")."""
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in _policy_types(p)
            and selects(p["spec"]["podSelector"], pod.labels)
        ]

    def _allowed(
        self, pod: Endpoint, peer: Endpoint, port: int, protocol: str, direction: str
    ) -> bool:
        if pod.namespace is None:
            return True  # outside the cluster: no policy applies there
        policies = self.selecting(pod, direction)
        if not policies:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        target = pod if direction == "Ingress" else peer
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(
                    _peer_matches(p, policy["metadata"]["namespace"], peer) for p in peers
                ):
                    continue
                if _port_matches(rule.get("ports"), port, protocol, target):
                    return True
        return False

    def allows(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        return self._allowed(source, destination, port, protocol, "Egress") and self._allowed(
            destination, source, port, protocol, "Ingress"
        )
