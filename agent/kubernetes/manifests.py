"""Pure builders of the objects an app process type becomes: a Deployment, and a Service for web.

Names are ``<app>-<process>``; labels carry the app and the process type, so
every watch selects on ``slipway.dev/app`` and maps an object back to its
(app, process) key from labels alone (EndpointSlices inherit the Service's).
"""

from __future__ import annotations

from typing import Any

from agent.runtime import ProcessSpec

APP_LABEL = "slipway.dev/app"
PROCESS_LABEL = "slipway.dev/process"
RELEASE_LABEL = "slipway.dev/release"
#: Wall-clock seconds (epoch) of the app's last request, written by the leader agent.
LAST_ACTIVITY_ANNOTATION = "slipway.dev/last-activity"
MANAGED_BY = "slipway"
#: Selector of every object the runtime watches.
SELECTOR = APP_LABEL

# Objects are plain dicts: the wire form, without the client's model classes.
Manifest = dict[str, Any]


def object_name(app: str, process: str) -> str:
    return f"{app}-{process}"


def key_of(obj: Manifest) -> tuple[str, str] | None:
    """(app, process) of a watched object from its labels; None when not ours."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    app, process = labels.get(APP_LABEL), labels.get(PROCESS_LABEL)
    if not app or not process:
        return None
    return str(app), str(process)


def labels(app: str, process: str) -> dict[str, str]:
    return {
        APP_LABEL: app,
        PROCESS_LABEL: process,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": process,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def command_of(spec: ProcessSpec) -> list[str]:
    """The container command: the buildpack's process launcher, or the Procfile line.

    A Cloud Native Buildpacks image has ``/cnb/process/<type>`` for each
    Procfile entry; an explicit command goes through the CNB launcher, which
    runs a single string in a shell with the buildpacks' environment.
    """
    if not spec.command:
        return [f"/cnb/process/{spec.process}"]
    return ["/cnb/lifecycle/launcher", spec.command]


def deployment(spec: ProcessSpec, *, port: int, replicas: int | None) -> Manifest:
    """The Deployment of one process type.

    ``replicas`` is None for an update: the scale subresource owns the count,
    so re-applying a spec never wakes or sleeps the app by accident.
    """
    if not spec.image:
        raise ValueError(f"{spec.app}/{spec.process}: an image is required on Kubernetes")
    name = object_name(spec.app, spec.process)
    selector = {APP_LABEL: spec.app, PROCESS_LABEL: spec.process}
    env = [{"name": "PORT", "value": str(port)}]
    env += [{"name": k, "value": v} for k, v in sorted(spec.env.items()) if k != "PORT"]
    probe: Manifest = (
        {"httpGet": {"path": spec.health_path, "port": "http"}}
        if spec.health_path
        else {"tcpSocket": {"port": "http"}}
    )
    probe |= {"periodSeconds": 1, "failureThreshold": 3}
    container: Manifest = {
        "name": spec.process,
        "image": spec.image,
        "command": command_of(spec),
        "env": env,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if spec.process == "web":
        container["readinessProbe"] = probe
    spec_body: Manifest = {
        "selector": {"matchLabels": selector},
        # Waking must not wait for an old pod to go: surge, never take one away.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {
                "labels": labels(spec.app, spec.process) | {RELEASE_LABEL: str(spec.release)},
            },
            "spec": {"containers": [container], "enableServiceLinks": False},
        },
    }
    if replicas is not None:
        spec_body["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels(spec.app, spec.process)},
        "spec": spec_body,
    }


def service(spec: ProcessSpec, *, port: int) -> Manifest:
    """The web Service: only its EndpointSlices are used (pod IPs, no hop through the VIP)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object_name(spec.app, spec.process),
            "labels": labels(spec.app, spec.process),
        },
        "spec": {
            "selector": {APP_LABEL: spec.app, PROCESS_LABEL: spec.process},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            # Not-ready pods still appear in the slices, with ready: false; keeping
            # this off is what makes "ready" mean the readiness probe passed.
            "publishNotReadyAddresses": False,
        },
    }


def scale_patch(replicas: int) -> Manifest:
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    return {"spec": {"replicas": replicas}}


def activity_patch(at: float) -> Manifest:
    return {"metadata": {"annotations": {LAST_ACTIVITY_ANNOTATION: f"{at:.3f}"}}}


def last_activity(obj: Manifest) -> float | None:
    """The persisted last-activity time of a Deployment; None if absent or unreadable."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(LAST_ACTIVITY_ANNOTATION)
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None
