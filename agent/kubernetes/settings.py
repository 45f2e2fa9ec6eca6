"""Settings of the Kubernetes runtime, built once at the entry point."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.kubernetes.manifests import DRAIN_SECONDS, STOP_GRACE_SECONDS
from kit.durations import parse_duration


@dataclass(frozen=True, slots=True)
class KubeSettings:
    namespace: str = "default"
    """Namespace of the apps' Deployments, Services and of the Lease."""
    identity: str = "slipway-agent"
    """This replica's name in the Lease (the pod name on a cluster)."""
    lease_name: str = "slipway-agent"
    """The coordination.k8s.io Lease the agent replicas elect a leader with."""
    lease_namespace: str | None = None
    """Namespace of the Lease (the agent's own); None means ``namespace``."""
    lease_duration: float = 15.0
    """Seconds a leader holds the Lease without renewing: client-go's default."""
    renew_interval: float = 5.0
    """Seconds between renewals (and follower retries); a third of the duration."""
    watch_timeout: float = 300.0
    """timeoutSeconds of each watch request; the apiserver closes it and we resume."""
    backoff_initial: float = 0.5
    """First wait after a failed list or watch; doubled up to ``backoff_max``."""
    backoff_max: float = 30.0
    """Longest wait between attempts while the apiserver is unreachable."""
    app_port: int = 5000
    """The container port apps listen on ($PORT), as on Heroku-style platforms."""
    image_pull_secret: str | None = None
    """Name of a Secret with registry credentials for app images."""
    activity_interval: float = 10.0
    """Seconds between writes of each used app's last-activity annotation by the leader."""
    app_drain_seconds: int = DRAIN_SECONDS
    """Seconds a terminating web pod keeps serving before SIGTERM (its preStop sleep), while
    its endpoint leaves the routers; 0 turns the hook off."""
    app_stop_grace: int = STOP_GRACE_SECONDS
    """Seconds an app process has after SIGTERM before SIGKILL (Heroku's 30)."""
    keep_releases: int = 3
    """Env Secrets kept per app, newest releases first: pods of old ReplicaSets that restart
    during a rollout still find theirs."""

    def __post_init__(self) -> None:
        for name in ("app_drain_seconds", "app_stop_grace"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"SLIPWAY_KUBE_{name.upper()} must be 0 or more seconds, "
                    f"got {getattr(self, name)}"
                )


def from_env(environ: Mapping[str, str], **flags: Any) -> KubeSettings:
    """Settings from ``SLIPWAY_KUBE_*`` variables (as the chart sets them), then flags on top.

    A flag given as None leaves the variable's (or the default) value. A bad
    number raises ValueError naming the variable.
    """
    values: dict[str, Any] = {}
    for name, kind in _ENV.items():
        raw = environ.get(f"SLIPWAY_KUBE_{name.upper()}")
        if raw is None or raw == "":
            continue
        if kind is float:
            try:
                values[name] = parse_duration(raw)
            except ValueError as exc:
                raise ValueError(f"SLIPWAY_KUBE_{name.upper()}: {exc}") from exc
        elif kind is int:
            try:
                values[name] = int(raw)
            except ValueError as exc:
                raise ValueError(f"SLIPWAY_KUBE_{name.upper()}: not a number: {raw!r}") from exc
        else:
            values[name] = raw
    values.update({k: v for k, v in flags.items() if v is not None})
    return KubeSettings(**values)


_ENV: dict[str, type] = {
    "namespace": str,
    "identity": str,
    "lease_name": str,
    "lease_namespace": str,
    "lease_duration": float,
    "renew_interval": float,
    "watch_timeout": float,
    "backoff_initial": float,
    "backoff_max": float,
    "app_port": int,
    "image_pull_secret": str,
    "keep_releases": int,
    "app_drain_seconds": int,
    "app_stop_grace": int,
    "activity_interval": float,
}
