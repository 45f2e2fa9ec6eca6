"""How many web replicas the load needs: a pure function of samples, replicas and ``now``.

Knative's KPA is the model. Routers report the requests they have in flight
per app (held ones included); the agent sums them over routers about once a
second into ``samples``. From those:

- the stable average (the last ``stable_window``, 60 s) gives the replicas the
  load needs: ``ceil(average / target)``;
- the panic average (the last ``panic_window``, 6 s) catches a surge the stable
  one would take a minute to see: once it reaches ``panic_threshold`` times the
  target times the replicas we have, the app panics, scales up at once to what
  the panic average needs, and never scales down while panicking; the panic
  lasts until a whole stable window has passed without the threshold being
  reached again;
- scaling up is one step, straight to what is needed; scaling down is one
  replica at a time, each only once ``scale_down_delay`` has passed since the
  load last needed the replicas we have (or since the last change). The delay
  counts from load, not from the scale-up: a scale-up followed by steady load
  keeps its replicas (KEDA's issue #881 is the complaint about the other way).
  "Needed" includes a panic average that one replica fewer would have panicked
  at: a sawtooth's peaks would otherwise take a replica away and panic it back.
- an average within ``TOLERANCE`` above what the replicas serve at target
  scales nothing up (Kubernetes' HPA: 10%): noise around a steady load that
  sits near a replica boundary would otherwise add a replica now and then,
  which the delay takes away again later.

Bounds are the policy's: never above ``high``; never below ``low`` (at least one
while awake: going to zero is the idle policy's job, not this one's).

Nothing here reads a clock or does I/O; ``decide`` returns the new ``Memory``
the caller keeps for the next call, so tests replay recorded load shapes on a
number line.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from agent.errors import ConfigError
from kit.durations import parse_duration

# Knative's defaults: a minute smooths a noisy load; a tenth of it sees a surge in seconds.
DEFAULT_STABLE_WINDOW = 60.0
DEFAULT_PANIC_WINDOW = 6.0
# Knative's 200%: the surge must need twice the replicas running before we drop the
# stable window's caution.
DEFAULT_PANIC_THRESHOLD = 2.0
# A minute between steps down: a dip shorter than that does not stop a replica that the
# next peak needs again (Heroku's autoscaler removes one dyno per minute at most).
DEFAULT_SCALE_DOWN_DELAY = 60.0
# Kubernetes' HPA tolerance: 10% over the target is noise, not a reason to add a replica.
TOLERANCE = 0.1
# The longest any window may be: the agent keeps this many seconds of samples per app.
MAX_WINDOW = 3600.0
# Far above any one process's useful concurrency, and below JSON's exact range (2**53).
MAX_TARGET = 100_000.0
# At 100x the replicas running, a panic threshold no longer means anything.
MAX_PANIC_THRESHOLD = 100.0


@dataclass(frozen=True, slots=True)
class Autoscale:
    """One process type's autoscaling by concurrency (only ``web`` has one today)."""

    target: float
    """Requests in flight per replica the app is sized for (Knative's container concurrency
    target); above it, more replicas."""
    stable_window: float = DEFAULT_STABLE_WINDOW
    """Seconds of load the replicas follow."""
    panic_window: float = DEFAULT_PANIC_WINDOW
    """Seconds of load that can start a panic; at most the stable window."""
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD
    """A panic starts once the panic window needs this many times the current replicas."""
    scale_down_delay: float = DEFAULT_SCALE_DOWN_DELAY
    """Seconds since the load last needed the replicas before one is taken away."""

    def __post_init__(self) -> None:
        if not 0 < self.target <= MAX_TARGET:
            raise ConfigError(
                f"autoscale target must be above 0 and at most {MAX_TARGET:g}, not {self.target}"
            )
        if not 0 < self.stable_window <= MAX_WINDOW:
            raise ConfigError(
                f"autoscale stable_window must be in (0, {MAX_WINDOW:g}] seconds, "
                f"not {self.stable_window}"
            )
        if not 0 < self.panic_window <= self.stable_window:
            raise ConfigError(
                f"autoscale panic_window must be above 0 and at most the stable_window "
                f"({self.stable_window:g}), not {self.panic_window}"
            )
        if not 1 <= self.panic_threshold <= MAX_PANIC_THRESHOLD:
            raise ConfigError(
                f"autoscale panic_threshold must be in [1, {MAX_PANIC_THRESHOLD:g}], "
                f"not {self.panic_threshold}"
            )
        if not 0 <= self.scale_down_delay <= MAX_WINDOW:
            raise ConfigError(
                f"autoscale scale_down_delay must be in [0, {MAX_WINDOW:g}] seconds, "
                f"not {self.scale_down_delay}"
            )


#: The process types autoscaled by concurrency: only web is routed to (workers scale by queue).
SCALED_BY_CONCURRENCY = frozenset({"web"})
_KEYS = tuple(f.name for f in fields(Autoscale))


def parse_autoscale(raw: object, processes: Collection[str], where: str) -> dict[str, Autoscale]:
    """``{"web": {"target": 10, "stable_window": "60s", ...}}`` checked; ConfigError says what
    is wrong. Windows and the delay are seconds or durations (``"6s"``, ``"1m"``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: autoscale must map a process type to its settings")
    found: dict[str, Autoscale] = {}
    for process, entry in raw.items():
        here = f"{where} autoscale.{process}"
        if process not in processes:
            raise ConfigError(f"{here}: {process!r} is not a process type of the app")
        if process not in SCALED_BY_CONCURRENCY:
            raise ConfigError(
                f"{here}: only web is autoscaled by concurrency (workers scale by queue)"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{here}: expected an object with a target")
        unknown = set(entry) - set(_KEYS)
        if unknown:
            raise ConfigError(f"{here}: unknown keys {sorted(unknown)} (known: {list(_KEYS)})")
        if "target" not in entry:
            raise ConfigError(f"{here}: target (requests in flight per replica) is required")
        values = {key: _number(value, f"{here}.{key}") for key, value in entry.items()}
        try:
            found[process] = Autoscale(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return found


def autoscale_json(autoscale: Mapping[str, Autoscale]) -> dict[str, dict[str, Any]]:
    return {process: asdict(config) for process, config in autoscale.items()}


def _number(value: object, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: expected a number (or a duration like '6s')")


class Reason(StrEnum):
    #: The panic window needs more replicas: up at once.
    PANIC = "panic"
    #: The stable window needs more replicas.
    LOAD = "load"
    #: The load has not needed the replicas for the delay: one fewer.
    IDLE = "idle"
    #: Outside [low, high] (a new policy): brought back within.
    BOUNDS = "bounds"
    #: A panic started or ended (replicas unchanged).
    PANIC_START = "panic_start"
    PANIC_END = "panic_end"
    #: Nothing to change.
    STEADY = "steady"


@dataclass(frozen=True, slots=True)
class Memory:
    """What one decision leaves for the next (the caller keeps it, per app)."""

    #: When the current panic last saw its threshold reached; None: not panicking.
    panic_since: float | None = None
    #: When the load last needed the replicas we had, or replicas last changed.
    needed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    #: Average requests in flight over the stable and the panic windows (None: no samples).
    stable: float | None
    panic: float | None
    memory: Memory

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def panicking(self) -> bool:
        return self.memory.panic_since is not None


#: (when, requests in flight summed over routers), oldest first.
Sample = tuple[float, float]


def average(samples: Sequence[Sample], window: float, now: float) -> float | None:
    """The mean of the samples taken in the last ``window`` seconds; None if there are none."""
    values = [value for at, value in samples if now - window < at <= now]
    return sum(values) / len(values) if values else None


def needed(concurrency: float, target: float) -> int:
    """Replicas for ``concurrency`` at ``target`` each (1e-9: 20.0 / 10 is 2, not 3)."""
    return math.ceil(concurrency / target - 1e-9)


def decide(
    config: Autoscale,
    samples: Sequence[Sample],
    current: int,
    memory: Memory,
    now: float,
    *,
    low: int,
    high: int,
) -> Decision:
    """The replicas to run now, why, and the memory for the next call.

    ``current`` is what was last asked for (not what is ready: replicas that
    are booting already count, so a slow boot does not scale up twice).
    """
    low = max(1, low)
    high = max(low, high)
    stable = average(samples, config.stable_window, now)
    panic = average(samples, config.panic_window, now)
    if current < low or current > high:
        fresh = Memory(panic_since=memory.panic_since, needed_at=now)
        return Decision(current, min(max(current, low), high), Reason.BOUNDS, stable, panic, fresh)
    if stable is None or panic is None:
        return Decision(current, current, Reason.STEADY, stable, panic, memory)
    want_stable = needed(stable, config.target)
    # What each average asks beyond ``current``: nothing within the tolerance.
    above = current * config.target * (1 + TOLERANCE)
    grow_stable = want_stable if stable > above else current
    grow_panic = needed(panic, config.target) if panic > above else current
    needed_at = memory.needed_at if memory.needed_at is not None else now
    surge = config.panic_threshold * config.target
    if want_stable >= current or (current > 1 and panic >= surge * (current - 1)):
        needed_at = now

    panic_since = memory.panic_since
    over = panic >= surge * current
    started = ended = False
    if over:
        started = panic_since is None
        panic_since = now
    elif panic_since is not None and now - panic_since >= config.stable_window:
        panic_since, ended = None, True

    if panic_since is not None:
        # Panicking: the larger of the two needs, and never fewer than we have.
        desired = min(high, max(current, grow_panic, grow_stable))
        reason = Reason.PANIC if desired > current else Reason.STEADY
        if desired == current and started:
            reason = Reason.PANIC_START
        if desired > current:
            needed_at = now
        return Decision(current, desired, reason, stable, panic, Memory(panic_since, needed_at))

    if grow_stable > current:
        desired = min(high, grow_stable)
        reason = Reason.LOAD if desired > current else Reason.STEADY
        return Decision(current, desired, reason, stable, panic, Memory(None, now))
    if current > low and now - needed_at >= config.scale_down_delay:
        # One step, and the next one waits a whole delay again.
        return Decision(current, current - 1, Reason.IDLE, stable, panic, Memory(None, now))
    reason = Reason.PANIC_END if ended else Reason.STEADY
    return Decision(current, current, reason, stable, panic, Memory(None, needed_at))
