"""The counters each request bumps: plain ints in dicts, compiled with the hot path.

No locks and no label look-ups per request; ``router.metrics.RouterStats`` (a
prometheus Collector, interpreted) turns them into families at scrape time, as
client_python's custom collectors do. So a series exists while its dict key does:
``forget(app)`` takes a deleted app's keys out (the router calls it from a route
table swap, never from a request).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Seconds; from a fast cached page to Heroku's 30 s limit.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds; a process boot takes from a few hundred ms to the 60 s boot limit.
WAKE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)

_METHOD_CLASSES = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def method_class(method: str) -> str:
    return method if method in _METHOD_CLASSES else "other"


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class Counters:
    """What the proxy counts: requests, durations, wakes, errors, bytes, connections."""

    def __init__(self) -> None:
        #: (app, method class, status class) -> count
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.wakes: dict[str, Histogram] = {}
        #: (app, code) -> count, e.g. ("hello", "H21")
        self.errors: dict[tuple[str, str], int] = {}
        self.connect_errors: dict[str, int] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.connections = 0
        self.websockets = 0

    def request(
        self, app: str, method: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        key = (app, method_class(method), f"{status // 100}xx")
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.durations.get(app)
        if hist is None:
            hist = self.durations[app] = Histogram(DURATION_BUCKETS)
        hist.observe(seconds)
        self.bytes_in[app] = self.bytes_in.get(app, 0) + bytes_in
        self.bytes_out[app] = self.bytes_out.get(app, 0) + bytes_out

    def error(self, app: str, code: str) -> None:
        self.errors[(app, code)] = self.errors.get((app, code), 0) + 1

    def wake(self, app: str, seconds: float) -> None:
        hist = self.wakes.get(app)
        if hist is None:
            hist = self.wakes[app] = Histogram(WAKE_BUCKETS)
        hist.observe(seconds)

    def forget(self, app: str) -> None:
        """Every count of ``app`` goes: its series leave /metrics at the next scrape."""
        for key in [k for k in self.requests if k[0] == app]:
            del self.requests[key]
        for code in [k for k in self.errors if k[0] == app]:
            del self.errors[code]
        self.durations.pop(app, None)
        self.wakes.pop(app, None)
        self.connect_errors.pop(app, None)
        self.bytes_in.pop(app, None)
        self.bytes_out.pop(app, None)
