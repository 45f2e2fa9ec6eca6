"""Settings of one exporter process, built once in the CLI from flags and SLIPWAY_* variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exporters.targets import Kind

#: The community exporters' ports, so existing scrape configs and firewalls carry over.
DEFAULT_PORTS = {Kind.POSTGRES: 9187, Kind.REDIS: 9121}


@dataclass(frozen=True)
class ExporterSettings:
    kind: Kind
    """Which exporter this process is: postgres or redis."""
    targets_file: Path
    """TOML file listing the targets; re-read when its mtime changes and on SIGHUP."""
    addon_targets_file: Path | None = None
    """A second targets file, the control plane's (its dedicated add-ons on Kubernetes, in a
    Secret it writes); read like ``targets_file``, a missing one lists no targets. Names
    must not repeat across the two files."""
    host: str = "127.0.0.1"
    """Address /metrics listens on."""
    port: int = 9187
    """Port /metrics listens on (9187 postgres, 9121 redis by default)."""
    interval: float = 15.0
    """Seconds between polls of a healthy target; Prometheus' usual scrape interval."""
    timeout: float = 5.0
    """Seconds one poll of one target may take; below ``interval`` so rounds never overlap."""
    concurrency: int = 16
    """Targets polled at once: bounds sockets and the load put on shared servers."""
    max_backoff: float = 300.0
    """Longest wait between attempts on a target that keeps failing."""
    long_query_seconds: float = 300.0
    """Postgres: an active query older than this is long-running (pg:diagnose uses 5 min)."""
    command_stats: bool = True
    """Redis: export per-command counters (INFO commandstats), a pair per command, as
    redis_exporter does by default; off saves a little on servers with many commands."""

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"interval must be positive, not {self.interval}")
        if not 0 < self.timeout < self.interval:
            raise ValueError(
                f"timeout ({self.timeout}s) must be positive and below "
                f"the interval ({self.interval}s)"
            )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, not {self.port}")
        if self.long_query_seconds <= 0:
            raise ValueError("long_query_seconds must be positive")
