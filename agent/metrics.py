"""The agent's metrics, every family ``slipway_agent_*``, in a registry passed in.

A deleted app leaves no series behind: ``remove_series`` takes its label sets out of
the families that keep them (these, the dyno monitor's, the autoscaler's, the queue
watcher's); the families read at scrape time follow the agent's state by themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

# Seconds from a wake to a ready web process: a small app boots in a few hundred
# ms, a Rails app in 10-20 s, and the boot timeout stops it at 60 s.
WAKE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
STATES = ("asleep", "waking", "awake", "crashed", "draining")


def remove_series(metric: MetricWrapperBase, **labels: str) -> None:
    """Every series of ``metric`` whose labels include ``labels`` goes, by ``remove()``.

    The label sets are read off the metric's own samples (a histogram's buckets carry
    ``le`` as well: skipped, their ``_count`` names the set): prometheus-client's
    ``remove_by_labels`` does the same from 0.24, and pyproject allows 0.20.
    """
    doomed = {
        tuple(sample.labels.values())
        for family in metric.collect()
        for sample in family.samples
        if "le" not in sample.labels
        and "quantile" not in sample.labels
        and all(sample.labels.get(name) == value for name, value in labels.items())
    }
    for values in doomed:
        metric.remove(*values)


class AgentMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        phases: Callable[[], Mapping[str, str]],
        in_flight: Callable[[], Mapping[str, int]],
        routers: Callable[[], int],
        version: Callable[[], int],
    ) -> None:
        self.wakes = Counter(
            "slipway_agent_wakes", "Wakes of a sleeping app.", ["app"], registry=registry
        )
        self.sleeps = Counter(
            "slipway_agent_sleeps", "Idle apps put to sleep.", ["app"], registry=registry
        )
        self.boot_timeouts = Counter(
            "slipway_agent_boot_timeouts",
            "Wakes whose web process was not ready within the boot timeout.",
            ["app"],
            registry=registry,
        )
        self.crashes = Counter(
            "slipway_agent_crashes",
            "Times an app went to state crashed (its web process exited).",
            ["app"],
            registry=registry,
        )
        self.wake_duration = Histogram(
            "slipway_agent_wake_duration_seconds",
            "Seconds from a wake to the first ready web process.",
            ["app"],
            buckets=WAKE_BUCKETS,
            registry=registry,
        )
        registry.register(_Snapshot(phases, in_flight, routers, version))

    def forget(self, app: str) -> None:
        """A deleted app's series go (a later app of the same name starts from none)."""
        for metric in (
            self.wakes,
            self.sleeps,
            self.boot_timeouts,
            self.crashes,
            self.wake_duration,
        ):
            remove_series(metric, app=app)


class _Snapshot(Collector):
    """Gauges read at scrape time from the agent's own state (nothing to keep in sync)."""

    def __init__(
        self,
        phases: Callable[[], Mapping[str, str]],
        in_flight: Callable[[], Mapping[str, int]],
        routers: Callable[[], int],
        version: Callable[[], int],
    ) -> None:
        self._phases = phases
        self._in_flight = in_flight
        self._routers = routers
        self._version = version

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("slipway_agent_apps", "Apps by state.", labels=["state"])
        counts = dict.fromkeys(STATES, 0)
        for phase in self._phases().values():
            counts[phase] = counts.get(phase, 0) + 1
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        each = GaugeMetricFamily(
            "slipway_agent_app_state",
            "1 for each app's current state.",
            labels=["app", "state"],
        )
        for app, phase in sorted(self._phases().items()):
            each.add_metric([app, phase], 1)
        yield each
        held = GaugeMetricFamily(
            "slipway_agent_in_flight_requests",
            "Requests in flight or held for each app, summed over routers' last reports.",
            labels=["app"],
        )
        for app, count in sorted(self._in_flight().items()):
            held.add_metric([app], count)
        yield held
        yield GaugeMetricFamily(
            "slipway_agent_routers", "Routers reporting activity.", value=self._routers()
        )
        yield GaugeMetricFamily(
            "slipway_agent_route_table_version",
            "Version of the route table last published.",
            value=self._version(),
        )
