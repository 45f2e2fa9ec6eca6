"""The chart's control plane building on the cluster: exactly the rights its builder uses."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.kube.test_chart import (
    CHART,
    CONTROL,
    KUBE_VERSION,
    NAMESPACE,
    _code_text,
    containers,
    named,
    of_kind,
    render,
    rules_of,
    with_required,
)

BUILDS: dict[str, Any] = with_required(
    {
        "control": {
            **CONTROL,
            "builds": {
                "kubernetes": True,
                "namespace": "slipway-builds",
                "registry": "ghcr.io/acme",
                "registrySecret": "ghcr",
                "runImage": "paketobuildpacks/run-jammy-base",
                "timeout": "20m",
            },
        }
    }
)
#: What control/builds/kube.py calls: create, list+watch and delete the Job; list+watch
#: its pod; follow the pod's log. Nothing else, and nothing outside the builds' namespace.
BUILD_RULES = {
    *(("batch", "jobs", v) for v in ("create", "list", "watch", "delete")),
    *(("", "pods", v) for v in ("list", "watch")),
    ("", "pods/log", "get"),
}


def test_kubernetes_builds_give_control_exactly_the_job_and_pod_rules_in_the_builds_namespace() -> (
    None
):
    docs = render(BUILDS)
    role = named(docs, "Role", "slipway-control-builds")
    assert role["metadata"]["namespace"] == "slipway-builds"
    assert rules_of(role) == BUILD_RULES
    binding = named(docs, "RoleBinding", "slipway-control-builds")
    assert binding["metadata"]["namespace"] == "slipway-builds"
    assert binding["roleRef"]["name"] == "slipway-control-builds"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "slipway-control", "namespace": NAMESPACE}
    ]
    assert of_kind(docs, "ClusterRole") == []
    # Without builds on the cluster, control has neither a Role nor a token.
    plain = render(with_required({"control": CONTROL}))
    assert not [r for r in of_kind(plain, "Role") if "control" in r["metadata"]["name"]]
    assert (
        named(plain, "ServiceAccount", "slipway-control")["automountServiceAccountToken"] is False
    )


def test_the_control_pod_holds_a_token_and_the_build_pods_none() -> None:
    docs = render(BUILDS)
    assert named(docs, "ServiceAccount", "slipway-control")["automountServiceAccountToken"] is True
    pod = named(docs, "Deployment", "slipway-control")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    builder = named(docs, "ServiceAccount", "slipway-builder")
    assert builder["metadata"]["namespace"] == "slipway-builds"
    assert builder["automountServiceAccountToken"] is False


def test_the_control_plane_is_told_to_build_on_kubernetes_with_variables_it_reads() -> None:
    docs = render(BUILDS)
    (control,) = [c for name, _, c in containers(docs) if name == "slipway-control"]
    env = {e["name"]: e.get("value") for e in control["env"]}
    assert {k: v for k, v in env.items() if k.startswith(("SLIPWAY_BUILD", "SLIPWAY_CNB"))} == {
        "SLIPWAY_BUILDER": "kubernetes",
        "SLIPWAY_BUILD_TIMEOUT": "20m",
        "SLIPWAY_CNB_NAMESPACE": "slipway-builds",
        "SLIPWAY_CNB_BUILDER_IMAGE": "paketobuildpacks/builder-jammy-base",
        "SLIPWAY_CNB_REGISTRY": "ghcr.io/acme",
        "SLIPWAY_CNB_REGISTRY_SECRET": "ghcr",
        "SLIPWAY_CNB_SERVICE_ACCOUNT": "slipway-builder",
        "SLIPWAY_CNB_RUN_IMAGE": "paketobuildpacks/run-jammy-base",
    }
    code = _code_text()
    for var in env:
        if var.startswith("SLIPWAY_"):
            assert f'"{var}"' in code, var


def test_the_builds_rendering_lints_and_validates() -> None:
    report = helm.lint(str(CHART), BUILDS, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    for doc in render(BUILDS):
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_builds_on_the_cluster_need_a_registry() -> None:
    values = with_required({"control": {**CONTROL, "builds": {"kubernetes": True}}})
    with pytest.raises(
        helm.HelmRenderError, match=re.escape("control.builds.registry is required")
    ):
        render(values)
