"""The Kubernetes builder, as data: the Job that runs the CNB lifecycle, and reading its result.

One Job per build. An init container fetches the source at the commit with
git into a shared ``emptyDir``; the main container runs
``/cnb/lifecycle/creator`` from the builder image (Paketo's by default),
which detects, restores the cache image, builds, and exports the app image
to the registry. Registry credentials come from a ``dockerconfigjson`` Secret
mounted as ``DOCKER_CONFIG``. The creator's report (image tags and digest) is
written to the container's termination-message path, so the digest is in the
pod status without reading logs; ``digest_from_log`` reads it from the
creator's output as well, for when the status was lost.

Procfile types become launch processes: the app image runs them as
``/cnb/process/<type>``. The init container refuses a source without a
Procfile and writes it to its own termination message, so the process types
come back in the pod status as the digest does.

``outcome(job, pod)`` is the pure reading of the Job and its pod that the
builder (``kube.py``) acts on: still running, succeeded (with the report and
the Procfile), or failed with a reason a person can act on.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control.builds.errors import BuildError
from control.builds.settings import CNBSettings
from control.builds.sources import COMMIT, protocols

Manifest = dict[str, Any]

_APP = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_BUILD = re.compile(r"^[a-z0-9]{1,20}$")
_BUILDPACK = re.compile(r"^[A-Za-z0-9._/-]+(@[A-Za-z0-9._+-]+)?$")
_DIGEST = re.compile(r"\*\*\* Digest: (sha256:[0-9a-f]{64})")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_PROCESS = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
# The CNB platform API this Job speaks; creator refuses a version it does not know.
PLATFORM_API = "0.12"
# Paketo's builder images run as the cnb user (1000:1000); the volumes must be theirs.
CNB_UID = 1000
REPORT_PATH = "/layers/report.toml"
#: Pod Security "restricted": buildpack scripts are tenant code.
_CONTAINER_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
#: A build's share of a node: buildpacks compile (Go, Node, JVM); the fetch is only git.
_BUILD_RESOURCES: Manifest = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}
_FETCH_RESOURCES: Manifest = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
FETCH_CONTAINER = "fetch-source"
CREATOR_CONTAINER = "creator"
FETCH_MESSAGE_PATH = "/dev/termination-log"
_FETCH_SCRIPT = (
    "set -eu\n"
    "git init -q /workspace\n"
    "cd /workspace\n"
    'git fetch -q --depth 1 -- "$SOURCE_URL" "$SOURCE_COMMIT"\n'
    "git checkout -q FETCH_HEAD\n"
    "rm -rf .git\n"
    "if [ ! -f Procfile ]; then\n"
    "  echo 'no Procfile at the root of the source: it names the process types to run' >&2\n"
    "  exit 1\n"
    "fi\n"
    # The termination message carries the Procfile back in the pod status (4 KiB at most).
    f"cp Procfile {FETCH_MESSAGE_PATH}\n"
    'if [ -n "${ORDER_TOML:-}" ]; then printf \'%s\\n\' "$ORDER_TOML" > /layers/order.toml; fi\n'
)


def image_ref(settings: CNBSettings, app: str, build_id: str) -> str:
    return f"{settings.registry}/{app}:{build_id}"


def cache_ref(settings: CNBSettings, app: str) -> str:
    return f"{settings.registry}/{app}:build-cache"


def release_ref(settings: CNBSettings, app: str, digest: str) -> str:
    """The image a release runs, by digest, as the nodes pull it: the pull registry's name
    for what creator pushed (same repository, same digest, another host)."""
    return f"{settings.pull_registry or settings.registry}/{app}@{digest}"


def order_toml(buildpacks: Sequence[str]) -> str:
    """``order.toml`` with one group: the app's buildpacks in order, ``id`` or ``id@version``."""
    lines = ["[[order]]"]
    for ref in buildpacks:
        if not _BUILDPACK.match(ref):
            raise BuildError(f"buildpack {ref!r} is not an id or id@version")
        bp_id, _, version = ref.partition("@")
        lines += ["", "[[order.group]]", f'id = "{bp_id}"']
        if version:
            lines.append(f'version = "{version}"')
    return "\n".join(lines) + "\n"


def build_job(
    app: str,
    build_id: str,
    *,
    git_url: str,
    commit: str,
    settings: CNBSettings,
    buildpacks: Sequence[str] = (),
    tenant: bool = False,
    git_env: Mapping[str, str] | None = None,
) -> Manifest:
    """The batch/v1 Job for one build; a pure function of its arguments.

    ``tenant``: an app token named the source, so git may fetch over https and ssh only.
    ``git_env``: more environment for the fetch (``Destination.git_config``: no redirects,
    the host pinned to the addresses checked).
    """
    if not _APP.match(app):
        raise BuildError(f"app name {app!r} must be lowercase letters, digits and '-'")
    if not _BUILD.match(build_id):
        raise BuildError(f"build id {build_id!r} must be lowercase letters and digits")
    if not COMMIT.match(commit):
        raise BuildError(f"commit {commit!r} is not a hexadecimal sha")
    # Job names become a pod label value (63 characters at most).
    name = f"build-{app[: 62 - len('build-') - len(build_id)]}-{build_id}"
    labels = {
        "app.kubernetes.io/name": "slipway-build",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "slipway",
        "slipway.dev/app": app,
        "slipway.dev/build": build_id,
        # Fluent Bit ships the pod's output to the logs service as this app's build lines
        # (process build.<id>, logs/mapping.py), as the builder's own sink names them.
        "slipway.dev/source": "build",
    }
    args = [
        "-app=/workspace",
        "-layers=/layers",
        f"-cache-image={cache_ref(settings, app)}",
        f"-report={REPORT_PATH}",
        "-log-level=info",
    ]
    if settings.run_image:
        args.append(f"-run-image={settings.run_image}")
    fetch_env: list[Mapping[str, str]] = [
        {"name": "SOURCE_URL", "value": git_url},
        {"name": "SOURCE_COMMIT", "value": commit},
        {"name": "GIT_ALLOW_PROTOCOL", "value": protocols(tenant=tenant)},
        # git wants a writable HOME; the image's user has none under runAsUser.
        {"name": "HOME", "value": "/tmp"},
        *({"name": name, "value": value} for name, value in (git_env or {}).items()),
    ]
    if buildpacks:
        fetch_env.append({"name": "ORDER_TOML", "value": order_toml(buildpacks)})
        args.append("-order=/layers/order.toml")
    args.append(image_ref(settings, app, build_id))
    mounts = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "layers", "mountPath": "/layers"},
    ]
    creator_env = [{"name": "CNB_PLATFORM_API", "value": PLATFORM_API}]
    if settings.insecure_registry:
        # Plain HTTP to the push registry's host alone; the run image's registry keeps TLS.
        # The variable, not -insecure-registry: lifecycle 0.18+ reads it under any platform
        # API, while the flag exists only from platform API 0.13 and creator exits on it here.
        host = settings.registry.partition("/")[0]
        creator_env.append({"name": "CNB_INSECURE_REGISTRIES", "value": host})
    creator_mounts: list[Manifest] = list(mounts)
    volumes: list[Manifest] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "layers", "emptyDir": {}},
    ]
    if settings.registry_secret:
        creator_env.append({"name": "DOCKER_CONFIG", "value": "/docker-config"})
        creator_mounts.append(
            {"name": "docker-config", "mountPath": "/docker-config", "readOnly": True}
        )
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": settings.registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            # A failed build is reported, not retried: the same commit fails the same way.
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.active_deadline,
            "ttlSecondsAfterFinished": settings.ttl_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": CNB_UID,
                        "runAsGroup": CNB_UID,
                        "fsGroup": CNB_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [
                        {
                            "name": FETCH_CONTAINER,
                            "image": settings.git_image,
                            "command": ["sh", "-c", _FETCH_SCRIPT],
                            "env": fetch_env,
                            "volumeMounts": mounts,
                            "terminationMessagePath": FETCH_MESSAGE_PATH,
                            "terminationMessagePolicy": "File",
                            "resources": copy.deepcopy(_FETCH_RESOURCES),
                            "securityContext": copy.deepcopy(_CONTAINER_SECURITY),
                        }
                    ],
                    "containers": [
                        {
                            "name": CREATOR_CONTAINER,
                            "image": settings.builder_image,
                            "command": ["/cnb/lifecycle/creator"],
                            "args": args,
                            "env": creator_env,
                            "volumeMounts": creator_mounts,
                            "terminationMessagePath": REPORT_PATH,
                            "terminationMessagePolicy": "File",
                            "resources": copy.deepcopy(_BUILD_RESOURCES),
                            "securityContext": copy.deepcopy(_CONTAINER_SECURITY),
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def process_command(process_type: str) -> list[str]:
    """The command that runs a Procfile type in a CNB app image: its launcher symlink."""
    if not _PROCESS.match(process_type):
        raise BuildError(f"process type {process_type!r} is not a Procfile name")
    return [f"/cnb/process/{process_type}"]


def digest_from_report(text: str) -> str:
    """The image digest in creator's ``report.toml`` (``[image] digest = "sha256:..."``)."""
    try:
        report = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"creator report is not TOML: {exc}") from exc
    image = report.get("image")
    digest = image.get("digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise BuildError("creator report has no image digest (was the image exported?)")
    return digest


def digest_from_log(lines: Sequence[str]) -> str:
    """The digest from creator's ``*** Digest: sha256:...`` line; the last one wins."""
    for line in reversed(lines):
        match = _DIGEST.search(line)
        if match:
            return match.group(1)
    raise BuildError("creator output has no '*** Digest:' line (the export did not finish)")


# Lifecycle's restorer and exporter say these when a layer came from the cache image.
_CACHE_REUSE = re.compile(r"Reusing cache layer|Restoring data for .* from cache")


def cache_hit_from_log(lines: Sequence[str]) -> bool:
    """Whether creator reused a layer of the app's cache image (its log says so)."""
    return any(_CACHE_REUSE.search(line) for line in lines)


def job_labels(app: str, build_id: str) -> str:
    """The label selector of one build's Job and pod."""
    return f"slipway.dev/app={app},slipway.dev/build={build_id}"


# Waiting reasons after which the container never starts on its own: the image cannot be
# pulled or the container cannot be made (a missing Secret key, a bad command).
STUCK = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a build Job ended: a failure to report, or creator's report and the Procfile."""

    failure: str | None = None
    report: str | None = None
    """creator's termination message (its ``report.toml``); None if the status lost it."""
    procfile: str | None = None
    """fetch-source's termination message: the source's Procfile."""
    finished: bool = True
    """Kubernetes ended the Job itself; False when the builder has to delete it."""
    by_job: bool = False
    """Read from the Job's conditions alone: a fresh read of the pod may say more."""


def container_status(pod: Manifest | None, name: str) -> Manifest | None:
    """One container's status (init containers included) from a pod, if reported yet."""
    status = (pod or {}).get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for entry in status.get(key) or ():
            if entry.get("name") == name:
                return dict(entry)
    return None


def started(pod: Manifest | None, name: str) -> bool:
    """The container runs or has run: its log can be read."""
    state = (container_status(pod, name) or {}).get("state") or {}
    return "running" in state or "terminated" in state


def outcome(job: Manifest | None, pod: Manifest | None) -> Outcome | None:
    """The end of a build as its Job and pod show it; None while it is still going.

    The pod is read first because it says why (an exit status, an image that
    cannot be pulled); the Job's own conditions cover what the pod cannot say
    (the deadline passed, the pod was deleted or evicted).
    """
    for name in (FETCH_CONTAINER, CREATOR_CONTAINER):
        entry = container_status(pod, name) or {}
        state = entry.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in STUCK:
            image = entry.get("image") or "its image"
            return Outcome(
                failure=f"{name} cannot start: {waiting['reason']} for {image}: "
                f"{waiting.get('message') or 'no message'}",
                finished=False,
            )
        terminated = state.get("terminated")
        if terminated is None:
            continue
        code = terminated.get("exitCode")
        if code != 0:
            what = "fetching the source" if name == FETCH_CONTAINER else "creator"
            reason = terminated.get("reason") or "Error"
            return Outcome(failure=f"{what} failed (exit status {code}, {reason})")
        if name == CREATOR_CONTAINER:
            fetch = ((container_status(pod, FETCH_CONTAINER) or {}).get("state") or {}).get(
                "terminated"
            ) or {}
            return Outcome(
                report=terminated.get("message") or None,
                procfile=fetch.get("message") or None,
            )
    phase = ((pod or {}).get("status") or {}).get("phase")
    for condition in ((job or {}).get("status") or {}).get("conditions") or ():
        if condition.get("status") != "True":
            continue
        if (
            pod is not None
            and phase not in ("Succeeded", "Failed")
            and condition.get("reason") != "DeadlineExceeded"
        ):
            # The Job and its pod come by separate watches: the pod's own end, which says
            # more (an exit status, the report), is on its way.
            continue
        if condition.get("type") == "Failed":
            return Outcome(
                failure=f"the build Job failed: {condition.get('reason') or 'Failed'}: "
                f"{condition.get('message') or 'no message'}",
                by_job=True,
            )
        if condition.get("type") == "Complete":
            return Outcome(
                failure="the build Job completed but its pod's status is gone", by_job=True
            )
    if phase == "Failed":
        status = (pod or {}).get("status") or {}
        return Outcome(
            failure=f"the build pod failed: {status.get('reason') or 'Failed'}: "
            f"{status.get('message') or 'no message'}"
        )
    return None
