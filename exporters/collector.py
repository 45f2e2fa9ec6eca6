"""The last snapshot of every target, and the collector that only reads it.

The poller writes a :class:`TargetSnapshot` per target when a poll ends. Two
views are served from it, and neither waits on a database:

- :class:`SnapshotCollector`, a prometheus_client collector whose ``collect()``
  only reads the stored samples (used for /probe and by anything holding the
  registry);
- the target's series pre-rendered as exposition text, one chunk per family,
  made once when the snapshot is stored. /metrics then only concatenates chunks
  (:meth:`SnapshotStore.render`): with a few hundred add-on databases (~10k
  series) rendering every sample on each scrape took ~200 ms on a shared 2-core
  machine; concatenating takes a few milliseconds. A test checks both views
  hold the same samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample
from prometheus_client.utils import floatToGoString

from exporters.samples import EXPORTER_FAMILIES, Family, Outcome, Sample, family_name
from exporters.targets import Kind, Target

#: prometheus_client's own number format (Go's), so both views print values alike.
_number = cast(Callable[[float], str], floatToGoString)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(labels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in labels)


@dataclass(frozen=True)
class TargetSnapshot:
    target: Target
    outcome: Outcome
    duration: float | None = None
    """Seconds the poll took (a database target: its server's poll)."""
    last_success: float | None = None
    """Unix time of the last poll that succeeded, if any."""
    rendered: Mapping[str, str] = field(default_factory=dict)
    """Family name -> this target's sample lines in the text format."""

    def samples(self) -> list[Sample]:
        """The outcome's samples and the exporter's own series about this target."""
        out = list(self.outcome.samples)
        if self.duration is not None:
            out.append(Sample("slipway_exporter_poll_duration_seconds", (), self.duration))
        if self.last_success is not None:
            out.append(
                Sample(
                    "slipway_exporter_last_poll_success_timestamp_seconds", (), self.last_success
                )
            )
        if self.outcome.error is not None:
            out.append(
                Sample("slipway_exporter_poll_error", (("error", self.outcome.error.value),), 1.0)
            )
        return out

    def base_labels(self) -> tuple[tuple[str, str], ...]:
        return (("target", self.target.name), *self.target.labels)


class SnapshotStore:
    """Per-target snapshots; ``generation`` changes whenever anything does."""

    def __init__(self, *, kind: Kind, families: Mapping[str, Family]) -> None:
        self.kind = kind
        self.families = {**families, **EXPORTER_FAMILIES}
        self._snapshots: dict[str, TargetSnapshot] = {}
        self.generation = 0
        self.target_count = 0
        self.round_duration: float | None = None
        self._headers: dict[str, str] = {}

    def put(
        self,
        target: Target,
        outcome: Outcome,
        *,
        duration: float | None,
        now_wall: float,
    ) -> None:
        self.commit([self.prepare(target, outcome, duration=duration, now_wall=now_wall)])

    def prepare(
        self,
        target: Target,
        outcome: Outcome,
        *,
        duration: float | None,
        now_wall: float,
    ) -> TargetSnapshot:
        """Build (and render) a snapshot without storing it; safe to run in a worker thread."""
        previous = self._snapshots.get(target.name)
        last_success = now_wall if outcome.up else (previous.last_success if previous else None)
        snapshot = TargetSnapshot(target, outcome, duration, last_success)
        return replace(snapshot, rendered=self._render(snapshot))

    def commit(self, snapshots: Iterable[TargetSnapshot]) -> None:
        for snapshot in snapshots:
            self._snapshots[snapshot.target.name] = snapshot
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

    def family_of(self, sample_name: str) -> str:
        return family_name(sample_name, self.families[sample_name])

    def _header(self, family: str, sample_name: str) -> str:
        header = self._headers.get(family)
        if header is None:
            spec = self.families[sample_name]
            kind = "untyped" if spec.type.value == "unknown" else spec.type.value
            text_name = f"{family}_total" if spec.type.value == "counter" else family
            doc = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
            header = self._headers[family] = (
                f"# HELP {text_name} {doc}\n# TYPE {text_name} {kind}\n"
            )
        return header

    def _render(self, snapshot: TargetSnapshot) -> dict[str, str]:
        base = _label_text(snapshot.base_labels())
        chunks: dict[str, list[str]] = {}
        for sample in snapshot.samples():
            family = self.family_of(sample.name)
            self._header(family, sample.name)
            labels = f"{base},{_label_text(sample.labels)}" if sample.labels else base
            chunks.setdefault(family, []).append(
                f"{sample.name}{{{labels}}} {_number(sample.value)}\n"
            )
        return {family: "".join(lines) for family, lines in chunks.items()}

    def render(self) -> str:
        """Every target's series in the text format 0.0.4, grouped by family."""
        grouped: dict[str, list[str]] = {}
        for snapshot in self.snapshots():
            for family, text in snapshot.rendered.items():
                grouped.setdefault(family, []).append(text)
        parts = []
        for family, texts in grouped.items():
            parts.append(self._headers[family])
            parts.extend(texts)
        name = "slipway_exporter_targets"
        parts.append(self._header(name, name))
        parts.append(f'{name}{{kind="{self.kind.value}"}} {_number(self.target_count)}\n')
        if self.round_duration is not None:
            name = "slipway_exporter_round_duration_seconds"
            parts.append(self._header(name, name))
            parts.append(f'{name}{{kind="{self.kind.value}"}} {_number(self.round_duration)}\n')
        return "".join(parts)


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
            base = dict(snapshot.base_labels())
            for sample in snapshot.samples():
                family = store.family_of(sample.name)
                metric = metrics.get(family)
                if metric is None:
                    spec = store.families[sample.name]
                    metric = metrics[family] = Metric(family, spec.help, spec.type.value)
                labels = {**base, **dict(sample.labels)} if sample.labels else base
                metric.samples.append(PromSample(sample.name, labels, sample.value, None, None))
        if self._only is None:
            for name, value in (
                ("slipway_exporter_targets", float(store.target_count)),
                ("slipway_exporter_round_duration_seconds", store.round_duration),
            ):
                if value is None:
                    continue
                metric = Metric(name, EXPORTER_FAMILIES[name].help, "gauge")
                metric.add_sample(name, {"kind": store.kind.value}, value)
                metrics[name] = metric
        yield from metrics.values()
