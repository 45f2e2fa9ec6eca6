"""Tenants fenced off the platform: their own namespaces, NetworkPolicies, a confined agent.

Each NetworkPolicy is asserted object by object: what it selects and what it lets through.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.kube.test_chart import NAMESPACE, named, of_kind, render, rules_of, values_of

METADATA = ipaddress.ip_address("169.254.169.254")


def policies(docs: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    return {
        p["metadata"]["name"]: p["spec"]
        for p in of_kind(docs, "NetworkPolicy")
        if p["metadata"].get("namespace", NAMESPACE) == namespace
    }


def reachable_blocks(spec: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [
        (peer["ipBlock"]["cidr"], peer["ipBlock"].get("except", []))
        for rule in spec.get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


def allows(blocks: list[tuple[str, list[str]]], ip: ipaddress.IPv4Address) -> bool:
    return any(
        ip in ipaddress.ip_network(cidr)
        and not any(ip in ipaddress.ip_network(e) for e in excepted)
        for cidr, excepted in blocks
    )


def selects(spec: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a policy's podSelector (matchLabels, matchExpressions) takes these pods."""
    selector = spec["podSelector"]
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "DoesNotExist" and present:
            return False
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
    return True


def admits(rule: dict[str, Any], labels: dict[str, str], port: int) -> bool:
    """Whether an ingress rule lets pods with ``labels`` in the release namespace in on
    ``port``."""
    ports = rule.get("ports")
    if ports and not any(p.get("port") in (port, "http") for p in ports):
        return False
    peers = rule.get("from")
    if not peers:
        return True
    for peer in peers:
        space = peer.get("namespaceSelector")
        if space is not None and not selects({"podSelector": space}, {
            "kubernetes.io/metadata.name": NAMESPACE
        }):  # fmt: skip
            continue
        if "ipBlock" in peer:
            continue
        if selects({"podSelector": peer.get("podSelector", {})}, labels):
            return True
    return False


class TestNamespaces:
    def test_apps_and_builds_get_their_own_namespaces_by_default(self) -> None:
        docs = render(values_of("default"))
        assert named(docs, "Role", "slipway-agent-apps")["metadata"]["namespace"] == (
            f"{NAMESPACE}-apps"
        )
        builds = render(
            {**values_of("default"), "control": {
                "enabled": True, "existingSecret": "c",
                "builds": {"kubernetes": True, "registry": "r.example/x"},
            }}
        )  # fmt: skip
        role = named(builds, "Role", "slipway-control-builds")
        assert role["metadata"]["namespace"] == f"{NAMESPACE}-builds"
        spaces = {n["metadata"]["name"]: n for n in of_kind(builds, "Namespace")}
        assert set(spaces) == {f"{NAMESPACE}-apps", f"{NAMESPACE}-builds"}

    def test_tenant_namespaces_enforce_pod_security_restricted_and_outlive_the_release(
        self,
    ) -> None:
        for ns in of_kind(render(values_of("full")), "Namespace"):
            labels = ns["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
            assert ns["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    def test_no_namespace_is_created_when_the_operator_makes_them(self) -> None:
        docs = render({**values_of("full"), "namespaces": {"create": False}})
        assert of_kind(docs, "Namespace") == []

    def test_the_release_namespace_is_never_relabelled_as_a_tenant_one(self) -> None:
        docs = render({**values_of("default"), "agent": {
            **values_of("default")["agent"], "appsNamespace": NAMESPACE,
        }})  # fmt: skip
        assert of_kind(docs, "Namespace") == []


class TestNetworkPolicies:
    def test_tenant_namespaces_deny_everything_by_default(self) -> None:
        docs = render(values_of("full"))
        for ns, kind in (("slipway-apps", "apps"), ("slipway-builds", "builds")):
            deny = policies(docs, ns)[f"slipway-{kind}-default-deny"]
            assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def test_tenant_egress_is_dns_the_internet_and_add_ons_never_the_metadata_endpoint(
        self,
    ) -> None:
        """Attack: a buildpack script or an app asks 169.254.169.254 for the node's cloud
        credentials, or calls the agent's API / the logs forward port by pod IP."""
        docs = render(values_of("full"))
        for ns, kind in (("slipway-apps", "apps"), ("slipway-builds", "builds")):
            egress = policies(docs, ns)[f"slipway-{kind}-egress"]
            assert egress["podSelector"] == {}
            blocks = reachable_blocks(egress)
            assert not allows(blocks, METADATA)
            for platform_ip in ("10.0.0.12", "172.20.3.4", "192.168.1.9", "100.64.0.10"):
                ok = allows(blocks, ipaddress.IPv4Address(platform_ip))
                assert not ok, platform_ip
            assert allows(blocks, ipaddress.IPv4Address("10.0.5.10"))  # the add-on server
            assert allows(blocks, ipaddress.IPv4Address("140.82.112.3"))  # the internet
            dns = egress["egress"][0]
            assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "kube-system"
            }
            assert {p["port"] for p in dns["ports"]} == {53}
            assert "ingress" not in egress

    def test_the_add_on_rule_opens_only_its_port(self) -> None:
        docs = render(values_of("full"))
        egress = policies(docs, "slipway-apps")["slipway-apps-egress"]
        (addon,) = [r for r in egress["egress"] if r.get("ports") == [
            {"protocol": "TCP", "port": 5432}
        ]]  # fmt: skip
        assert addon["to"] == [{"ipBlock": {"cidr": "10.0.5.10/32"}}]

    def test_app_pods_take_connections_from_the_routers_only(self) -> None:
        """Attack: one tenant's pod connects to another tenant's pod directly."""
        docs = render(values_of("full"))
        spec = policies(docs, "slipway-apps")["slipway-apps-from-routers"]
        assert spec["podSelector"] == {
            "matchExpressions": [{"key": "slipway.dev/app", "operator": "Exists"}]
        }
        (rule,) = spec["ingress"]
        (peer,) = rule["from"]
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
        }
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
        router = named(docs, "Deployment", "slipway-router")["spec"]["template"]["metadata"]
        assert peer["podSelector"]["matchLabels"].items() <= router["labels"].items()

    def test_the_agent_api_refuses_tenant_namespaces(self) -> None:
        """Attack: an app pod calls the agent's API to scale or define another app."""
        docs = render(values_of("full"))
        spec = policies(docs, NAMESPACE)["slipway-agent"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "agent"
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8081}]
        (peer,) = rule["from"]
        (expr,) = peer["namespaceSelector"]["matchExpressions"]
        assert expr["operator"] == "NotIn"
        assert set(expr["values"]) == {"slipway-apps", "slipway-builds"}

    def test_the_routers_reach_the_logs_service_s_http_port(self) -> None:
        """Router lines are posted to the logs service (SLIPWAY_ROUTER_LOGS_URL): whatever
        policy selects the logs pods, a router pod must get through to its HTTP port, and
        nothing fences the routers' own egress."""
        docs = render(values_of("full"))
        logs = named(docs, "Deployment", "slipway-logs")["spec"]["template"]["metadata"]
        router = named(docs, "Deployment", "slipway-router")["spec"]["template"]["metadata"]
        http = next(
            p["port"]
            for p in named(docs, "Service", "slipway-logs")["spec"]["ports"]
            if p["name"] == "http"
        )
        # The helpers read a policy as the cluster does: the agent's admits routers, on its port.
        (agent_rule,) = policies(docs, NAMESPACE)["slipway-agent"]["ingress"]
        assert admits(agent_rule, router["labels"], 8081)
        assert not admits(agent_rule, router["labels"], http)
        for name, spec in policies(docs, NAMESPACE).items():
            assert not selects(spec, router["labels"]) or "Egress" not in spec["policyTypes"]
            if not selects(spec, logs["labels"]) or "Ingress" not in spec["policyTypes"]:
                continue
            assert any(admits(rule, router["labels"], http) for rule in spec.get("ingress", [])), (
                name
            )

    def test_policies_can_be_left_to_the_operator(self) -> None:
        docs = render({**values_of("full"), "networkPolicy": {"enabled": False}})
        assert of_kind(docs, "NetworkPolicy") == []


class TestAgentRights:
    def test_the_agent_holds_no_rights_in_the_platform_namespace_but_its_lease(self) -> None:
        """Attack: a compromised agent patches the router's Deployment or reads Secrets."""
        docs = render(values_of("full"))
        in_platform = [
            r
            for r in of_kind(docs, "Role")
            if r["metadata"].get("namespace", NAMESPACE) == NAMESPACE
        ]
        assert [r["metadata"]["name"] for r in in_platform] == ["slipway-agent-leader"]
        (leader,) = in_platform
        assert rules_of(leader) == {
            ("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")
        }
        named_rule = [r for r in leader["rules"] if "get" in r["verbs"]]
        assert named_rule[0]["resourceNames"] == ["slipway-leader"]
        apps = named(docs, "Role", "slipway-agent-apps")
        assert apps["metadata"]["namespace"] == "slipway-apps"
        assert of_kind(docs, "ClusterRole") == []


def test_apps_in_the_platform_s_namespace_fence_the_tenant_pods_only() -> None:
    """An operator keeping apps in the release namespace (an upgrade from before the
    separate namespaces) must not cut the platform's own pods off."""
    values = values_of("default")
    docs = render({**values, "agent": {**values["agent"], "appsNamespace": NAMESPACE}})
    tenant = {"matchExpressions": [{"key": "slipway.dev/app", "operator": "Exists"}]}
    found = policies(docs, NAMESPACE)
    assert found["slipway-apps-default-deny"]["podSelector"] == tenant
    assert found["slipway-apps-egress"]["podSelector"] == tenant
    separate = policies(render(values), f"{NAMESPACE}-apps")
    assert separate["slipway-apps-default-deny"]["podSelector"] == {}
