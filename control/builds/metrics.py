"""Build metrics: builds by result, how long they take, how often the cache served."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Seconds: a warm build of a small app takes about a second, a cold one with a
# compiled dependency minutes; the top bucket is the default 15 minute timeout.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)


class BuildMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.builds = Counter(
            "slipway_builds",
            "Builds finished, by stack and result (succeeded, failed, timeout).",
            ["stack", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "slipway_build_duration_seconds",
            "Wall time of a build from start to artifact or failure.",
            ["result"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.cache = Counter(
            "slipway_build_cache",
            "Builds whose dependencies came from the app's cache (hit) or were installed (miss).",
            ["outcome"],
            registry=registry,
        )
