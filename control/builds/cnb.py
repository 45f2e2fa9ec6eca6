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
``/cnb/process/<type>``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from control.builds.errors import BuildError
from control.builds.settings import CNBSettings

_APP = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_BUILD = re.compile(r"^[a-z0-9]{1,20}$")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_BUILDPACK = re.compile(r"^[A-Za-z0-9._/-]+(@[A-Za-z0-9._+-]+)?$")
_DIGEST = re.compile(r"\*\*\* Digest: (sha256:[0-9a-f]{64})")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_PROCESS = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
# The CNB platform API this Job speaks; creator refuses a version it does not know.
PLATFORM_API = "0.12"
# Paketo's builder images run as the cnb user (1000:1000); the volumes must be theirs.
CNB_UID = 1000
REPORT_PATH = "/layers/report.toml"
_FETCH_SCRIPT = (
    "set -eu\n"
    "git init -q /workspace\n"
    "cd /workspace\n"
    'git fetch -q --depth 1 "$SOURCE_URL" "$SOURCE_COMMIT"\n'
    "git checkout -q FETCH_HEAD\n"
    "rm -rf .git\n"
    'if [ -n "${ORDER_TOML:-}" ]; then printf \'%s\\n\' "$ORDER_TOML" > /layers/order.toml; fi\n'
)

Manifest = dict[str, Any]


def image_ref(settings: CNBSettings, app: str, build_id: str) -> str:
    return f"{settings.registry}/{app}:{build_id}"


def cache_ref(settings: CNBSettings, app: str) -> str:
    return f"{settings.registry}/{app}:build-cache"


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
) -> Manifest:
    """The batch/v1 Job for one build; a pure function of its arguments."""
    if not _APP.match(app):
        raise BuildError(f"app name {app!r} must be lowercase letters, digits and '-'")
    if not _BUILD.match(build_id):
        raise BuildError(f"build id {build_id!r} must be lowercase letters and digits")
    if not _COMMIT.match(commit):
        raise BuildError(f"commit {commit!r} is not a hexadecimal sha")
    # Job names become a pod label value (63 characters at most).
    name = f"build-{app[: 62 - len('build-') - len(build_id)]}-{build_id}"
    labels = {
        "app.kubernetes.io/name": "slipway-build",
        "app.kubernetes.io/component": "build",
        "app.kubernetes.io/managed-by": "slipway",
        "slipway.dev/app": app,
        "slipway.dev/build": build_id,
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
        # git wants a writable HOME; the image's user has none under runAsUser.
        {"name": "HOME", "value": "/tmp"},
    ]
    if buildpacks:
        fetch_env.append({"name": "ORDER_TOML", "value": order_toml(buildpacks)})
        args.append("-order=/layers/order.toml")
    args.append(image_ref(settings, app, build_id))
    mounts = [
        {"name": "workspace", "mountPath": "/workspace"},
        {"name": "layers", "mountPath": "/layers"},
    ]
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
                        "runAsUser": CNB_UID,
                        "runAsGroup": CNB_UID,
                        "fsGroup": CNB_UID,
                    },
                    "initContainers": [
                        {
                            "name": "fetch-source",
                            "image": settings.git_image,
                            "command": ["sh", "-c", _FETCH_SCRIPT],
                            "env": fetch_env,
                            "volumeMounts": mounts,
                        }
                    ],
                    "containers": [
                        {
                            "name": "creator",
                            "image": settings.builder_image,
                            "command": ["/cnb/lifecycle/creator"],
                            "args": args,
                            "env": [
                                {"name": "CNB_PLATFORM_API", "value": PLATFORM_API},
                                {"name": "DOCKER_CONFIG", "value": "/docker-config"},
                            ],
                            "volumeMounts": [
                                *mounts,
                                {
                                    "name": "docker-config",
                                    "mountPath": "/docker-config",
                                    "readOnly": True,
                                },
                            ],
                            "terminationMessagePath": REPORT_PATH,
                            "terminationMessagePolicy": "File",
                        }
                    ],
                    "volumes": [
                        {"name": "workspace", "emptyDir": {}},
                        {"name": "layers", "emptyDir": {}},
                        {
                            "name": "docker-config",
                            "secret": {
                                "secretName": settings.registry_secret,
                                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                            },
                        },
                    ],
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
