"""Samples as the cores produce them, and the families they belong to.

A core maps what a server said into :class:`Sample` values; the collector adds
the ``target`` label and the user's labels, groups samples into families and
hands them to prometheus_client. Every family name a core may emit is declared
once here, with its exposition type and help.

Families are keyed by their sample name, and the text exposition prints that
name in its HELP and TYPE lines, as the Go client of the community exporters
does. So a counter keeps the community name whether or not it ends in
``_total``: postgres_exporter's ``pg_stat_database_xact_commit`` is a counter
named exactly that, and its old ``pg_stat_bgwriter_buffers_alloc`` and new
``pg_stat_bgwriter_buffers_alloc_total`` are two counters side by side (the text
format 0.0.4 allows both; OpenMetrics would not, which is why /metrics serves
0.0.4). Families a poll discovers (one per ``pg_settings`` row) travel with its
:class:`Outcome`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from exporters.errors import ErrorKind

Labels = tuple[tuple[str, str], ...]


class Sample(NamedTuple):
    name: str
    labels: Labels
    value: float


class MetricType(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


@dataclass(frozen=True)
class Family:
    type: MetricType
    help: str


def gauge(help_text: str) -> Family:
    return Family(MetricType.GAUGE, help_text)


def counter(help_text: str) -> Family:
    return Family(MetricType.COUNTER, help_text)


#: The exporter's own series, the same for both kinds.
EXPORTER_FAMILIES: dict[str, Family] = {
    "slipway_exporter_poll_duration_seconds": gauge(
        "Seconds the last poll of this target took (for a database target: its server's poll)."
    ),
    "slipway_exporter_last_poll_success_timestamp_seconds": gauge(
        "Unix time of the last poll of this target that succeeded."
    ),
    "slipway_exporter_poll_error": gauge(
        "1 while the last poll of this target failed, labelled with the bounded error kind."
    ),
    "slipway_exporter_targets": gauge("Targets in the targets file, by kind."),
    "slipway_exporter_round_duration_seconds": gauge(
        "Seconds the last poll round (every due target) took; keep it well below the interval."
    ),
}


@dataclass(eq=False)
class SharedSamples:
    """Samples that are the same on every target of one server poll (``pg_settings_*``...).

    One object per poll, referenced by every target's outcome, so they are built and
    rendered once per server rather than once per add-on; compared by identity.
    """

    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Outcome:
    """What a poll means for one target: its samples, or why it is down."""

    samples: list[Sample]
    """This target's own samples."""
    error: ErrorKind | None = None
    families: Mapping[str, Family] = field(default_factory=dict)
    """Families only this poll knows of (``pg_settings_*``: whatever the server has)."""
    shared: SharedSamples | None = None
    """The server's samples this target carries too."""

    @property
    def up(self) -> bool:
        return self.error is None

    def every_sample(self) -> list[Sample]:
        if self.shared is None:
            return list(self.samples)
        return [*self.samples, *self.shared.samples]


def down(up_name: str, error: ErrorKind) -> Outcome:
    """A failed target: only ``<kind>_up 0``; stale values would be worse than none."""
    return Outcome([Sample(up_name, (), 0.0)], error)


@dataclass(frozen=True)
class ScrapeNames:
    """The community exporter's series about its own scrape, here one set per target.

    A community exporter scrapes one server when Prometheus scrapes it; ours polls
    in the background, so these describe the target's last poll, and ``scrapes``
    counts polls.
    """

    duration: str
    scrapes: str
    error: str
    error_label: str | None = None
    """redis_exporter labels its error gauge with the error (``err``; "" when none)."""

    def families(self, server: str) -> dict[str, Family]:
        return {
            self.duration: gauge(f"Duration of the last poll of {server} for this target."),
            self.scrapes: counter(f"Total number of times {server} was polled for this target."),
            self.error: gauge(
                f"Whether the last poll of {server} for this target resulted in an error "
                "(1 for error, 0 for success)."
            ),
        }
