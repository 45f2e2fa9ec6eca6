"""One app's life: asleep -> waking -> awake -> (draining) -> asleep, or crashed. Pure.

Every method takes ``now`` and returns what happened (``Event``s); the shell
(``agent.agent``) publishes the route table and carries ``desired`` to the
runtime. ``draining`` is published as asleep: routers stop sending new
requests first, and only once they are drained do the processes stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from agent.apps import WEB, AppConfig
from agent.policy import Seen, idle
from agent.runtime import Instance, ProcessStatus


class Phase(StrEnum):
    ASLEEP = "asleep"
    WAKING = "waking"
    AWAKE = "awake"
    CRASHED = "crashed"
    #: Endpoints withdrawn from the table; processes stop once routers are drained.
    DRAINING = "draining"


class EventKind(StrEnum):
    WAKING = "waking"
    AWAKE = "awake"
    CRASHED = "crashed"
    RECOVERED = "recovered"
    BOOT_TIMEOUT = "boot_timeout"
    SLEEPING = "sleeping"
    ASLEEP = "asleep"
    SLEEP_CANCELLED = "sleep_cancelled"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    #: For AWAKE: seconds from the wake to the first ready web process.
    seconds: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RouteView:
    """What the route table says about the app."""

    state: str
    endpoints: tuple[tuple[str, int, str], ...] = ()
    reason: str = ""


@dataclass
class AppMachine:
    config: AppConfig
    phase: Phase = Phase.ASLEEP
    #: process -> replicas the runtime should run now.
    desired: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, ProcessStatus] = field(default_factory=dict)
    reason: str = ""
    wake_started: float = 0.0
    awake_since: float = 0.0
    drain_started: float = 0.0
    #: The table version that first withdrew the endpoints; set by the shell when published.
    drain_version: int | None = None
    #: (host, port) of web instances stopped by the last sleep: a snapshot still showing them
    #: ready is older than the stop, and must not end a wake.
    retired: frozenset[tuple[str | None, int | None]] = frozenset()

    @property
    def name(self) -> str:
        return self.config.name

    def start(self, now: float) -> list[Event]:
        """The first decision: always-on processes run; apps that never sleep wake."""
        for process in self.config.processes:
            sleeps = self.config.sleeps_with_web(process)
            self.desired[process] = 0 if sleeps else self.config.replicas(process)
        if not self.config.policy.sleeps:
            return self.wake(now)
        return []

    def reconfigure(self, config: AppConfig, now: float) -> list[Event]:
        """A new definition (release, formation, policy): ``desired`` follows it at once.

        The phase is kept: an awake app runs its new formation, a sleeping one
        stays asleep (its always-on types run), a draining one finishes its
        drain. Dropped process types are forgotten.
        """
        self.config = config
        for process in set(self.desired) - set(config.processes):
            del self.desired[process]
            self.statuses.pop(process, None)
        running = self.phase is not Phase.ASLEEP
        for process in config.processes:
            if running or not config.sleeps_with_web(process):
                self.desired[process] = config.replicas(process)
            else:
                self.desired[process] = 0
        if self.phase is Phase.ASLEEP and not config.policy.sleeps:
            return self.wake(now)
        return []

    # -- inputs ---------------------------------------------------------------------------

    def wake(self, now: float) -> list[Event]:
        """A router holds a request for the app: make it serve (once, however often asked)."""
        if self.phase is Phase.ASLEEP:
            self._scale_up()
            self.reason, self.wake_started = "", now
            if self._ready():
                # The stop was never carried out (the wake came first): nothing to wait for.
                self.phase, self.awake_since = Phase.AWAKE, now
                return [Event(EventKind.WAKING), Event(EventKind.AWAKE, seconds=0.0)]
            self.phase = Phase.WAKING
            return [Event(EventKind.WAKING)]
        if self.phase is Phase.DRAINING:
            self.drain_version = None
            self._scale_up()
            self.awake_since = now
            if self._ready():
                self.phase = Phase.AWAKE
            else:
                self.phase, self.wake_started = Phase.WAKING, now
            return [Event(EventKind.SLEEP_CANCELLED)]
        return []

    def adopt(self, status: ProcessStatus, now: float, since: float | None = None) -> bool:
        """The first snapshot of web after a (re)start: web already runs, so keep it running.

        A restarted or newly elected agent starts with every app asleep; the
        runtime may say otherwise. Rather than stop what serves requests, the
        app counts as awake (waking while no instance is ready) since ``since``
        (a persisted last activity), else since now. True if adopted.
        """
        if status.process != WEB or self.phase is not Phase.ASLEEP or status.desired == 0:
            return False
        self._scale_up()
        self.statuses[WEB] = status
        self.wake_started = now
        self.awake_since = now if since is None else min(now, since)
        self.phase = Phase.AWAKE if self._ready() else Phase.WAKING
        return True

    def observe(self, status: ProcessStatus, now: float) -> list[Event]:
        """A runtime snapshot of one process type."""
        self.statuses[status.process] = status
        if status.process != WEB:
            return []
        ready = bool(self._ready())
        crashed = any(i.crashed and (i.host, i.port) not in self.retired for i in status.instances)
        if self.phase is Phase.WAKING:
            if ready:
                self.phase, self.awake_since = Phase.AWAKE, now
                return [Event(EventKind.AWAKE, seconds=now - self.wake_started)]
            if crashed:
                self.phase, self.reason = Phase.CRASHED, self._crash_reason(status)
                self.awake_since = now
                return [Event(EventKind.CRASHED, reason=self.reason)]
        elif self.phase is Phase.AWAKE and not ready:
            if crashed:
                self.phase, self.reason = Phase.CRASHED, self._crash_reason(status)
                return [Event(EventKind.CRASHED, reason=self.reason)]
            # Restarting (a new release, or a clean exit): hold requests as for a wake.
            self.phase, self.wake_started = Phase.WAKING, now
        elif self.phase is Phase.CRASHED:
            if ready:
                self.phase, self.reason, self.awake_since = Phase.AWAKE, "", now
                return [Event(EventKind.RECOVERED)]
            self.reason = self._crash_reason(status) if crashed else self.reason
        return []

    def tick(self, now: float, seen: Seen, drained: bool, drain_timeout: float) -> list[Event]:
        """Timers: the boot timeout, the idle policy, the end of a drain."""
        policy = self.config.policy
        if self.phase is Phase.ASLEEP and not policy.sleeps:
            return self.wake(now)  # a never-sleeping app whose boot timed out: try again
        if self.phase is Phase.WAKING and now - self.wake_started >= policy.boot_timeout:
            self.reason = f"web did not become ready within {policy.boot_timeout:g}s"
            self._scale_down()
            self.phase = Phase.ASLEEP
            return [Event(EventKind.BOOT_TIMEOUT, reason=self.reason)]
        if self.phase is Phase.AWAKE and idle(policy, seen, self.awake_since, now):
            self.phase, self.drain_started, self.drain_version = Phase.DRAINING, now, None
            return [Event(EventKind.SLEEPING)]
        if self.phase is Phase.CRASHED and idle(policy, seen, self.awake_since, now):
            # Nothing is routed to a crashed app: no drain, just stop the loop.
            self._scale_down()
            self.phase = Phase.ASLEEP
            return [Event(EventKind.ASLEEP)]
        if self.phase is Phase.DRAINING and self.drain_version is not None:
            timed_out = now - self.drain_started >= drain_timeout
            if drained or timed_out:
                self._scale_down()
                self.phase, self.drain_version = Phase.ASLEEP, None
                return [Event(EventKind.ASLEEP, reason="drain timed out" if timed_out else "")]
        return []

    def retire(self) -> None:
        """The shell is about to tell the runtime to stop web: what it runs is retired."""
        web = self.statuses.get(WEB)
        if web is not None:
            self.retired = frozenset((i.host, i.port) for i in web.instances if i.port)

    # -- outputs --------------------------------------------------------------------------

    def view(self) -> RouteView:
        if self.phase is Phase.AWAKE:
            return RouteView(
                "awake", tuple((i.host or "", i.port or 0, i.name) for i in self._ready())
            )
        if self.phase is Phase.DRAINING:
            return RouteView("asleep")
        if self.phase is Phase.CRASHED:
            return RouteView("crashed", reason=self.reason)
        return RouteView(str(self.phase), reason=self.reason)

    # -- helpers --------------------------------------------------------------------------

    def _ready(self) -> tuple[Instance, ...]:
        web = self.statuses.get(WEB)
        if web is None:
            return ()
        return tuple(i for i in web.ready if (i.host, i.port) not in self.retired)

    def _scale_up(self) -> None:
        for process in self.config.processes:
            if self.config.sleeps_with_web(process):
                self.desired[process] = self.config.replicas(process)

    def _scale_down(self) -> None:
        for process in self.config.processes:
            if self.config.sleeps_with_web(process):
                self.desired[process] = 0

    @staticmethod
    def _crash_reason(status: ProcessStatus) -> str:
        reasons = [f"{i.name} {i.reason}".strip() for i in status.instances if i.crashed]
        return "; ".join(reasons) or "web process crashed"
