"""The logs service's settings: one frozen dataclass, built once from flags and ``SLIPWAY_*``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LogsSettings:
    http_host: str = "127.0.0.1"
    """Address of the HTTP API (SSE tail, archive reads, ops endpoints)."""
    http_port: int = 8082
    """Port of the HTTP API."""
    forward_host: str = "127.0.0.1"
    """Address of the Fluent forward receiver."""
    forward_port: int = 24224
    """Fluent forward port; 24224 is what every Fluent client defaults to."""
    shared_key: str | None = None
    """When set, forward clients must pass the HELO/PING/PONG handshake with this key."""
    server_hostname: str = "slipway-logs"
    """Our name in PONG replies."""
    ring_lines: int = 1500
    """Lines kept per app for history and resume (Logplex keeps 1500)."""
    ring_apps: int = 1000
    """Rings kept at once; past this the least recently written idle one is dropped."""
    subscriber_queue: int = 1000
    """Lines a slow subscriber may lag before it gets a ``dropped`` event instead."""
    heartbeat: float = 15.0
    """Seconds between SSE keep-alive comments (proxies close idle streams at 30-60 s)."""
    admin_token: str | None = None
    """Bearer token that may read every app's logs."""
    platform_token: str | None = None
    """Bearer token platform components post their lines with (``POST /platform/lines``:
    R14/R15 from the agent on Kubernetes); None turns that route off."""
    tokens_file: Path | None = None
    """File of ``app token`` lines: per-app read tokens."""
    control_url: str | None = None
    """The control plane's API: its tokens (admin, or the app's) may read logs too."""
    spool_dir: Path | None = None
    """Disk spool for the archive; no archive at all when unset."""
    spool_max_bytes: int = 512 * 1024 * 1024
    """Past this, lines are no longer archived and forward chunks are not acked."""
    s3_bucket: str | None = None
    """Bucket of the archive; with a spool but no bucket, lines only spool."""
    s3_endpoint: str | None = None
    """S3 endpoint URL (MinIO, moto, ...); AWS when unset."""
    s3_region: str | None = None
    """S3 region; None: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1."""
    flush_bytes: int = 4 * 1024 * 1024
    """An app's journal is uploaded once it holds this many bytes..."""
    flush_age: float = 60.0
    """...or once it is this many seconds old."""
    fsync: bool = False
    """fsync the spool before acking (survives power loss, costs ms per batch)."""
