"""Pure builders of the objects an app process type becomes: a Deployment, and a Service for web.

Names are ``<app>-<process>``; labels carry the app and the process type, so
every watch selects on ``slipway.dev/app`` and maps an object back to its
(app, process) key from labels alone (EndpointSlices inherit the Service's).
"""

from __future__ import annotations

import copy
import hashlib
import json

from agent.dynosize import MB, parse_size
from agent.once import RELEASE_DYNO
from agent.runtime import ProcessSpec
from kit import kube

# Objects are plain dicts: the wire form, without the client's model classes (one alias,
# kit.kube's, for the agent and the build Jobs alike).
Manifest = kube.Manifest

APP_LABEL = "slipway.dev/app"
PROCESS_LABEL = "slipway.dev/process"
RELEASE_LABEL = "slipway.dev/release"
#: Wall-clock seconds (epoch) of the app's last request, written by the leader agent.
LAST_ACTIVITY_ANNOTATION = "slipway.dev/last-activity"
#: The app's whole definition (agent/definition.py JSON, env values left out) on each of its
#: Deployments: a restarted or newly elected agent learns every app from the cluster.
DEFINITION_ANNOTATION = "slipway.dev/definition"
#: Hash of what ``apply`` last wrote, so re-applying an unchanged spec sends nothing.
APPLIED_ANNOTATION = "slipway.dev/applied"
MANAGED_BY = "slipway"
#: Pod Security "restricted" for tenant code, at the pod level: non-root (CNB images name a
#: numeric user, which the kubelet needs to check it), the runtime's seccomp profile.
POD_SECURITY: Manifest = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
#: ...and per container: no setuid gain, no capabilities at all.
CONTAINER_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
#: Seconds a terminating web pod keeps serving before its SIGTERM (the preStop sleep): its
#: endpoint turns terminating in the EndpointSlice as deletion starts, and the agent's watch
#: and its push to every router take that long at most; without it a request can be routed
#: to a process that already got SIGTERM (LocalRuntime's ``retire_delay`` is the same idea).
DRAIN_SECONDS = 5
#: Seconds a process has after SIGTERM before SIGKILL: Heroku's 30.
STOP_GRACE_SECONDS = 30


def resources_of(spec: ProcessSpec) -> Manifest:
    """Requests and limits of one process, from its size (agent/dynosize.py).

    The memory request is the quota (what the scheduler reserves, and R14's line);
    the memory limit is the hard limit, twice the quota, where the kernel's OOM
    kill is Heroku's R15. Without requests and limits a namespace with a
    ResourceQuota and no LimitRange refuses every pod.
    """
    size = parse_size(spec.size)
    return {
        "requests": {"cpu": _cpu(size.cpu_request), "memory": f"{size.memory_mb}Mi"},
        "limits": {
            "cpu": _cpu(size.cpu_limit),
            "memory": f"{size.hard_limit_bytes // MB}Mi",
        },
    }


def _cpu(cores: float) -> str:
    return f"{round(cores * 1000)}m"


#: Selector of every object the runtime watches.
SELECTOR = APP_LABEL


def object_name(app: str, process: str) -> str:
    return f"{app}-{process}"


def key_of(obj: Manifest) -> tuple[str, str] | None:
    """(app, process) of a watched object from its labels; None when not ours, or when it
    belongs to a one-off run (its pods carry the app's labels for the logs, not as one of a
    process type's instances)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    app, process = labels.get(APP_LABEL), labels.get(PROCESS_LABEL)
    if not app or not process or RUN_LABEL in labels:
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
    """The container command: the image's launcher for the process type.

    The build (control/builds/cnb.py) exports a Cloud Native Buildpacks image
    with ``/cnb/process/<type>`` for each Procfile entry, which runs that
    line with the buildpacks' environment; the spec's command is the same
    line, kept in the definition for people.
    """
    return [f"/cnb/process/{spec.process}"]


def env_secret_name(app: str, release: int) -> str:
    return f"{app}-env-v{release}"


def env_secret(spec: ProcessSpec) -> Manifest:
    """The app's config vars for one release: immutable, so a pod of an old ReplicaSet that
    restarts still gets the config it was started with."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": env_secret_name(spec.app, spec.release),
            "labels": {
                APP_LABEL: spec.app,
                RELEASE_LABEL: str(spec.release),
                "app.kubernetes.io/name": spec.app,
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "type": "Opaque",
        "immutable": True,
        "stringData": {k: v for k, v in sorted(spec.env.items()) if k != "PORT"},
    }


def release_of(obj: Manifest) -> int | None:
    raw = ((obj.get("metadata") or {}).get("labels") or {}).get(RELEASE_LABEL)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def stale_secrets(secrets: list[Manifest], *, keep: int) -> list[str]:
    """Names of env Secrets beyond the ``keep`` newest releases (old ReplicaSets' fallback)."""
    releases = sorted({r for s in secrets if (r := release_of(s)) is not None}, reverse=True)
    kept = set(releases[:keep])
    return sorted(
        str(s["metadata"]["name"])
        for s in secrets
        if (r := release_of(s)) is not None and r not in kept
    )


def definition_annotation(definition: Manifest) -> str:
    """The definition as stored on a Deployment: env values are in the Secret, never here."""
    return json.dumps({k: v for k, v in definition.items() if k != "env"}, sort_keys=True)


def definition_of(obj: Manifest) -> Manifest | None:
    """The definition a Deployment carries; None when absent or unreadable."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(DEFINITION_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def applied_hash(body: Manifest) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def deployment(
    spec: ProcessSpec,
    *,
    port: int,
    replicas: int | None,
    definition: Manifest | None = None,
    pull_secret: str | None = None,
    drain: int = DRAIN_SECONDS,
    stop_grace: int = STOP_GRACE_SECONDS,
) -> Manifest:
    """The Deployment of one process type.

    ``replicas`` is None for an update: the scale subresource owns the count,
    so re-applying a spec never wakes or sleeps the app by accident. Config
    vars come from the release's Secret (``envFrom``), never inline. A web pod
    sleeps ``drain`` seconds in preStop before its SIGTERM (see ``stopping``).
    """
    if not spec.image:
        raise ValueError(f"{spec.app}/{spec.process}: an image is required on Kubernetes")
    name = object_name(spec.app, spec.process)
    selector = {APP_LABEL: spec.app, PROCESS_LABEL: spec.process}
    # Heroku's platform variables; ``env`` wins over the Secret's ``envFrom``, as on Heroku
    # the platform's own win over config vars. A Deployment's pods have no ordinal, so
    # every replica is ``<type>.1`` (docs/agent.md).
    env = [{"name": "PORT", "value": str(port)}, {"name": "DYNO", "value": f"{spec.process}.1"}]
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
        "envFrom": [{"secretRef": {"name": env_secret_name(spec.app, spec.release)}}],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": resources_of(spec),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    if spec.process == "web":
        container["readinessProbe"] = probe
    pod = tenant_pod([container], pull_secret=pull_secret)
    pod |= stopping(container, drain=drain if spec.process == "web" else 0, grace=stop_grace)
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
            "spec": pod,
        },
    }
    metadata: Manifest = {"name": name, "labels": labels(spec.app, spec.process)}
    if definition is not None:
        metadata["annotations"] = {DEFINITION_ANNOTATION: definition_annotation(definition)}
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": spec_body,
    }
    # The hash covers everything but the replicas, which only the scale subresource sets.
    metadata.setdefault("annotations", {})[APPLIED_ANNOTATION] = applied_hash(body)
    if replicas is not None:
        spec_body["replicas"] = replicas
    return body


def stopping(container: Manifest, *, drain: int, grace: int) -> Manifest:
    """How a pod stops: ``container`` gets a preStop sleep of ``drain`` seconds (none when 0),
    and the pod fields returned give the process its whole ``grace`` after SIGTERM.

    The kubelet counts the preStop hook inside terminationGracePeriodSeconds, so the period
    is the sum: with the default 30 s the app would have only ``30 - drain`` after SIGTERM.
    The hook is the ``sleep`` action (Kubernetes 1.30, as the router's): an ``exec`` of
    ``sleep`` would need a shell and coreutils in the image, which tiny run images lack.
    """
    if drain < 0 or grace < 0:
        raise ValueError(f"drain and grace must be >= 0, got {drain} and {grace}")
    if drain:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": drain}}}
    return {"terminationGracePeriodSeconds": drain + grace}


def tenant_pod(containers: list[Manifest], *, pull_secret: str | None) -> Manifest:
    """The pod spec fields every pod running tenant code shares: restricted, no API token,
    no Service environment variables (they would list the platform's Services)."""
    return {
        "containers": containers,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY),
        **({"imagePullSecrets": [{"name": pull_secret}]} if pull_secret else {}),
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


#: Pod template annotation a restart changes, so the Deployment rolls its pods (as
#: ``kubectl rollout restart`` does with its own annotation).
RESTARTED_ANNOTATION = "slipway.dev/restarted-at"


def restart_patch(at: float) -> Manifest:
    return {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_ANNOTATION: f"{at:.3f}"}}}}
    }


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


#: The container of a one-off Job, and the process type its Job is labelled with.
ONCE_CONTAINER = "release"
#: Pod label naming the one-off run a pod belongs to: key_of leaves its pods out of the
#: process types' instances.
RUN_LABEL = "slipway.dev/run"
#: Pod label telling the logs service (logs/mapping.py) whose lines a pod's output is.
SOURCE_LABEL = "slipway.dev/source"
#: The CNB launcher: with the command as its one argument it runs it in a shell, with the
#: buildpacks' environment (PATH, the app directory as working directory).
LAUNCHER = "/cnb/lifecycle/launcher"
#: Seconds a finished one-off Job (and its pod's log) stays for people to look at.
RUN_TTL = 3600


def once_job_name(app: str, release: int, suffix: str) -> str:
    return f"{app}-run-v{release}-{suffix}"


def once_job(
    spec: ProcessSpec,
    command: str,
    *,
    name: str,
    timeout: float,
    pull_secret: str | None = None,
    dyno: str = RELEASE_DYNO,
) -> Manifest:
    """A Job running ``command`` once in the release's image with the release's env Secret,
    as dyno ``dyno`` (its DYNO: ``release.1``, or a ``slipway run``'s ``run.1234``).

    Never retried (a release command that fails must stop the release, not run
    twice), bounded by ``activeDeadlineSeconds`` (image pull included), kept
    ``RUN_TTL`` seconds after it ends.
    """
    if not spec.image:
        raise ValueError(f"{spec.app}: an image is required on Kubernetes")
    # The app's labels, so Fluent Bit ships the release phase's output to the app's stream.
    pod_labels = {
        APP_LABEL: spec.app,
        PROCESS_LABEL: ONCE_CONTAINER,
        SOURCE_LABEL: "release",
        RUN_LABEL: name,
        "app.kubernetes.io/name": spec.app,
        "app.kubernetes.io/component": ONCE_CONTAINER,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    container: Manifest = {
        "name": ONCE_CONTAINER,
        "image": spec.image,
        "command": [LAUNCHER],
        "args": [command],
        "env": [{"name": "DYNO", "value": dyno}],
        "envFrom": [{"secretRef": {"name": env_secret_name(spec.app, spec.release)}}],
        "resources": resources_of(spec),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {
                APP_LABEL: spec.app,
                PROCESS_LABEL: ONCE_CONTAINER,
                RELEASE_LABEL: str(spec.release),
                RUN_LABEL: name,
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(timeout + 0.999)),
            "ttlSecondsAfterFinished": RUN_TTL,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    **tenant_pod([container], pull_secret=pull_secret),
                },
            },
        },
    }


def once_outcome(job: Manifest | None) -> tuple[bool, str] | None:
    """(ok, why) once a one-off Job has ended; None while it runs."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        kind = condition.get("type")
        if kind in ("Complete", "SuccessCriteriaMet"):
            return True, ""
        if kind in ("Failed", "FailureTarget"):
            reason = condition.get("reason") or "Failed"
            if reason == "DeadlineExceeded":
                return False, "timed out"
            return False, f"{reason}: {condition.get('message') or 'no message'}"
    return None
