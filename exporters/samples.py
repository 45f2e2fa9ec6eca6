"""Samples as the cores produce them, and the families they belong to.

A core maps what a server said into :class:`Sample` values; the collector adds
the ``target`` label and the user's labels, groups samples into families and
hands them to prometheus_client. Every family name a core may emit is declared
once here, with its exposition type and help.

Counters whose community name has no ``_total`` (postgres_exporter's
``pg_stat_database_*``) are declared ``unknown``: prometheus_client renders a
``counter`` family as ``NAME_total`` in its TYPE line, so a counter type would
either rename the series or give a TYPE line that does not match them. The text
format calls ``unknown`` ``untyped``, which Prometheus stores exactly as it stores
postgres_exporter's series (rate() works the same), and the names stay identical.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from exporters.errors import ErrorKind

Labels = tuple[tuple[str, str], ...]


class Sample(NamedTuple):
    name: str
    labels: Labels
    value: float


class MetricType(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"  # the family name is the sample name without ``_total``
    UNTYPED = "unknown"


@dataclass(frozen=True)
class Family:
    type: MetricType
    help: str


def gauge(help_text: str) -> Family:
    return Family(MetricType.GAUGE, help_text)


def counter(help_text: str) -> Family:
    return Family(MetricType.COUNTER, help_text)


def untyped_counter(help_text: str) -> Family:
    return Family(MetricType.UNTYPED, help_text)


def family_name(sample_name: str, family: Family) -> str:
    if family.type is MetricType.COUNTER:
        return sample_name.removesuffix("_total")
    return sample_name


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


@dataclass(frozen=True)
class Outcome:
    """What a poll means for one target: its samples, or why it is down."""

    samples: list[Sample]
    error: ErrorKind | None = None

    @property
    def up(self) -> bool:
        return self.error is None


def down(up_name: str, error: ErrorKind) -> Outcome:
    """A failed target: only ``<kind>_up 0``; stale values would be worse than none."""
    return Outcome([Sample(up_name, (), 0.0)], error)
