"""The rollup: per app, per minute (kept 2 h) and per 10 minutes (kept 7 days).

Each observation goes into both tiers at once, so the coarse tier never waits
for a minute to be "closed" and a restart loses nothing already counted. Memory is
bounded: per app at most 120 + 1008 buckets, each a few dicts and two sparse
sketches (sketch.py), and at most ``max_apps`` apps (the least recently seen go
first). Lifecycle events (sleep, wake, crash) are kept per app in a bounded list
beside the buckets, 7 days.

Pure: every method takes ``now`` (unix seconds); nothing here reads a clock or does I/O.
``to_json``/``from_json`` are what the keeper (keeper.py) writes to the state dir.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypedDict

from control.rollup.sketch import Sketch, bucket_of

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
#: Fine tier: 1 minute kept 2 hours, as the dashboard's "last 2 hours" charts need.
FINE = (60, 2 * 3600)
#: Coarse tier: 10 minutes kept 7 days (1008 buckets an app).
COARSE = (600, 7 * 86400)
#: Apps tracked at once; a platform with more apps than this loses the quietest ones' charts.
MAX_APPS = 5000
#: Lifecycle events kept per app: a crash loop cannot grow memory without bound.
MAX_EVENTS = 2000


class PointJson(TypedDict):
    t: int
    requests: dict[str, int]
    latency_ms: dict[str, float] | None
    codes: dict[str, int]
    wakes: int
    wake_ms: dict[str, float] | None


class EventJson(TypedDict, total=False):
    t: float
    kind: str
    detail: str
    seconds: float


@dataclass(slots=True)
class Bucket:
    start: int
    requests: dict[str, int] = field(default_factory=dict)
    latency: Sketch = field(default_factory=Sketch)
    codes: dict[str, int] = field(default_factory=dict)
    wakes: int = 0
    wake_ms: Sketch = field(default_factory=Sketch)

    def merge(self, other: Bucket) -> None:
        for key, n in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + n
        for key, n in other.codes.items():
            self.codes[key] = self.codes.get(key, 0) + n
        self.latency.merge(other.latency)
        self.wakes += other.wakes
        self.wake_ms.merge(other.wake_ms)

    def point(self) -> PointJson:
        return {
            "t": self.start,
            "requests": {c: self.requests.get(c, 0) for c in STATUS_CLASSES},
            "latency_ms": self.latency.quantiles(),
            "codes": dict(sorted(self.codes.items())),
            "wakes": self.wakes,
            "wake_ms": self.wake_ms.quantiles((0.5, 1.0)),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "requests": self.requests,
            "latency": self.latency.to_json(),
            "codes": self.codes,
            "wakes": self.wakes,
            "wake_ms": self.wake_ms.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bucket:
        return cls(
            start=int(data["start"]),
            requests={str(k): int(v) for k, v in data["requests"].items()},
            latency=Sketch.from_json(data["latency"]),
            codes={str(k): int(v) for k, v in data["codes"].items()},
            wakes=int(data["wakes"]),
            wake_ms=Sketch.from_json(data["wake_ms"]),
        )


@dataclass(slots=True)
class AppSeries:
    fine: dict[int, Bucket] = field(default_factory=dict)
    coarse: dict[int, Bucket] = field(default_factory=dict)
    events: deque[EventJson] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    last_seen: float = 0.0

    def buckets(self, now: float) -> tuple[Bucket, Bucket]:
        fine_start = int(now // FINE[0] * FINE[0])
        coarse_start = int(now // COARSE[0] * COARSE[0])
        fine = self.fine.get(fine_start)
        if fine is None:
            fine = self.fine[fine_start] = Bucket(fine_start)
        coarse = self.coarse.get(coarse_start)
        if coarse is None:
            coarse = self.coarse[coarse_start] = Bucket(coarse_start)
        self.last_seen = now
        return fine, coarse


_CLASSES = ("2xx", "2xx", "2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """1xx counts as 2xx (an upgrade answered), anything past 5xx as 5xx."""
    return _CLASSES[min(max(status // 100, 2), 5)]


class Rollup:
    def __init__(self, *, max_apps: int = MAX_APPS) -> None:
        self.apps: dict[str, AppSeries] = {}
        self._max_apps = max_apps

    def _series(self, app: str) -> AppSeries:
        series = self.apps.get(app)
        if series is None:  # a new app; rare
            if len(self.apps) >= self._max_apps:
                quietest = min(self.apps, key=lambda a: self.apps[a].last_seen)
                del self.apps[quietest]
            series = self.apps[app] = AppSeries()
        return series

    def request(self, app: str, *, now: float, status: int, ms: float, code: str = "") -> None:
        """One answered request: its status, its time in ms, its H-code if the router made it."""
        cls = status_class(status)
        index = bucket_of(ms)  # once for both tiers: this runs per request
        for bucket in self._series(app).buckets(now):
            bucket.requests[cls] = bucket.requests.get(cls, 0) + 1
            bucket.latency.add_index(index)
            if code:
                bucket.codes[code] = bucket.codes.get(code, 0) + 1

    def event(self, app: str, *, now: float, kind: str, detail: str = "") -> None:
        self._series(app).events.append({"t": now, "kind": kind, "detail": detail})

    def wake(self, app: str, *, now: float, seconds: float) -> None:
        """An app woke (asleep -> up) in ``seconds``: a wake counted, and an event."""
        series = self._series(app)
        for bucket in series.buckets(now):
            bucket.wakes += 1
            bucket.wake_ms.add(seconds * 1000)
        series.events.append({"t": now, "kind": "wake", "seconds": round(seconds, 3)})

    def prune(self, now: float) -> None:
        """Drop buckets and events past their tier's keep."""
        for app in list(self.apps):
            series = self.apps[app]
            for tier, (_, keep) in ((series.fine, FINE), (series.coarse, COARSE)):
                for start in [s for s in tier if s < now - keep]:
                    del tier[start]
            while series.events and series.events[0]["t"] < now - COARSE[1]:
                series.events.popleft()
            if not series.fine and not series.coarse and not series.events:
                del self.apps[app]

    def points(self, app: str, *, since: float, until: float, step: int) -> list[PointJson]:
        """One point per ``step`` seconds from ``since`` to ``until``, zeros where nothing ran.

        ``step`` must be a multiple of 60; under 600 it reads the fine tier (so only the
        last 2 hours have data), else the coarse one.
        """
        series = self.apps.get(app) or AppSeries()
        tier = series.fine if step < COARSE[0] else series.coarse
        start = int(since // step * step)
        out: list[Bucket] = [Bucket(t) for t in range(start, int(until) + 1, step)]
        for begin, bucket in tier.items():
            slot = (begin - start) // step
            if 0 <= slot < len(out):
                out[slot].merge(bucket)
        return [b.point() for b in out]

    def events(self, app: str, *, since: float, until: float) -> list[EventJson]:
        series = self.apps.get(app)
        if series is None:
            return []
        return [e for e in series.events if since <= e["t"] <= until]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "apps": {
                app: {
                    "fine": [b.to_json() for b in s.fine.values()],
                    "coarse": [b.to_json() for b in s.coarse.values()],
                    "events": list(s.events),
                    "last_seen": s.last_seen,
                }
                for app, s in self.apps.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, max_apps: int = MAX_APPS) -> Rollup:
        """What ``to_json`` wrote; raises ``ValueError`` (or ``KeyError``) on anything else."""
        if data.get("version") != 1:
            raise ValueError(f"unknown rollup file version {data.get('version')!r}")
        rollup = cls(max_apps=max_apps)
        for app, raw in data["apps"].items():
            series = rollup.apps[str(app)] = AppSeries(last_seen=float(raw["last_seen"]))
            for b in raw["fine"]:
                series.fine[int(b["start"])] = Bucket.from_json(b)
            for b in raw["coarse"]:
                series.coarse[int(b["start"])] = Bucket.from_json(b)
            series.events.extend(raw["events"])
        return rollup
