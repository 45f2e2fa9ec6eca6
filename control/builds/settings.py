"""The builders' settings, built once at the entry point and passed down."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from control.builds.egress import Egress


@dataclass(frozen=True, slots=True)
class BuildSettings:
    root: Path
    """Holds ``work/`` (builds in progress), ``slugs/`` (finished) and ``cache/`` (per app)."""
    concurrency: int = 2
    """Builds running at once; the rest queue. Two suits a 2-core machine."""
    timeout: float = 900.0
    """Seconds a whole build may take before its process group is killed (Heroku: 15 min)."""
    python: str | None = None
    """The one interpreter that makes the apps' virtualenvs; None: every Python 3 this
    machine has, the app choosing by .python-version or runtime.txt (``pythons.py``).
    The interpreter's path and version are part of the dependency cache key."""
    pip_python: str = sys.executable
    """Whose pip installs into the apps' virtualenvs (``pip --python``): slipway's own."""
    pip_args: tuple[str, ...] = ()
    """Extra ``pip install`` arguments, e.g. ``--no-index`` on a machine without an index."""
    git: str = "git"
    npm: str = "npm"
    tail_lines: int = 40
    """Lines of output a BuildFailed carries back."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for build steps (proxy settings and such); never logged."""
    egress: Egress = field(default_factory=Egress)
    """Inward addresses a tenant's source may still be fetched from (``egress.py``)."""

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def slugs_dir(self) -> Path:
        return self.root / "slugs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"


@dataclass(frozen=True, slots=True)
class CNBSettings:
    namespace: str = "slipway-builds"
    """Namespace the build Jobs run in."""
    builder_image: str = "paketobuildpacks/builder-jammy-base"
    """A CNB builder image: it carries /cnb/lifecycle/creator and the buildpacks."""
    registry: str = "registry.slipway.svc:5000"
    """Where app images and their cache images are pushed (``<registry>/<app>``)."""
    pull_registry: str | None = None
    """Where app pods pull the same images from; None: the push registry. The chart's
    in-cluster registry is pushed to by its Service name and pulled as ``localhost:5000``
    (a node-local proxy), which containerd reaches over plain HTTP without node config."""
    insecure_registry: bool = False
    """The push registry speaks plain HTTP (the in-cluster one): creator is told so for its
    host only (``CNB_INSECURE_REGISTRIES``, lifecycle 0.18+)."""
    registry_secret: str | None = "slipway-registry"
    """A Secret of type kubernetes.io/dockerconfigjson mounted as DOCKER_CONFIG; None for a
    registry that asks for no credentials (the in-cluster one)."""
    run_image: str | None = None
    """``-run-image`` for creator; None lets the builder choose."""
    git_image: str = "alpine/git:2.45.2"
    """Image of the init container that fetches the source."""
    service_account: str = "slipway-builder"
    active_deadline: int = 900
    """Seconds before Kubernetes kills the build Job (as the local builder's timeout)."""
    ttl_after_finished: int = 3600
    """Seconds a finished Job (and its pod's logs) is kept for inspection."""
    egress: Egress = field(default_factory=Egress)
    """Inward addresses a tenant's source may still be fetched from (``egress.py``)."""
