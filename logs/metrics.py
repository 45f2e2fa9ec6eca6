"""The logs service's Prometheus metrics, registered on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class LogsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "slipway_logs_lines_received_total",
            "Lines accepted into an app's stream, by source.",
            ["source"],
            registry=registry,
        )
        self.archived = Counter(
            "slipway_logs_lines_archived_total",
            "Lines uploaded to the S3 archive.",
            registry=registry,
        )
        self.dropped = Counter(
            "slipway_logs_lines_dropped_total",
            "Lines not delivered somewhere, by reason (slow_subscriber, unknown_app, "
            "spool_full, bad_source, error).",
            ["reason"],
            registry=registry,
        )
        self.relabelled = Counter(
            "slipway_logs_lines_relabelled_total",
            "Forwarded lines that claimed a platform source (router, release) and were "
            "kept as app lines instead, by the source claimed.",
            ["claimed"],
            registry=registry,
        )
        self.signals_dropped = Counter(
            "slipway_logs_forward_signals_dropped_total",
            "Forward frames of another signal than logs (Fluent Bit's metrics, traces): "
            "acked and not kept, by signal.",
            ["signal"],
            registry=registry,
        )
        self.connections = Gauge(
            "slipway_logs_forward_connections",
            "Open forward-protocol connections.",
            registry=registry,
        )
        self.frame_errors = Counter(
            "slipway_logs_forward_errors_total",
            "Forward connections closed for a malformed frame or failed handshake, by reason.",
            ["reason"],
            registry=registry,
        )
        self.subscribers = Gauge(
            "slipway_logs_sse_subscribers",
            "Open SSE (and text) tail streams.",
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "slipway_logs_spool_bytes",
            "Bytes waiting in the disk spool for S3.",
            registry=registry,
        )
        self.upload_seconds = Histogram(
            "slipway_logs_s3_upload_duration_seconds",
            "Time to upload one archive object.",
            registry=registry,
        )
        self.upload_failures = Counter(
            "slipway_logs_s3_upload_failures_total",
            "Archive uploads that failed (and will be retried).",
            registry=registry,
        )
