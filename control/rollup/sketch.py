"""A latency sketch that merges by adding counts: fixed logarithmic buckets.

A value ``v`` (milliseconds) falls in bucket ``floor(log(v) / log(GAMMA))``, which
spans ``[GAMMA**i, GAMMA**(i+1))``; a quantile answers that bucket's geometric middle,
``GAMMA**(i + 0.5)``. So a quantile is within ``sqrt(GAMMA) - 1`` (3.92 %) of the
exact value of the same rank (nearest-rank definition), whatever the distribution.
Values under 1 ms (the router reports whole milliseconds, so 0) answer 0.

Buckets are fixed, not learned, so two sketches (two routers, two minutes) merge by
adding their counts, the way DDSketch merges; from 1 ms to the 30 s request limit
there are at most 135 of them, and a sketch holds only those that were hit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: 8 % wide buckets: a 3.92 % bound on a quantile, and at most 135 buckets up to 30 s.
GAMMA = 1.08
#: The relative error of any quantile (vs the exact value of the same rank).
RELATIVE_ERROR = math.sqrt(GAMMA) - 1
_LOG_GAMMA = math.log(GAMMA)
#: The bucket of values under 1 ms; it answers 0.
ZERO = -1
#: Nothing above an hour is a request latency or a wake time; clamped there (bucket 145).
_CEILING_MS = 3_600_000.0


def _bucket_of(ms: float) -> int:
    if ms < 1.0:
        return ZERO
    return int(math.log(min(ms, _CEILING_MS)) / _LOG_GAMMA)


#: The router reports whole milliseconds: their buckets up to a minute, worked out once.
_WHOLE_MS = tuple(_bucket_of(ms) for ms in range(60_001))


def bucket_of(ms: float) -> int:
    if 0 <= ms <= 60_000 and ms == (whole := int(ms)):
        return _WHOLE_MS[whole]
    return _bucket_of(ms)


def value_of(index: int) -> float:
    return 0.0 if index == ZERO else GAMMA ** (index + 0.5)


class Sketch:
    """Counts per bucket index; ``add`` one value, ``merge`` another sketch."""

    __slots__ = ("counts", "total")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.total = sum(self.counts.values())

    def add(self, ms: float, count: int = 1) -> None:
        self.add_index(bucket_of(ms), count)

    def add_index(self, index: int, count: int = 1) -> None:
        """``add`` with the bucket already worked out (``bucket_of``)."""
        self.counts[index] = self.counts.get(index, 0) + count
        self.total += count

    def merge(self, other: Sketch) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) by nearest rank, None when empty."""
        if self.total == 0:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return value_of(index)
        return value_of(max(self.counts))  # pragma: no cover - rank <= total always

    def quantiles(self, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[str, float] | None:
        """``{"p50": ms, ...}`` (``max`` for 1.0) rounded to 0.1 ms, None when empty."""
        if self.total == 0:
            return None
        out: dict[str, float] = {}
        for q in qs:
            value = self.quantile(q)
            assert value is not None
            out["max" if q == 1.0 else f"p{round(q * 100):d}"] = round(value, 1)
        return out

    def to_json(self) -> dict[str, int]:
        return {str(i): c for i, c in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Sketch:
        return cls({int(i): int(c) for i, c in data.items()})
