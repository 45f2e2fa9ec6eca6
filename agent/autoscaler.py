"""The autoscaler's memory between decisions: samples, panic state, the decisions made.

``agent.autoscale`` decides; this keeps what it decides from. The agent calls
``tick`` about once a second with its machines, the routers' merged activity
and the loop clock, and applies the decisions that change replicas. Each
change (and each panic's start and end) is logged as ``msg=autoscale`` with
its reason, counted, and kept (the last ``history``) for the API.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.apps import WEB
from agent.autoscale import Decision, Memory, Reason, Sample, decide
from agent.machine import AppMachine, Phase
from agent.metrics import remove_series

log = logging.getLogger(__name__)

#: Decisions kept per app for the API: a few hours of a busy day's changes.
HISTORY = 50


@dataclass(frozen=True, slots=True)
class Record:
    """One decision, as the API shows it."""

    at: float
    process: str
    current: int
    desired: int
    reason: str
    stable: float | None
    panic: float | None
    panicking: bool

    def json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "process": self.process,
            "from": self.current,
            "to": self.desired,
            "reason": self.reason,
            "avg_concurrency": _round(self.stable),
            "panic_concurrency": _round(self.panic),
            "panicking": self.panicking,
        }


@dataclass
class _App:
    samples: deque[Sample]
    memory: Memory
    decisions: deque[Record]
    last: Decision | None = None


class Autoscaler:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        history: int = HISTORY,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._apps: dict[str, _App] = {}
        self._history = history
        self._wall = wall
        self.decisions_total = Counter(
            "slipway_autoscale_decisions",
            "Autoscaling decisions that changed replicas or started or ended a panic.",
            ["app", "process", "reason"],
            registry=registry,
        )
        registry.register(_Desired(self._desired))

    def tick(
        self, machines: Iterable[AppMachine], in_flight: Callable[[str], float], now: float
    ) -> list[tuple[AppMachine, Decision]]:
        """Sample every autoscaled app and decide for the awake ones; the changes to apply.

        Waking, draining or crashed apps are sampled (held requests are load the
        wake will meet) but not decided for, and their panic is forgotten; an
        asleep app's samples are dropped.
        """
        changes: list[tuple[AppMachine, Decision]] = []
        for machine in machines:
            config = machine.config.autoscale.get(WEB)
            state = self._apps.get(machine.name)
            if config is None:
                if state is not None:  # turned off: its decisions stay for people to read
                    state.samples.clear()
                    state.memory, state.last = Memory(), None
                continue
            if state is None:
                state = _App(deque(), Memory(), deque(maxlen=self._history))
                self._apps[machine.name] = state
            if machine.phase is Phase.ASLEEP:
                self.slept(machine.name)
                continue
            state.samples.append((now, float(in_flight(machine.name))))
            while state.samples and state.samples[0][0] <= now - config.stable_window:
                state.samples.popleft()
            if machine.phase is not Phase.AWAKE:
                state.memory, state.last = Memory(), None
                continue
            policy = machine.config.policy
            current = machine.desired.get(WEB, 0)
            decision = decide(
                config, state.samples, current, state.memory, now,
                low=policy.min_scale, high=policy.max_scale,
            )  # fmt: skip
            state.memory, state.last = decision.memory, decision
            if decision.reason is not Reason.STEADY:
                self._record(machine.name, decision, config.target)
            if decision.changed:
                changes.append((machine, decision))
        for name in set(self._apps) - {m.name for m in machines}:
            del self._apps[name]
        return changes

    def slept(self, app: str) -> None:
        """The app went to sleep: its load before the sleep is not what the next wake meets.

        Called by the agent when the app is asleep (and by ``tick`` for an asleep app), so
        a wake that comes before the next tick still starts from the formation's count."""
        state = self._apps.get(app)
        if state is not None:
            state.samples.clear()
            state.memory, state.last = Memory(), None

    def forget(self, app: str) -> None:
        """A deleted app: its state, its decisions and their counter's series go."""
        self._apps.pop(app, None)
        remove_series(self.decisions_total, app=app)

    def view(self, app: str) -> dict[str, Any]:
        """The app's autoscaling now and its last decisions, newest first."""
        state = self._apps.get(app)
        last = state.last if state else None
        return {
            "panicking": bool(last and last.panicking),
            "avg_concurrency": _round(last.stable if last else None),
            "panic_concurrency": _round(last.panic if last else None),
            "decisions": [r.json() for r in reversed(state.decisions)] if state else [],
        }

    def _record(self, app: str, decision: Decision, target: float) -> None:
        record = Record(
            at=self._wall(),
            process=WEB,
            current=decision.current,
            desired=decision.desired,
            reason=str(decision.reason),
            stable=decision.stable,
            panic=decision.panic,
            panicking=decision.panicking,
        )
        self._apps[app].decisions.append(record)
        self.decisions_total.labels(app, WEB, record.reason).inc()
        log.info(
            "autoscale",
            extra={
                "app": app,
                "process_type": WEB,
                "from": record.current,
                "to": record.desired,
                "reason": record.reason,
                "avg_concurrency": _round(record.stable),
                "panic_concurrency": _round(record.panic),
                "target": target,
            },
        )

    def _desired(self) -> Iterator[tuple[str, int]]:
        for app, state in sorted(self._apps.items()):
            if state.last is not None:
                yield app, state.last.desired


class _Desired(Collector):
    """Read at scrape time from the last decisions (nothing to keep in sync)."""

    def __init__(self, desired: Callable[[], Iterator[tuple[str, int]]]) -> None:
        self._desired = desired

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "slipway_autoscale_desired_replicas",
            "Replicas the autoscaler last decided on, per app and process type.",
            labels=["app", "process"],
        )
        for app, desired in self._desired():
            gauge.add_metric([app, WEB], desired)
        yield gauge


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
