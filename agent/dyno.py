"""Dyno samples and what they mean: load, R14 and R15, Heroku's runtime-metrics lines.

A pure core: a sampler (``agent/dynoproc.py`` locally, PodMetrics on
Kubernetes) gives one ``Sample`` per running instance and round; ``judge``
turns it, the instance's previous ``Tracked`` state, its ``Size`` and ``now``
into the new state and the events to act on. No clock, no I/O.

Heroku's semantics, kept:

- the memory that counts is RSS plus swap (the page cache is left out);
- R14 (memory quota exceeded) is a warning: the process keeps running, and the
  error repeats at every sample while it stays over (Heroku logs it every ~20 s);
- R15 (memory quota vastly exceeded) is past the hard limit (2x the quota, as
  for Cedar's standard dynos): the process is killed with SIGKILL and restarted;
- load is the CPU cores used, averaged like the kernel's load average over 1,
  5 and 15 minutes (Heroku's ``load_avg_*``), from CPU-seconds deltas.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from agent.dynosize import MB, Size


@dataclass(frozen=True, slots=True)
class Sample:
    """One instance's usage at one moment, as a sampler reads it."""

    #: Bytes of anonymous and shared memory resident (cgroup ``anon``; /proc RssAnon+RssShmem).
    rss: int
    #: Bytes of page cache (cgroup ``file``; /proc RssFile, the mapped files).
    cache: int
    swap: int
    #: CPU seconds used since the process started (user + system, its whole tree).
    cpu_seconds: float
    #: Pages read in and out (cgroup v1 ``pgpgin``/``pgpgout``; 0 where not known).
    pgpgin: int = 0
    pgpgout: int = 0
    #: What identifies this incarnation (a pid, a pod uid): a new one restarts the averages.
    incarnation: str = ""

    @property
    def counted(self) -> int:
        """What the quota is compared with: RSS plus swap, as Heroku's R14."""
        return self.rss + self.swap


@dataclass(frozen=True, slots=True)
class Tracked:
    """What is remembered of one instance between two samples."""

    incarnation: str
    at: float
    cpu_seconds: float
    load_1m: float = 0.0
    load_5m: float = 0.0
    load_15m: float = 0.0
    #: Cores used between the last two samples.
    cores: float = 0.0
    #: The last sample, for the API and the metrics.
    sample: Sample | None = None


class EventKind(enum.StrEnum):
    R14 = "R14"
    R15 = "R15"


@dataclass(frozen=True, slots=True)
class DynoEvent:
    kind: EventKind
    #: Bytes counted (RSS + swap) and its percent of the quota, for the log line.
    counted: int
    percent: float


# The windows of the kernel's load averages, in seconds.
_WINDOWS = (60.0, 300.0, 900.0)


def judge(
    previous: Tracked | None, sample: Sample, size: Size, now: float
) -> tuple[Tracked, list[DynoEvent]]:
    """The instance's new state and what to do about it (pure)."""
    fresh = previous is None or previous.incarnation != sample.incarnation
    if fresh or previous is None:
        tracked = Tracked(sample.incarnation, now, sample.cpu_seconds, sample=sample)
    else:
        elapsed = now - previous.at
        cores = 0.0
        if elapsed > 0:
            # A counter never goes back; a smaller one is a new tree member gone: count 0.
            cores = max(0.0, sample.cpu_seconds - previous.cpu_seconds) / elapsed
        loads = [
            _decay(old, cores, elapsed, window)
            for old, window in zip(
                (previous.load_1m, previous.load_5m, previous.load_15m), _WINDOWS, strict=True
            )
        ]
        tracked = replace(
            previous,
            at=now,
            cpu_seconds=sample.cpu_seconds,
            load_1m=loads[0],
            load_5m=loads[1],
            load_15m=loads[2],
            cores=cores,
            sample=sample,
        )
    percent = 100.0 * sample.counted / size.quota_bytes
    if sample.counted > size.hard_limit_bytes:
        return tracked, [DynoEvent(EventKind.R15, sample.counted, percent)]
    if sample.counted > size.quota_bytes:
        return tracked, [DynoEvent(EventKind.R14, sample.counted, percent)]
    return tracked, []


def _decay(old: float, value: float, elapsed: float, window: float) -> float:
    """An exponentially weighted average, as the kernel's load average over ``window``."""
    if elapsed <= 0:
        return old
    weight = math.exp(-elapsed / window)
    return old * weight + value * (1 - weight)


def event_lines(event: DynoEvent) -> list[str]:
    """The lines Heroku writes for it, as ``heroku[web.1]: ...`` (ours: ``slipway[web.1]``)."""
    running = f"Process running mem={event.counted / MB:.0f}M({event.percent:.1f}%)"
    if event.kind is EventKind.R14:
        return [running, "Error R14 (Memory quota exceeded)"]
    return [running, "Error R15 (Memory quota vastly exceeded)", "Stopping process with SIGKILL"]


def killed_lines(limit_mb: int) -> list[str]:
    """The lines for an instance the runtime killed itself at its hard limit (the kernel's
    OOM killer at a container's memory limit): no sample saw it past the limit."""
    return [
        "Error R15 (Memory quota vastly exceeded)",
        f"Process killed at its memory limit of {limit_mb}M (OOMKilled)",
    ]


def runtime_metrics_lines(app: str, dyno: str, tracked: Tracked, size: Size) -> list[str]:
    """Heroku's log-runtime-metrics lines for one sample: memory, then load."""
    sample = tracked.sample
    if sample is None:
        return []
    head = f"source={dyno} dyno=slipway.{app}.{sample.incarnation or dyno}"
    total = sample.rss + sample.cache + sample.swap
    memory = (
        f"{head} sample#memory_total={total / MB:.2f}MB sample#memory_rss={sample.rss / MB:.2f}MB"
        f" sample#memory_cache={sample.cache / MB:.2f}MB"
        f" sample#memory_swap={sample.swap / MB:.2f}MB"
        f" sample#memory_pgpgin={sample.pgpgin}pages sample#memory_pgpgout={sample.pgpgout}pages"
        f" sample#memory_quota={size.memory_mb:.2f}MB"
    )
    load = (
        f"{head} sample#load_avg_1m={tracked.load_1m:.2f} sample#load_avg_5m={tracked.load_5m:.2f}"
        f" sample#load_avg_15m={tracked.load_15m:.2f}"
    )
    return [memory, load]


#: Config var (Heroku labs' ``log-runtime-metrics``) that turns the lines on for an app.
RUNTIME_METRICS_VAR = "LOG_RUNTIME_METRICS"


def runtime_metrics_enabled(env: dict[str, str] | None) -> bool:
    value = (env or {}).get(RUNTIME_METRICS_VAR, "")
    return value.strip().lower() in ("1", "true", "yes", "on", "enabled")
