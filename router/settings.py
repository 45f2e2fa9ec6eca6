"""The router's settings, built once at the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RouterSettings:
    host: str = "0.0.0.0"
    """Address the proxy listens on."""
    port: int = 8080
    """Proxy port; 0 picks a free one (tests)."""
    ops_host: str = "0.0.0.0"
    """Address of the ops listener (/healthz /readyz /metrics), apart from app traffic."""
    ops_port: int = 9080
    """Ops port; with N workers, worker i serves ops on ops_port + i."""
    workers: int = 1
    """Processes sharing the proxy port through SO_REUSEPORT."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT (set for every worker when workers > 1)."""
    routes_file: Path | None = None
    """A static route table (JSON, the agent's wire form), until an agent feeds one."""
    connect_timeout: float = 5.0
    """Seconds to connect to an upstream before trying the next endpoint."""
    upstream_timeout: float = 30.0
    """Seconds to wait for the upstream's first response byte: Heroku's 30 s (H12)."""
    idle_timeout: float = 75.0
    """Seconds a client keep-alive connection may sit idle; above nginx's 60 s keepalive."""
    header_timeout: float = 30.0
    """Seconds a client may take to send a request head (slow-loris guard)."""
    max_request_line: int = 8192
    """Bytes in the request target before 414."""
    max_header_bytes: int = 8192
    """Bytes in all request header lines before 431."""
    pool_idle_timeout: float = 15.0
    """Seconds an idle upstream connection is kept for reuse."""
    pool_max_idle: int = 128
    """Idle upstream connections kept per endpoint."""
    drain_grace: float = 25.0
    """Seconds in-flight requests and WebSockets get after SIGTERM (below Kubernetes' 30 s)."""
    drain_delay: float = 0.0
    """Seconds to keep accepting after readiness fails, so the ingress stops sending first."""
    wake_header: bool = True
    """Add ``Slipway-Wake: Nms`` to responses of requests that waited for a wake."""
    protocol: str = "http"
    """X-Forwarded-Proto when the ingress did not set one."""
    underscores_in_headers: bool = False
    """Forward request headers whose names hold ``_``; off, they are dropped (as nginx does)."""
    logs_url: str | None = None
    """The logs service's HTTP API: router lines are posted to its ``/platform/lines`` too
    (so they reach the apps' streams when it runs in another process, as on Kubernetes)."""
