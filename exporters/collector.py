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
  hold the same samples. /probe renders one target's chunks the same way.

Every family is keyed by its sample name, which is also the name in its HELP
and TYPE lines (see :mod:`exporters.samples`). prometheus_client's model cannot
type a counter whose samples lack ``_total`` (it would rename them), so the
collector view types those ``unknown``; the text views, which Prometheus
scrapes, say ``counter`` as postgres_exporter does.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample
from prometheus_client.utils import floatToGoString

from exporters.samples import (
    EXPORTER_FAMILIES,
    Family,
    MetricType,
    Outcome,
    Sample,
    ScrapeNames,
    SharedSamples,
)
from exporters.targets import Kind, Target

#: prometheus_client's own number format (Go's), so both views print values alike.
number_text = cast(Callable[[float], str], floatToGoString)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """``key="value",...`` as the text format writes it between braces."""
    return ",".join(f'{key}="{_escape(value)}"' for key, value in labels)


@dataclass(frozen=True)
class TargetSnapshot:
    target: Target
    outcome: Outcome
    duration: float | None = None
    """Seconds the poll took (a database target: its server's poll)."""
    last_success: float | None = None
    """Unix time of the last poll that succeeded, if any."""
    rendered: Mapping[str, bytes] = field(default_factory=dict)
    """Family name -> this target's own sample lines in the text format."""
    shared_lines: Mapping[str, tuple[tuple[bytes, bytes], ...]] = field(default_factory=dict)
    """Family name -> the server's lines, each split around where this target's labels go."""
    base_text: str = ""
    """This target's labels as the text format writes them."""
    polls: int = 0
    """Polls of this target so far, failed ones included."""
    scrape_names: ScrapeNames | None = None

    def samples(self) -> list[Sample]:
        """Every sample of this target: its own, the server's, the exporter's about it."""
        shared = self.outcome.shared
        return self.own_samples() + (list(shared.samples) if shared is not None else [])

    def own_samples(self) -> list[Sample]:
        """The outcome's own samples and the exporter's series about this target."""
        out = list(self.outcome.samples)
        if self.duration is not None:
            out.append(Sample("slipway_exporter_poll_duration_seconds", (), self.duration))
        names = self.scrape_names
        if names is not None and self.polls:
            if self.duration is not None:
                out.append(Sample(names.duration, (), self.duration))
            out.append(Sample(names.scrapes, (), float(self.polls)))
            failed = self.outcome.error is not None
            error_labels: tuple[tuple[str, str], ...] = ()
            if names.error_label is not None:
                kind = self.outcome.error.value if self.outcome.error is not None else ""
                error_labels = ((names.error_label, kind),)
            out.append(Sample(names.error, error_labels, 1.0 if failed else 0.0))
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

    def __init__(
        self,
        *,
        kind: Kind,
        families: Mapping[str, Family],
        scrape_names: ScrapeNames | None = None,
    ) -> None:
        self.kind = kind
        self.scrape_names = scrape_names
        self.families = {**families, **EXPORTER_FAMILIES}
        if scrape_names is not None:
            self.families.update(scrape_names.families(kind.value))
        self._snapshots: dict[str, TargetSnapshot] = {}
        self.generation = 0
        self.target_count = 0
        self.round_duration: float | None = None
        self._headers: dict[str, str] = {}
        self._merged: Mapping[str, Family] | None = None
        self._shared: weakref.WeakKeyDictionary[
            SharedSamples, dict[str, tuple[tuple[bytes, bytes], ...]]
        ] = weakref.WeakKeyDictionary()

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
        polls = (previous.polls if previous else 0) + 1
        if outcome.families and outcome.families is not self._merged:
            for name, family in outcome.families.items():
                # plain dict stores: atomic under the GIL, and a name always means one family
                self.families.setdefault(name, family)
            self._merged = outcome.families  # the targets of one server share the mapping
        snapshot = TargetSnapshot(
            target, outcome, duration, last_success, polls=polls, scrape_names=self.scrape_names
        )
        base = label_text(snapshot.base_labels())
        shared = self._render_shared(outcome.shared) if outcome.shared is not None else {}
        return replace(
            snapshot,
            rendered=self._render(snapshot, base),
            shared_lines=shared,
            base_text=base,
        )

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

    def _header(self, name: str) -> str:
        header = self._headers.get(name)
        if header is None:
            spec = self.families[name]
            doc = spec.help.replace("\\", "\\\\").replace("\n", "\\n")
            header = self._headers[name] = f"# HELP {name} {doc}\n# TYPE {name} {spec.type.value}\n"
        return header

    def _render_shared(self, shared: SharedSamples) -> dict[str, tuple[tuple[bytes, bytes], ...]]:
        """The server's lines, made once per poll however many targets carry them."""
        lines = self._shared.get(shared)
        if lines is None:
            split: dict[str, list[tuple[bytes, bytes]]] = {}
            for sample in shared.samples:
                self._header(sample.name)
                own = f",{label_text(sample.labels)}" if sample.labels else ""
                split.setdefault(sample.name, []).append(
                    (f"{sample.name}{{".encode(), f"{own}}} {number_text(sample.value)}\n".encode())
                )
            lines = self._shared[shared] = {name: tuple(pairs) for name, pairs in split.items()}
        return lines

    def _render(self, snapshot: TargetSnapshot, base: str) -> dict[str, bytes]:
        chunks: dict[str, list[str]] = {}
        for sample in snapshot.own_samples():
            family = sample.name
            self._header(family)
            labels = f"{base},{label_text(sample.labels)}" if sample.labels else base
            chunks.setdefault(family, []).append(
                f"{sample.name}{{{labels}}} {number_text(sample.value)}\n"
            )
        return {family: "".join(lines).encode() for family, lines in chunks.items()}

    def render(self, only: str | None = None) -> str:
        return self.render_bytes(only).decode()

    def render_bytes(self, only: str | None = None) -> bytes:
        """Every target's series (or ``only`` one's) in the text format 0.0.4, by family.

        Written family by family straight into one buffer: a server's lines repeated on
        200 add-ons are ~55k lines, and writing their pieces makes no object per line.
        """
        if only is None:
            snapshots = self.snapshots()
        else:
            one = self.get(only)
            snapshots = [one] if one is not None else []
        order: dict[str, None] = {}
        for snapshot in snapshots:
            order.update(dict.fromkeys(snapshot.rendered))
            order.update(dict.fromkeys(snapshot.shared_lines))
        bases = [snapshot.base_text.encode() for snapshot in snapshots]
        out = io.BytesIO()
        write = out.write
        for family in order:
            write(self._headers[family].encode())
            for snapshot, base in zip(snapshots, bases, strict=True):
                chunk = snapshot.rendered.get(family)
                if chunk is not None:
                    write(chunk)
                for prefix, suffix in snapshot.shared_lines.get(family, ()):
                    write(prefix)
                    write(base)
                    write(suffix)
        if only is None:
            kind = self.kind.value
            name = "slipway_exporter_targets"
            value = number_text(self.target_count)
            write(f'{self._header(name)}{name}{{kind="{kind}"}} {value}\n'.encode())
            if self.round_duration is not None:
                name = "slipway_exporter_round_duration_seconds"
                value = number_text(self.round_duration)
                write(f'{self._header(name)}{name}{{kind="{kind}"}} {value}\n'.encode())
        return out.getvalue()


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
                metric = metrics.get(sample.name)
                if metric is None:
                    spec = store.families[sample.name]
                    if spec.type is not MetricType.COUNTER:
                        metric = Metric(sample.name, spec.help, spec.type.value)
                    elif sample.name.endswith("_total"):
                        metric = Metric(sample.name.removesuffix("_total"), spec.help, "counter")
                    else:  # prometheus_client would print it as NAME_total: see the docstring
                        metric = Metric(sample.name, spec.help, "unknown")
                    metrics[sample.name] = metric
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
