"""Request metrics: the collector that reads the hot path's counters at scrape time.

The proxy bumps ints in dicts (router/counters.py, compiled with it); this
collector turns them into families at scrape time, as client_python's custom
collectors do. Every family name starts ``slipway_router_``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from router.counters import Counters, Histogram


class RouterStats(Collector):
    """The router's counters, and the collector that reads them at scrape time.

    ``in_flight`` and ``held`` are read from their owners (``Activity``,
    ``Holder``) at scrape time: the stats never keep a second copy.
    """

    def __init__(
        self,
        in_flight: Callable[[], dict[str, int]],
        held: Callable[[], dict[str, int]],
        counters: Counters,
    ) -> None:
        self._in_flight = in_flight
        self._held = held
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        requests = CounterMetricFamily(
            "slipway_router_requests",
            "Requests answered, by app, method class and status class.",
            labels=["app", "method", "status_class"],
        )
        for (app, method, status), count in c.requests.items():
            requests.add_metric([app, method, status], count)
        yield requests
        yield self._histograms(
            "slipway_router_request_duration_seconds",
            "Time from request head to the end of the response, by app.",
            c.durations,
        )
        yield self._histograms(
            "slipway_router_wake_duration_seconds",
            "Time a woken request waited: arrival to the upstream's first byte, by app.",
            c.wakes,
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
        for app, count in self._held().items():
            held.add_metric([app], count)
        yield held
        errors = CounterMetricFamily(
            "slipway_router_errors",
            "Requests answered by the router with an error code (H10, H12, ...).",
            labels=["app", "code"],
        )
        for (app, code), count in c.errors.items():
            errors.add_metric([app, code], count)
        yield errors
        yield self._counter(
            "slipway_router_upstream_connect_errors",
            "Failed connects to app endpoints.",
            c.connect_errors,
        )
        yield self._counter(
            "slipway_router_received_bytes", "Request body bytes from clients.", c.bytes_in
        )
        yield self._counter(
            "slipway_router_sent_bytes", "Response body bytes to clients.", c.bytes_out
        )
        yield GaugeMetricFamily(
            "slipway_router_client_connections", "Open client connections.", value=c.connections
        )
        yield GaugeMetricFamily(
            "slipway_router_websockets", "Open upgraded (WebSocket) tunnels.", value=c.websockets
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
