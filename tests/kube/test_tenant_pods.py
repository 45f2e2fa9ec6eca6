"""Every pod that runs tenant code passes Pod Security "restricted" and carries resources.

The checker below is the restricted profile of Kubernetes 1.30 (baseline included) as the
Pod Security admission applies it to a pod spec; a namespace enforcing it (the chart's
tenant namespaces) refuses a pod that fails any rule, and the Deployment just never gets
pods. It is run over each kind of tenant pod the code builds: app Deployments (web and
workers), release and one-off Jobs, build Jobs.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from agent.kubernetes import manifests
from agent.runtime import ProcessSpec
from control.builds.cnb import build_job
from control.builds.settings import CNBSettings
from logs.mapping import Source, target_from_kubernetes

Pod = dict[str, Any]

#: Volume types restricted allows.
_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
}  # fmt: skip


def restricted_violations(pod: Pod) -> list[str]:
    """What the restricted profile refuses in ``pod`` (a PodSpec); empty when it passes."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _VOLUMES:
            out.append(f"volume {volume['name']}: {sorted(kinds)}")
    for sysctl in psc.get("sysctls", []):
        if sysctl["name"] not in _SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl['name']}")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
    return out


def tenant_concerns(pod: Pod) -> list[str]:
    """Beyond the profile: no API token, requests and limits (a ResourceQuota needs them)."""
    out = []
    if pod.get("automountServiceAccountToken") is not False:
        out.append("mounts the ServiceAccount token")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if not (resources.get(part) or {}).get(what):
                    out.append(f"{c['name']}: no {part}.{what}")
    return out


SPEC = ProcessSpec(
    app="blog", process="web", command="gunicorn app", image="r.example/blog@sha256:" + "a" * 64,
    release=3, health_path="/up",
)  # fmt: skip
WORKER = ProcessSpec(app="blog", process="worker", command="celery", image=SPEC.image, release=3)


def tenant_objects() -> dict[str, dict[str, Any]]:
    """Each kind of tenant workload the code builds (Deployment or Job)."""
    web = manifests.deployment(SPEC, port=5000, replicas=1, pull_secret="regcred")
    worker = manifests.deployment(WORKER, port=5000, replicas=None)
    once = manifests.once_job(SPEC, "rake db:migrate", name="blog-run-v3-abcdef", timeout=60)
    build = build_job(
        "blog", "b1", git_url="https://git.example/blog.git", commit="a" * 40,
        settings=CNBSettings(registry="r.example"), buildpacks=("paketo-buildpacks/python",),
    )  # fmt: skip
    return {"web": web, "worker": worker, "release": once, "build": build}


def tenant_pods() -> dict[str, tuple[Pod, dict[str, str]]]:
    """Each kind of tenant pod the code builds: its spec and its labels."""
    return {
        kind: (obj["spec"]["template"]["spec"], obj["spec"]["template"]["metadata"]["labels"])
        for kind, obj in tenant_objects().items()
    }


@pytest.mark.parametrize("kind", ["web", "worker", "release", "build"])
def test_each_tenant_workload_validates_against_the_kubernetes_schemas(kind: str) -> None:
    kubernetes_validate.validate(tenant_objects()[kind], "1.30.0", strict=True)


@pytest.mark.parametrize("kind", ["web", "worker", "release", "build"])
def test_each_tenant_pod_passes_pod_security_restricted(kind: str) -> None:
    pod, _ = tenant_pods()[kind]
    assert restricted_violations(pod) == []


@pytest.mark.parametrize("kind", ["web", "worker", "release", "build"])
def test_each_tenant_pod_has_requests_limits_and_no_api_token(kind: str) -> None:
    """Attack: tenant code reads /var/run/secrets/kubernetes.io/serviceaccount/token and
    talks to the API server as the namespace's default ServiceAccount."""
    pod, _ = tenant_pods()[kind]
    assert tenant_concerns(pod) == []


def test_the_checker_refuses_what_the_pods_used_to_be() -> None:
    """The old app pod: only allowPrivilegeEscalation false, a token, no resources."""
    old = {
        "containers": [
            {"name": "web", "image": "x", "securityContext": {"allowPrivilegeEscalation": False}}
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    }
    problems = restricted_violations(old)
    assert "web: capabilities must drop ALL" in problems
    assert "web: runAsNonRoot must be true" in problems
    assert "web: seccompProfile must be RuntimeDefault or Localhost" in problems
    assert "volume host: ['hostPath']" in problems
    assert "mounts the ServiceAccount token" in tenant_concerns(old)
    assert "web: no limits.memory" in tenant_concerns(old)


@pytest.mark.parametrize(
    ("kind", "source", "process"),
    [
        ("web", Source.APP, "web.x1y2z"),
        ("worker", Source.APP, "worker.x1y2z"),
        ("release", Source.RELEASE, "release"),
        ("build", Source.BUILD, "build.b1"),
    ],
)
def test_every_tenant_pod_s_output_reaches_its_app_s_log_stream(
    kind: str, source: Source, process: str
) -> None:
    """Fluent Bit keeps only pods labelled slipway.dev/app; the logs service maps the rest."""
    _, labels = tenant_pods()[kind]
    record = {"kubernetes": {"labels": labels, "pod_name": f"blog-{kind}-5d9f-x1y2z"}}
    target = target_from_kubernetes(record)
    assert target is not None
    assert (target.app, target.source, target.process) == ("blog", source, process)
