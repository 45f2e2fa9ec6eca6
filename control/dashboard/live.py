"""Each app's state now, for the apps list: asleep, waking, up, crashed, idle for N s.

Under ``slipway up`` the agent runs in this process and is read directly
(its machines and the routers' activity reports). Elsewhere (the control
plane over an agent's HTTP API, or detached) no live state is known here;
the list says so instead of guessing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from agent.agent import Agent
from agent.machine import Phase


@dataclass(frozen=True, slots=True)
class Live:
    #: asleep | waking | up | crashed | draining | unknown
    state: str
    #: Seconds since the last request, when the app is up and a router saw one.
    idle_for: float | None = None
    #: Seconds left before it sleeps, if it sleeps at all.
    sleeps_in: float | None = None
    reason: str = ""
    #: Wall-clock time of the last request a router reported, if any.
    last_request: float | None = None

    def label(self) -> str:
        if self.state == "up" and self.idle_for is not None:
            return f"up · idle {int(self.idle_for)} s"
        return self.state

    def wire(self) -> dict[str, object]:
        return {
            "state": self.state,
            "label": self.label(),
            "idle_for": self.idle_for,
            "sleeps_in": self.sleeps_in,
            "reason": self.reason,
            "last_request": self.last_request,
        }


UNKNOWN = Live(state="unknown")

_STATES = {
    Phase.ASLEEP: "asleep",
    Phase.WAKING: "waking",
    Phase.AWAKE: "up",
    Phase.CRASHED: "crashed",
    Phase.DRAINING: "draining",
}


#: An app the agent does not run: never deployed, or no web process.
STOPPED = Live(state="stopped")


class LiveStates(Protocol):
    #: What an app missing from ``states()`` is.
    missing: Live

    def states(self) -> dict[str, Live]: ...


class NoLiveStates:
    missing = UNKNOWN

    def states(self) -> dict[str, Live]:
        return {}


class AgentStates:
    """The in-process agent's view: phases, and idle time from the routers' reports."""

    missing = STOPPED

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def states(self) -> dict[str, Live]:
        now = asyncio.get_running_loop().time()  # the routers' reports use the loop clock
        wall = time.time()
        found: dict[str, Live] = {}
        for name, machine in self.agent.machines.items():
            state = _STATES.get(machine.phase, str(machine.phase))
            idle_for = sleeps_in = None
            seen = self.agent.reports.seen(name)
            last_request = None
            if seen.last_seen is not None:
                last_request = wall - max(0.0, now - seen.last_seen)
            if state == "up":
                last = seen.last_seen if seen.last_seen is not None else machine.awake_since
                idle_for = max(0.0, now - last) if seen.in_flight == 0 else 0.0
                policy = machine.config.policy
                if policy.sleeps:
                    sleeps_in = max(0.0, policy.idle_after - idle_for)
            found[name] = Live(
                state=state,
                idle_for=idle_for,
                sleeps_in=sleeps_in,
                reason=machine.reason,
                last_request=last_request,
            )
        return found
