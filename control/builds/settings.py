"""The builders' settings, built once at the entry point and passed down."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BuildSettings:
    root: Path
    """Holds ``work/`` (builds in progress), ``slugs/`` (finished) and ``cache/`` (per app)."""
    concurrency: int = 2
    """Builds running at once; the rest queue. Two suits a 2-core machine."""
    timeout: float = 900.0
    """Seconds a whole build may take before its process group is killed (Heroku: 15 min)."""
    python: str = sys.executable
    """Interpreter that makes the apps' virtualenvs (its minor version is part of the cache key)."""
    pip_args: tuple[str, ...] = ()
    """Extra ``pip install`` arguments, e.g. ``--no-index`` on a machine without an index."""
    git: str = "git"
    npm: str = "npm"
    tail_lines: int = 40
    """Lines of output a BuildFailed carries back."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for build steps (proxy settings and such); never logged."""

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
    registry_secret: str = "slipway-registry"
    """A Secret of type kubernetes.io/dockerconfigjson mounted as DOCKER_CONFIG."""
    run_image: str | None = None
    """``-run-image`` for creator; None lets the builder choose."""
    git_image: str = "alpine/git:2.45.2"
    """Image of the init container that fetches the source."""
    service_account: str = "slipway-builder"
    active_deadline: int = 900
    """Seconds before Kubernetes kills the build Job (as the local builder's timeout)."""
    ttl_after_finished: int = 3600
    """Seconds a finished Job (and its pod's logs) is kept for inspection."""
