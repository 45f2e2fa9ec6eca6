"""Request metrics: plain counters on the hot path, a collector that reads them.

The proxy bumps ints in dicts (no locks, no label look-ups per request); the
collector turns them into families at scrape time, as client_python's custom
collectors do. Every family name starts ``slipway_router_``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

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


class RouterStats(Collector):
    def __init__(self, in_flight: Callable[[], dict[str, int]]) -> None:
        self._in_flight = in_flight
        #: (app, method class, status class) -> count
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.wakes: dict[str, Histogram] = {}
        self.held: dict[str, int] = {}
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

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "slipway_router_requests",
            "Requests answered, by app, method class and status class.",
            labels=["app", "method", "status_class"],
        )
        for (app, method, status), count in self.requests.items():
            requests.add_metric([app, method, status], count)
        yield requests
        yield self._histograms(
            "slipway_router_request_duration_seconds",
            "Time from request head to the end of the response, by app.",
            self.durations,
        )
        yield self._histograms(
            "slipway_router_wake_duration_seconds",
            "Time a woken request waited: arrival to the upstream's first byte, by app.",
            self.wakes,
        )
        in_flight = GaugeMetricFamily(
            "slipway_router_in_flight", "Requests in flight (incl. held), by app.", labels=["app"]
        )
        for app, count in self._in_flight().items():
            in_flight.add_metric([app], count)
        yield in_flight
        held = GaugeMetricFamily(
            "slipway_router_held_requests", "Requests held while their app wakes.", labels=["app"]
        )
        for app, count in self.held.items():
            held.add_metric([app], count)
        yield held
        errors = CounterMetricFamily(
            "slipway_router_errors",
            "Requests answered by the router with an error code (H10, H12, ...).",
            labels=["app", "code"],
        )
        for (app, code), count in self.errors.items():
            errors.add_metric([app, code], count)
        yield errors
        yield self._counter(
            "slipway_router_upstream_connect_errors",
            "Failed connects to app endpoints.",
            self.connect_errors,
        )
        yield self._counter(
            "slipway_router_received_bytes", "Request body bytes from clients.", self.bytes_in
        )
        yield self._counter(
            "slipway_router_sent_bytes", "Response body bytes to clients.", self.bytes_out
        )
        yield GaugeMetricFamily(
            "slipway_router_client_connections", "Open client connections.", value=self.connections
        )
        yield GaugeMetricFamily(
            "slipway_router_websockets", "Open upgraded (WebSocket) tunnels.", value=self.websockets
        )

    @staticmethod
    def _counter(name: str, doc: str, values: dict[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=["app"])
        for app, value in values.items():
            family.add_metric([app], value)
        return family

    @staticmethod
    def _histograms(name: str, doc: str, hists: dict[str, Histogram]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["app"])
        for app, hist in hists.items():
            family.add_metric([app], hist.cumulative(), hist.total)
        return family
