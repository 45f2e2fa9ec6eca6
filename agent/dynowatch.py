"""The dyno monitor: samples every running instance each interval and acts on what it sees.

The shell around ``agent/dyno.py``: a ``DynoSource`` (LocalRuntime's processes,
or PodMetrics on Kubernetes) reads a round of samples; each goes through
``judge``; R14 and R15 lines go to the app's log stream (source ``dyno``, shown as
``slipway[web.1]`` as Heroku shows ``heroku[web.1]``), with counters; an R15 asks
the source to kill the instance (it restarts as a crash); apps with the
``LOG_RUNTIME_METRICS`` config var get Heroku's ``sample#memory_*`` lines.

The series are read at scrape time from the last round, so an instance that is
gone (stopped, asleep, restarted elsewhere) leaves no series behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Summary
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.dyno import (
    EventKind,
    Sample,
    Tracked,
    event_lines,
    judge,
    killed_lines,
    runtime_metrics_lines,
)
from agent.dynosize import Size
from agent.metrics import remove_series
from agent.output import ProcessLogSink

log = logging.getLogger(__name__)

#: The log source of the monitor's lines (logs/model.py's Source.DYNO).
SOURCE = "dyno"
MIN_INTERVAL = 0.01
MAX_INTERVAL = 3600.0


@dataclass(frozen=True, slots=True)
class DynoSettings:
    interval: float = 20.0
    """Seconds between two samples of every instance (Heroku samples about every 20 s);
    the delay of an R14 or R15 is at most this plus one round's reads."""

    def __post_init__(self) -> None:
        # Below 10 ms the rounds are all the agent does; past an hour an R15 is no limit.
        if not MIN_INTERVAL <= self.interval <= MAX_INTERVAL:
            raise ValueError(
                f"the dyno sampling interval must be {MIN_INTERVAL * 1000:g} ms to "
                f"{MAX_INTERVAL / 3600:g} h, not {self.interval:g} s"
            )


@dataclass(frozen=True, slots=True)
class Target:
    """One running instance as a source names it."""

    app: str
    process: str
    #: ``web.1`` locally, ``web.<pod suffix>`` on Kubernetes.
    dyno: str
    size: Size
    #: The app asked for runtime-metrics lines (its LOG_RUNTIME_METRICS config var).
    runtime_metrics: bool = False
    #: What the source needs to kill it again (a pid); ignored by others.
    handle: Any = field(default=None, compare=False)


class DynoSource(Protocol):
    async def sample(self) -> list[tuple[Target, Sample]]:
        """One round: every running instance with its usage now."""

    async def kill(self, target: Target, reason: str) -> bool:
        """Stop an instance past its hard limit (R15); False where the runtime enforces
        the limit itself (Kubernetes: the memory limit) or it is already gone."""

    def killed(self) -> list[Target]:
        """Instances the runtime itself killed at their hard limit since the last call
        (a container OOMKilled at its memory limit); none where the monitor kills."""


class DynoMonitor:
    def __init__(
        self,
        source: DynoSource,
        *,
        sink: ProcessLogSink | None,
        registry: CollectorRegistry,
        settings: DynoSettings | None = None,
    ) -> None:
        """``sink``: the apps' log streams; None: the lines go to this process's own log only
        (the agent on Kubernetes, which has no in-process logs service)."""
        self.source = source
        self.sink = sink
        self.settings = settings or DynoSettings()
        #: (app, dyno) -> its target and state after the last round.
        self.tracked: dict[tuple[str, str], tuple[Target, Tracked]] = {}
        self._failing = False
        #: Apps deleted during this round (``forget``): their samples, taken before, are
        #: dropped rather than counted into series just removed.
        self._gone: set[str] = set()
        self.r14 = Counter(
            "slipway_dyno_r14",
            "Samples of an instance over its memory quota (Heroku's R14 warning).",
            ["app", "process"],
            registry=registry,
        )
        self.r15 = Counter(
            "slipway_dyno_r15",
            "Instances killed past their hard memory limit, 2x the quota (Heroku's R15).",
            ["app", "process"],
            registry=registry,
        )
        self.round_seconds = Summary(
            "slipway_dyno_sample_round_seconds",
            "Seconds one round of samples took (every instance).",
            registry=registry,
        )
        registry.register(_Series(self))

    async def run(self) -> None:
        """Sample forever, one round per interval (a long-lived task)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.round(loop.time())
                await asyncio.sleep(self.settings.interval)
        finally:
            # Stopped (the agent stopped, or lost the lead): no series of what it no
            # longer watches; the new leader's monitor exports them.
            self.tracked = {}

    def forget(self, app: str) -> None:
        """A deleted app: its R14/R15 counters and its last samples (the gauges) go."""
        remove_series(self.r14, app=app)
        remove_series(self.r15, app=app)
        self.tracked = {key: value for key, value in self.tracked.items() if key[0] != app}
        self._gone.add(app)

    async def round(self, now: float) -> None:
        started = time.perf_counter()
        self._gone = set()
        try:
            found = await self.source.sample()
        except Exception as exc:  # a source that fails this round may answer the next
            # Once per outage, not every round: a cluster without metrics-server says it
            # at start, not three times a minute forever.
            if not self._failing:
                log.warning(
                    "dyno samples failed; retrying every interval", extra={"error": repr(exc)}
                )
            self._failing = True
            return
        if self._failing:
            log.info("dyno samples back")
            self._failing = False
        self.round_seconds.observe(time.perf_counter() - started)
        seen: dict[tuple[str, str], tuple[Target, Tracked]] = {}
        wall = time.time()
        for target, sample in found:
            if target.app in self._gone:
                continue
            key = (target.app, target.dyno)
            previous = self.tracked.get(key)
            tracked, events = judge(previous[1] if previous else None, sample, target.size, now)
            seen[key] = (target, tracked)
            if target.runtime_metrics:
                for line in runtime_metrics_lines(target.app, target.dyno, tracked, target.size):
                    self._publish(target, line, wall)
            for event in events:
                for line in event_lines(event):
                    self._publish(target, line, wall)
                fields = {
                    "app": target.app,
                    "dyno": target.dyno,
                    "error": str(event.kind),
                    "memory_mb": event.counted // (1024 * 1024),
                    "quota_mb": target.size.memory_mb,
                }
                if event.kind is EventKind.R14:
                    self.r14.labels(target.app, target.process).inc()
                    log.warning("memory quota exceeded", extra=fields)
                else:
                    self.r15.labels(target.app, target.process).inc()
                    log.warning("memory quota vastly exceeded; killing", extra=fields)
                    await self.source.kill(target, "R15 (memory quota vastly exceeded)")
        self.tracked = seen
        for target in self.source.killed():
            if target.app in self._gone:
                continue
            for line in killed_lines(target.size.hard_limit_bytes // (1024 * 1024)):
                self._publish(target, line, wall)
            self.r15.labels(target.app, target.process).inc()
            log.warning(
                "killed at the memory limit",
                extra={"app": target.app, "dyno": target.dyno, "error": "R15"},
            )

    def _publish(self, target: Target, line: str, wall: float) -> None:
        if self.sink is not None:
            self.sink.publish(target.app, SOURCE, target.dyno, line, wall)

    def usage(self, app: str) -> dict[str, dict[str, Any]]:
        """dyno -> its last sample, for ``GET /v1/apps/{app}`` and ``slipway ps``."""
        out: dict[str, dict[str, Any]] = {}
        for (owner, dyno), (target, tracked) in self.tracked.items():
            sample = tracked.sample
            if owner != app or sample is None:
                continue
            out[dyno] = {
                "memory_rss": sample.rss,
                "memory_cache": sample.cache,
                "memory_swap": sample.swap,
                "memory_quota": target.size.quota_bytes,
                "cpu_seconds": round(sample.cpu_seconds, 3),
                "load": round(tracked.cores, 3),
                "size": target.size.name,
            }
        return out


class _Series(Collector):
    """The gauges of the last round, read at scrape time (gone instances have none)."""

    def __init__(self, monitor: DynoMonitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        labels = ["app", "process", "dyno"]
        families: Mapping[str, GaugeMetricFamily] = {
            "rss": GaugeMetricFamily(
                "slipway_dyno_memory_rss_bytes",
                "Resident anonymous and shared memory of the instance (its process tree).",
                labels=labels,
            ),
            "cache": GaugeMetricFamily(
                "slipway_dyno_memory_cache_bytes", "Page cache of the instance.", labels=labels
            ),
            "swap": GaugeMetricFamily(
                "slipway_dyno_memory_swap_bytes", "Swap used by the instance.", labels=labels
            ),
            "quota": GaugeMetricFamily(
                "slipway_dyno_memory_quota_bytes",
                "The instance's memory quota (its size); past it, R14.",
                labels=labels,
            ),
            "limit": GaugeMetricFamily(
                "slipway_dyno_memory_limit_bytes",
                "The instance's hard memory limit (2x the quota); past it, R15.",
                labels=labels,
            ),
            "load": GaugeMetricFamily(
                "slipway_dyno_load",
                "CPU cores the instance used between its last two samples.",
                labels=labels,
            ),
        }
        cpu = CounterMetricFamily(
            "slipway_dyno_cpu_seconds",
            "CPU seconds (user + system) the instance used since it started.",
            labels=labels,
        )
        for (app, dyno), (target, tracked) in sorted(self._monitor.tracked.items()):
            sample: Sample | None = tracked.sample
            if sample is None:
                continue
            values = [app, target.process, dyno]
            families["rss"].add_metric(values, sample.rss)
            families["cache"].add_metric(values, sample.cache)
            families["swap"].add_metric(values, sample.swap)
            families["quota"].add_metric(values, target.size.quota_bytes)
            families["limit"].add_metric(values, target.size.hard_limit_bytes)
            families["load"].add_metric(values, tracked.cores)
            cpu.add_metric(values, sample.cpu_seconds)
        yield from families.values()
        yield cpu
