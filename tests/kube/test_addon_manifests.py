"""Dedicated add-ons on Kubernetes as manifests: valid for 1.30, fenced, sized by the plan."""

from __future__ import annotations

import datetime
import json
from typing import Any

import kubernetes_validate
import pytest

from control.addons.kube_dedicated import (
    ADDON_LABEL,
    APP_LABEL,
    BACKUP_LABEL,
    KUBE_PLANS,
    PORTS,
    Kind,
    KubeAddon,
    KubeAddonSettings,
    manifests,
    plan_of,
    url,
)
from control.addons.kube_tls import server_certificate
from tests.kube.test_chart import KUBE_VERSION

EXPORTER = {"app.kubernetes.io/name": "slipway", "app.kubernetes.io/component": "exporter-redis"}
SETTINGS = KubeAddonSettings(
    namespace="slipway-apps",
    platform_namespace="slipway",
    exporter_labels={Kind.REDIS: EXPORTER},
)
PASSWORD = "pw-0123456789abcdef"
NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)

EVERY_PLAN = [(kind, plan) for kind, plans in KUBE_PLANS.items() for plan in plans]


#: One pair for every test here: a key is drawn per call.
TLS = server_certificate("addon-0a1b2c3d4e5f", "slipway-apps", now=NOW)


def addon(kind: Kind, plan: str) -> KubeAddon:
    return KubeAddon(
        name="addon-0a1b2c3d4e5f",
        kind=kind,
        plan=plan,
        app="shop",
        password=PASSWORD,
        tls=TLS if kind is Kind.POSTGRES else None,
    )


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(str(doc["kind"]), []).append(doc)
    return found


@pytest.mark.parametrize(("kind", "plan"), EVERY_PLAN)
def test_every_object_of_every_plan_validates_against_the_1_30_schemas(
    kind: Kind, plan: str
) -> None:
    docs = manifests(addon(kind, plan), SETTINGS)
    assert sorted(str(d["kind"]) for d in docs) == [
        "NetworkPolicy",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
        "StatefulSet",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(("kind", "plan"), EVERY_PLAN)
def test_the_plan_sizes_the_container_and_the_volume_and_the_password_stays_in_the_secret(
    kind: Kind, plan: str
) -> None:
    sized = plan_of(kind, plan)
    docs = manifests(addon(kind, plan), SETTINGS)
    found = by_kind(docs)
    (sts,) = found["StatefulSet"]
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    expected = {"cpu": sized.cpu, "memory": sized.memory}
    assert container["resources"] == {"requests": expected, "limits": expected}
    (claim,) = found["PersistentVolumeClaim"]
    assert claim["spec"]["resources"]["requests"]["storage"] == sized.storage
    volume = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert volume == claim["metadata"]["name"]
    # The pods are the add-on's, never taken for one of the app's processes.
    assert APP_LABEL not in pod["metadata"]["labels"]
    assert all(d["metadata"]["labels"][ADDON_LABEL] == "addon-0a1b2c3d4e5f" for d in docs)
    assert all(d["metadata"]["namespace"] == "slipway-apps" for d in docs)
    holding = [d["kind"] for d in docs if PASSWORD in json.dumps(d)]
    assert holding == ["Secret"]
    assert [d["kind"] for d in docs if "PRIVATE KEY" in json.dumps(d)] == (
        ["Secret"] if kind is Kind.POSTGRES else []
    )
    (svc,) = found["Service"]
    assert svc["spec"]["ports"][0]["port"] == PORTS[kind]
    assert svc["spec"]["selector"] == {ADDON_LABEL: "addon-0a1b2c3d4e5f"}


def test_only_the_owners_pods_the_exporters_and_the_backup_jobs_get_in() -> None:
    docs = manifests(addon(Kind.REDIS, "mini"), SETTINGS)
    ingress, egress = (d for d in docs if d["kind"] == "NetworkPolicy")
    spec = ingress["spec"]
    assert spec["podSelector"] == {"matchLabels": {ADDON_LABEL: "addon-0a1b2c3d4e5f"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    platform = {"matchLabels": {"kubernetes.io/metadata.name": "slipway"}}
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {APP_LABEL: "shop"}}},
        {"namespaceSelector": platform, "podSelector": {"matchLabels": EXPORTER}},
        {
            "namespaceSelector": platform,
            "podSelector": {"matchLabels": {BACKUP_LABEL: "addon-0a1b2c3d4e5f"}},
        },
    ]
    # The owner's pods may go out to it, on its port only.
    assert egress["spec"]["podSelector"] == {"matchLabels": {APP_LABEL: "shop"}}
    assert egress["spec"]["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {ADDON_LABEL: "addon-0a1b2c3d4e5f"}}}],
            "ports": [{"protocol": "TCP", "port": 6379}],
        }
    ]


def test_the_url_names_the_service_and_the_server_caps_sit_below_the_container() -> None:
    host = "addon-0a1b2c3d4e5f.slipway-apps.svc"
    assert url(addon(Kind.POSTGRES, "mini"), SETTINGS) == (
        f"postgres://addon:{PASSWORD}@{host}:5432/addon?sslmode=require"
    )
    assert url(addon(Kind.REDIS, "mini"), SETTINGS) == f"redis://:{PASSWORD}@{host}:6379/0"
    assert url(addon(Kind.SEARCH, "standard"), SETTINGS) == f"http://{host}:9200"
    redis = by_kind(manifests(addon(Kind.REDIS, "mini"), SETTINGS))["StatefulSet"][0]
    line = redis["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert f"--maxmemory {25 * 1024 * 1024}" in line
    assert "$REDIS_PASSWORD" in line  # from the Secret, through env
    search = by_kind(manifests(addon(Kind.SEARCH, "standard"), SETTINGS))["StatefulSet"][0]
    env = {
        e["name"]: e.get("value")
        for e in search["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["OPENSEARCH_JAVA_OPTS"] == "-Xms1024m -Xmx1024m"  # half the 2Gi container


def test_an_unknown_plan_names_the_plans_there_are() -> None:
    with pytest.raises(
        ValueError, match=r"no redis plan 'huge' on Kubernetes \(plans: mini, basic\)"
    ):
        manifests(addon(Kind.REDIS, "huge"), SETTINGS)
