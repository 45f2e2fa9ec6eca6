"""The last snapshot of every target, and the collector that only reads it.

The poller writes a :class:`TargetSnapshot` per target when a poll ends; the
samples are turned into prometheus_client samples (with the ``target`` label
and the user's labels) right then, off the scrape path. ``collect()`` only
groups what is stored, so a scrape never waits on a database and costs the
same whether a target is healthy, slow or dead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample

from exporters.samples import EXPORTER_FAMILIES, Family, Outcome, family_name
from exporters.targets import Kind, Target


@dataclass(frozen=True)
class TargetSnapshot:
    target: Target
    outcome: Outcome
    duration: float | None = None
    """Seconds the poll took (a database target: its server's poll)."""
    last_success: float | None = None
    """Unix time of the last poll that succeeded, if any."""
    by_family: Mapping[str, list[PromSample]] = field(default_factory=dict)


class SnapshotStore:
    """Per-target snapshots; ``generation`` changes whenever anything does."""

    def __init__(self, *, kind: Kind, families: Mapping[str, Family]) -> None:
        self.kind = kind
        self.families = {**families, **EXPORTER_FAMILIES}
        self._snapshots: dict[str, TargetSnapshot] = {}
        self.generation = 0
        self.target_count = 0
        self.round_duration: float | None = None

    def put(
        self,
        target: Target,
        outcome: Outcome,
        *,
        duration: float | None,
        now_wall: float,
    ) -> None:
        previous = self._snapshots.get(target.name)
        last_success = now_wall if outcome.up else (previous.last_success if previous else None)
        self._snapshots[target.name] = TargetSnapshot(
            target=target,
            outcome=outcome,
            duration=duration,
            last_success=last_success,
            by_family=self._prepare(target, outcome, duration, last_success),
        )
        self.generation += 1

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Forget snapshots of targets no longer in the file; count the rest."""
        targets = list(targets)
        names = {t.name for t in targets}
        for name in list(self._snapshots):
            if name not in names:
                del self._snapshots[name]
        self.target_count = len(targets)
        self.generation += 1

    def get(self, name: str) -> TargetSnapshot | None:
        return self._snapshots.get(name)

    def snapshots(self) -> list[TargetSnapshot]:
        return [self._snapshots[name] for name in sorted(self._snapshots)]

    def _prepare(
        self,
        target: Target,
        outcome: Outcome,
        duration: float | None,
        last_success: float | None,
    ) -> dict[str, list[PromSample]]:
        base = {"target": target.name, **dict(target.labels)}
        grouped: dict[str, list[PromSample]] = {}

        def add(name: str, labels: dict[str, str], value: float) -> None:
            fam = family_name(name, self.families[name])
            grouped.setdefault(fam, []).append(PromSample(name, labels, value, None, None))

        for sample in outcome.samples:
            add(
                sample.name,
                {**base, **dict(sample.labels)} if sample.labels else base,
                sample.value,
            )
        if duration is not None:
            add("slipway_exporter_poll_duration_seconds", base, duration)
        if last_success is not None:
            add("slipway_exporter_last_poll_success_timestamp_seconds", base, last_success)
        if outcome.error is not None:
            add("slipway_exporter_poll_error", {**base, "error": outcome.error.value}, 1.0)
        return grouped


class SnapshotCollector(Collector):
    """Reads the store; ``only`` limits it to one target (for /probe)."""

    def __init__(self, store: SnapshotStore, *, only: str | None = None) -> None:
        self._store = store
        self._only = only

    def collect(self) -> Iterator[Metric]:
        store = self._store
        if self._only is None:
            snapshots = store.snapshots()
        else:
            one = store.get(self._only)
            snapshots = [one] if one is not None else []
        metrics: dict[str, Metric] = {}
        for snapshot in snapshots:
            for fam, samples in snapshot.by_family.items():
                metric = metrics.get(fam)
                if metric is None:
                    spec = store.families[samples[0].name]
                    metric = metrics[fam] = Metric(fam, spec.help, spec.type.value)
                metric.samples.extend(samples)
        if self._only is None:
            targets = Metric(
                "slipway_exporter_targets",
                EXPORTER_FAMILIES["slipway_exporter_targets"].help,
                "gauge",
            )
            targets.add_sample(
                "slipway_exporter_targets", {"kind": store.kind.value}, store.target_count
            )
            metrics["slipway_exporter_targets"] = targets
            if store.round_duration is not None:
                name = "slipway_exporter_round_duration_seconds"
                rounds = Metric(name, EXPORTER_FAMILIES[name].help, "gauge")
                rounds.add_sample(name, {"kind": store.kind.value}, store.round_duration)
                metrics[name] = rounds
        yield from metrics.values()
