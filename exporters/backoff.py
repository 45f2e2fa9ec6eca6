"""When to poll a target that keeps failing: a pure function of failures and ``now``.

The poll loop ticks every ``interval``; a healthy target is polled on every tick.
After ``n`` failures in a row a target waits ``interval * 2**(n-1)`` (capped) from
the start of the failed tick, so a dead server costs one connection attempt per
tick at first and then fewer, while its ``up 0`` stays in the snapshot. Due-ness
is judged with half an interval of slack, since ticks do not land on exact times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PollState:
    failures: int = 0
    next_due: float = 0.0


def backoff_delay(failures: int, *, interval: float, cap: float) -> float:
    """Seconds from a failed tick to the next attempt; ``interval`` when none failed."""
    if failures <= 1:
        return interval
    return min(interval * 2.0 ** (failures - 1), max(cap, interval))


def after_success(now: float, *, interval: float) -> PollState:
    return PollState(failures=0, next_due=now + interval)


def after_failure(state: PollState, now: float, *, interval: float, cap: float) -> PollState:
    failures = state.failures + 1
    return PollState(failures, now + backoff_delay(failures, interval=interval, cap=cap))


def is_due(state: PollState, now: float, *, interval: float) -> bool:
    return now + interval / 2 >= state.next_due
