"""When an app sleeps: a pure function of merged router activity and ``now``.

An app goes to sleep once no request was seen for ``idle_after`` and none is
in flight on any router. Nothing here reads a clock; the agent passes ``now``
(its loop clock), so tests drive a 5-minute idle with a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.errors import ConfigError
from kit.wire import DEFAULT_BOOT_TIMEOUT, DEFAULT_MAX_HELD

# Heroku and neetoDeploy review apps sleep after 5 minutes without traffic.
DEFAULT_IDLE_AFTER = 300.0
# A ceiling so a typo in a formation cannot fork-bomb the machine.
DEFAULT_MAX_SCALE = 10


@dataclass(frozen=True, slots=True)
class Policy:
    idle_after: float = DEFAULT_IDLE_AFTER
    """Seconds without a request before the app sleeps."""
    min_scale: int = 0
    """Web replicas kept even when idle; above 0 the app never sleeps."""
    max_scale: int = DEFAULT_MAX_SCALE
    """Web replicas at most, whatever the formation asks."""
    never_sleep: bool = False
    """Production apps: always at least one web process."""
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    """Seconds from wake to a ready web process before held requests get H20."""
    max_held: int = DEFAULT_MAX_HELD
    """Requests a router holds for the app while it wakes; beyond, H11."""

    def __post_init__(self) -> None:
        # Finite too: TOML's inf and nan would reach the route table, whose JSON then
        # carries Infinity, which no JSON parser but Python's reads back.
        if not 0 < self.idle_after < math.inf:
            raise ConfigError(
                f"idle_after must be above 0 seconds and finite, not {self.idle_after}"
            )
        if not 0 < self.boot_timeout < math.inf:
            raise ConfigError(
                f"boot_timeout must be above 0 seconds and finite, not {self.boot_timeout}"
            )
        if self.min_scale < 0:
            raise ConfigError(f"min_scale must be 0 or more, not {self.min_scale}")
        if self.max_scale < 1:
            raise ConfigError(f"max_scale must be 1 or more, not {self.max_scale}")
        if self.min_scale > self.max_scale:
            raise ConfigError(f"min_scale ({self.min_scale}) is above max_scale ({self.max_scale})")
        if self.max_held < 0:
            raise ConfigError(f"max_held must be 0 or more, not {self.max_held}")

    @property
    def sleeps(self) -> bool:
        return not self.never_sleep and self.min_scale == 0

    def web_replicas(self, formation: int) -> int:
        """Web replicas while awake: the formation, within [max(1, min_scale), max_scale]."""
        return max(1, self.min_scale, min(formation, self.max_scale))


@dataclass(frozen=True, slots=True)
class Seen:
    """An app's activity merged over every live router, on the agent's clock."""

    in_flight: int = 0
    #: When a request last arrived or finished; None if no router has seen one.
    last_seen: float | None = None


def idle(policy: Policy, seen: Seen, awake_since: float, now: float) -> bool:
    """True once the app should sleep: idle for ``idle_after``, nothing in flight.

    ``awake_since`` counts as activity, so a freshly woken app gets a full
    ``idle_after`` even if the request that woke it is not reported yet.
    """
    if not policy.sleeps or seen.in_flight > 0:
        return False
    last = awake_since if seen.last_seen is None else max(awake_since, seen.last_seen)
    return now - last >= policy.idle_after
