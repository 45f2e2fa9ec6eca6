"""Settings of the Kubernetes runtime, built once at the entry point."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KubeSettings:
    namespace: str = "default"
    """Namespace of the apps' Deployments, Services and of the Lease."""
    identity: str = "slipway-agent"
    """This replica's name in the Lease (the pod name on a cluster)."""
    lease_name: str = "slipway-agent"
    """The coordination.k8s.io Lease the agent replicas elect a leader with."""
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
