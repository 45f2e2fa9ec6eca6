"""The logs service's memory and file descriptors stay flat while apps come and go.

Review apps are created and deleted by the hundred; every one of them logs a
little and is never heard of again. Whatever the service keeps per app (its
ring, its open journal, lookups by tag) must be bounded, not a function of how
many apps ever logged.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

from prometheus_client import CollectorRegistry

from logs.archive import Spool
from logs.forward import Batch
from logs.metrics import LogsMetrics
from logs.model import Source
from logs.ring import Hub
from logs.service import LogService

T = 1_795_000_000.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def review_app_lives(service: LogService, n: int) -> None:
    """pr-N logs through the forward port's path and in process, then is never seen again."""
    app = f"pr-{n}"
    entries = [(T + i, {"log": f"{app} line {i}"}) for i in range(20)]
    assert service.accept(Batch(f"slipway.{app}.web.1", entries, chunk=str(n)))
    service.publish(app, Source.BUILD.value, "build", "-----> Python app detected")
    service.emit(app, "at=info method=GET path=/ status=200")


def test_memory_and_descriptors_are_flat_while_a_thousand_apps_come_and_go(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    metrics = LogsMetrics(registry)
    hub = Hub(seq_base=1, apps=100)
    spool = Spool(
        tmp_path / "spool", max_bytes=10**9, flush_bytes=10**9, flush_age=3600.0, max_open=50
    )
    service = LogService(hub=hub, metrics=metrics, spool=spool, clock=lambda: T)
    tracemalloc.start()
    try:
        for n in range(300):  # past every bound: rings, open journals
            review_app_lives(service, n)
        gc.collect()
        warm, _ = tracemalloc.get_traced_memory()
        fds = open_fds()
        for n in range(300, 1000):
            review_app_lives(service, n)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        spool.close()
    assert hub.ring_count() == 100
    assert open_fds() <= fds
    # 700 more apps of ~22 lines each would be ~2.5 MB if anything were kept per app
    assert after - warm < 64 * 1024, f"grew by {after - warm} bytes over 700 apps"
    assert (
        registry.get_sample_value("slipway_logs_lines_received_total", {"source": "app"})
        == 1000 * 20
    )
