"""The agent: drives a Runtime from each app's state machine and publishes the route table.

Long because: its three inputs, the per-app locks, the scaling tasks and the
route table share the machines' state, and their order is the guarantee below
(nothing interleaves, no request reaches a dying process); its decisions are
already apart (machine.py, policy, autoscaler, queues), what is left is that order.

Three inputs, all handled synchronously on the loop so transitions never
interleave: runtime snapshots (a watch task), wakes (``wake``, the router's
``Waker``) and a tick (boot timers, the idle policy, drains). After each,
the route table is republished if any app's view changed (subscribers are
called at once, long polls answered), and the desired replicas go to the
runtime through one task per app that always applies the latest wish, so a
sleep immediately followed by a wake never stops anything.

On sleep the order is: withdraw the endpoints (publish), wait until every
router reports that table version with nothing in flight for the app, then
stop the processes. A request racing the sleep therefore finds no endpoint
and is held and wakes the app; none reaches a dying process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from typing import Any

from prometheus_client import CollectorRegistry

from agent.activity import Reports
from agent.apps import WEB, AppConfig
from agent.autoscaler import Autoscaler
from agent.dynowatch import DynoMonitor
from agent.errors import AgentError, ConfigError, RuntimeFailure, UnknownApp
from agent.machine import AppMachine, Event, EventKind, Phase
from agent.metrics import AgentMetrics
from agent.once import MAX_RUN_TIMEOUT
from agent.queue_watch import QueueWatcher
from agent.runtime import OnceResult, ProcessStatus, Runtime
from agent.settings import AgentSettings
from agent.table import route_table
from kit.ptyspawn import PtyChild
from kit.tasks import TaskSet
from kit.wire import ActivityPost, RouteTablePayload

log = logging.getLogger(__name__)

Subscriber = Callable[[RouteTablePayload], None]

#: The process type a one-off process runs as (its label on Kubernetes).
ONCE_PROCESS = "release"

# Seconds before a failed runtime.scale is tried again (the runtime may be restarting).
SCALE_RETRY = 1.0


class Agent:
    def __init__(
        self,
        apps: Iterable[AppConfig],
        *,
        runtime: Runtime,
        registry: CollectorRegistry,
        settings: AgentSettings | None = None,
        tasks: TaskSet | None = None,
        dynos: DynoMonitor | None = None,
    ) -> None:
        """``tasks``: the process's task set; the watch, the tick and every app's scaler run
        in it, so a dead one stops the process rather than freezing every app's state.
        ``dynos``: samples the runtime's instances (memory, CPU, R14/R15); None: not sampled."""
        self.settings = settings or AgentSettings()
        self.runtime = runtime
        self.dynos = dynos
        self.machines = {config.name: AppMachine(config) for config in apps}
        self.reports = Reports(ttl=self.settings.router_ttl)
        # Microseconds since the epoch: versions keep growing across agent restarts, so a
        # router never mistakes a new agent's table for an old one.
        self.version = time.time_ns() // 1000
        self.table: RouteTablePayload = route_table(self.version, self.machines.values())
        self._views: dict[str, tuple[object, ...]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._subscribers: list[Subscriber] = []
        self._changed: asyncio.Future[None] | None = None
        self._applied: dict[tuple[str, str], int] = {}
        #: (app, process) the runtime has reported at least once: only those are scaled, so
        #: a restarted agent learns what runs before it changes anything.
        self._observed: set[tuple[str, str]] = set()
        #: The last status of each process type of no app we know (yet): ``define`` may be
        #: between creating it in the runtime and adding the app when its first status comes.
        self._unclaimed: dict[tuple[str, str], ProcessStatus] = {}
        self._dirty: dict[str, asyncio.Event] = {}
        #: Workers each (app, process) queue asks for (agent/queue_watch.py), beside what the
        #: app's phase asks: the runtime gets the larger, so a queued job wakes its worker.
        self._queued: dict[tuple[str, str], int] = {}
        self._tasks = TaskSet.of(tasks)
        self.metrics = AgentMetrics(
            registry,
            phases=lambda: {name: str(m.phase) for name, m in self.machines.items()},
            in_flight=lambda: {name: self.reports.seen(name).in_flight for name in self.machines},
            routers=lambda: len(self.reports.routers()),
            version=lambda: self.version,
        )
        self.autoscaler = Autoscaler(registry)
        self.queues = QueueWatcher(
            apps=lambda: [m.config for m in self.machines.values()],
            demand=self.queue_demand,
            registry=registry,
            interval=self.settings.queue_interval,
        )
        self.started = False

    @property
    def failed(self) -> asyncio.Event:
        """Set when a background task of the process died (the runner stops it)."""
        return self._tasks.failed

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        for machine in self.machines.values():
            self.runtime.describe(machine.config)
            for spec in machine.config.processes.values():
                await self.runtime.apply(spec)
        self._tasks.start("agent-watch", self._watch())
        if self.runtime.activity_interval is not None:
            self._tasks.start(
                "agent-persist-activity", self._persist_activity(self.runtime.activity_interval)
            )
        for machine in self.machines.values():
            self._run_machine(machine)
        self._tasks.start("agent-tick", self._tick())
        if self.dynos is not None:
            self._tasks.start("agent-dynos", self.dynos.run())
        self._tasks.start("agent-autoscale", self._autoscale())
        self._tasks.start("agent-queues", self.queues.run())
        self.started = True
        log.info("agent started", extra={"apps": len(self.machines), "version": self.version})

    def _run_machine(self, machine: AppMachine) -> None:
        self._dirty[machine.name] = asyncio.Event()
        self._tasks.start(f"agent-scale:{machine.name}", self._scaler(machine))
        now = asyncio.get_running_loop().time()
        self._handle(machine, machine.start(now))
        for key in [k for k in self._unclaimed if k[0] == machine.name]:
            self._observe(machine, self._unclaimed.pop(key), now)

    async def stop(self) -> None:
        """Stop deciding, stop every process (the runtime's close), release long polls."""
        await self._tasks.stop()
        await self.runtime.close()
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    # -- inputs ---------------------------------------------------------------------------

    async def wake(self, app: str) -> None:
        """The ``Waker`` seam: returns once the wake is under way."""
        machine = self.machines.get(app)
        if machine is None:
            raise UnknownApp(app)
        if not self.started:
            raise AgentError("the agent is still starting")
        self._handle(machine, machine.wake(asyncio.get_running_loop().time()))

    async def define(self, config: AppConfig) -> None:
        """Run ``config`` from now on: a new app, or a new release, formation or policy of one.

        The control plane's way in (in process, or ``PUT /v1/apps/{app}``). Changed
        process specs restart their running instances (the runtime compares specs);
        requests meanwhile are held as for a wake. The agent stays the only one that
        decides replicas: an asleep app stays asleep until a request comes.
        """
        async with self._lock(config.name):
            previous = self.machines.get(config.name)
            self.runtime.describe(config)
            try:
                taken = {h: name for name, m in self.machines.items() for h in m.config.hosts}
                for host in config.hosts:
                    if taken.get(host, config.name) != config.name:
                        raise ConfigError(f"host {host!r} belongs to app {taken[host]!r}")
                await self._define(config)
            except ConfigError:
                if previous is not None:
                    self.runtime.describe(previous.config)
                raise

    async def _define(self, config: AppConfig) -> None:
        """``define``'s body, under the app's lock, once the runtime knows the definition."""
        machine = self.machines.get(config.name)
        if machine is None:
            machine = AppMachine(config)
            for spec in config.processes.values():
                await self.runtime.apply(spec)
            self.machines[config.name] = machine
            if self.started:
                self._run_machine(machine)
            log.info("app defined", extra={"app": config.name, "hosts": len(config.hosts)})
            return
        dropped = set(machine.config.processes) - set(config.processes)
        scaled = machine.desired.get(WEB)
        events = machine.reconfigure(config, asyncio.get_running_loop().time())
        if scaled and WEB in config.autoscale and machine.desired.get(WEB):
            # A new release keeps the replicas its load needed, within the new bounds.
            policy = config.policy
            machine.desired[WEB] = min(max(scaled, policy.min_scale, 1), policy.max_scale)
        for process in sorted(dropped):
            self._applied.pop((config.name, process), None)
            self._observed.discard((config.name, process))
            await self.runtime.remove(config.name, process)
        for spec in config.processes.values():
            await self.runtime.apply(spec)
        self._handle(machine, events)
        log.info("app redefined", extra={"app": config.name, "hosts": len(config.hosts)})

    async def run_once(self, config: AppConfig, command: str, *, timeout: float) -> OnceResult:
        """Run ``command`` once in the release ``config`` defines (its directory or image, its
        env), not necessarily the one running: the release phase runs the NEW release before
        it is defined (``POST /v1/apps/{app}/run``). Nothing about the app's state changes."""
        if not command.strip():
            raise ConfigError(f"app {config.name!r}: the command must be a non-empty string")
        if not 0 < timeout <= MAX_RUN_TIMEOUT:
            raise ConfigError(f"the timeout must be in (0, {MAX_RUN_TIMEOUT:g}] seconds")
        base = next(iter(config.processes.values()), None)
        if base is None:
            raise ConfigError(f"app {config.name!r}: no processes")
        spec = replace(base, process=ONCE_PROCESS, command=command, health_path=None)
        log.info("one-off process starting", extra={"app": config.name, "release": spec.release})
        return await self.runtime.run_once(spec, command, timeout=timeout)

    def terminal_refusal(self) -> str | None:
        """Why this runtime cannot give a one-off a terminal; None when it can."""
        if getattr(self.runtime, "open_terminal", None) is None:
            return (
                "an interactive run needs the embedded runtime (slipway up); this agent "
                "runs one-off processes as Kubernetes Jobs: use --no-tty"
            )
        return None

    async def open_terminal(
        self, config: AppConfig, command: str, *, dyno: str, size: tuple[int, int], term: str
    ) -> PtyChild:
        """``run_once``'s process on a pseudo-terminal (``slipway run bash``), where the
        runtime allows it (LocalRuntime); the caller owns its lifetime."""
        if not command.strip():
            raise ConfigError(f"app {config.name!r}: the command must be a non-empty string")
        refusal = self.terminal_refusal()
        opener = getattr(self.runtime, "open_terminal", None)
        if refusal is not None or opener is None:
            raise RuntimeFailure(refusal or "no terminals here")
        base = next(iter(config.processes.values()), None)
        if base is None:
            raise ConfigError(f"app {config.name!r}: no processes")
        spec = replace(base, process=ONCE_PROCESS, command=command, health_path=None)
        log.info("interactive one-off starting", extra={"app": config.name, "dyno": dyno})
        child: PtyChild = await opener(spec, command, dyno=dyno, size=size, term=term)
        return child

    async def forget(self, app: str) -> None:
        """Stop every process of ``app`` and stop routing to it (a deleted app)."""
        async with self._lock(app):
            machine = self.machines.pop(app, None)
            if machine is None:
                raise UnknownApp(app)
            await self._tasks.cancel(f"agent-scale:{app}")
            self.autoscaler.forget(app)
            self.queues.forget(app)
            self._dirty.pop(app, None)
            for process in machine.config.processes:
                self._applied.pop((app, process), None)
                self._observed.discard((app, process))
                self._queued.pop((app, process), None)
                with contextlib.suppress(UnknownApp):
                    await self.runtime.remove(app, process)
            # The removal's last snapshots arrive with no app to claim them: not kept, so a
            # later app of the same name does not start from the old one's last view.
            for key in [k for k in self._unclaimed if k[0] == app]:
                del self._unclaimed[key]
            # Nor series: /metrics keeps no label set of a deleted app (agent/metrics.py).
            self.metrics.forget(app)
            if self.dynos is not None:
                self.dynos.forget(app)
            self._publish()
            log.info("app forgotten", extra={"app": app})
        self._locks.pop(app, None)

    async def restart(self, app: str, process: str | None = None) -> None:
        """Stop and start again one process type, or all of the app's, at their replicas."""
        async with self._lock(app):
            machine = self.machines.get(app)
            if machine is None:
                raise UnknownApp(app)
            if process is not None and process not in machine.config.processes:
                raise UnknownApp(app, process)
            for name in [process] if process else sorted(machine.config.processes):
                await self.runtime.restart(app, name)
            dirty = self._dirty.get(app)
            if dirty is not None:
                dirty.set()
            log.info("processes restarting", extra={"app": app, "process_type": process or "all"})

    def _lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def queue_demand(self, app: str, process: str, replicas: int) -> None:
        """Workers ``process``'s queue asks for now (0: none beyond what the app's phase asks)."""
        key = (app, process)
        if self._queued.get(key, 0) == replicas or app not in self.machines:
            return
        if replicas:
            self._queued[key] = replicas
        else:
            self._queued.pop(key, None)
        dirty = self._dirty.get(app)
        if dirty is not None:
            dirty.set()

    def _wanted(self, app: str, process: str, replicas: int) -> int:
        return max(replicas, self._queued.get((app, process), 0))

    def report(self, post: ActivityPost) -> None:
        """A router's activity report (in-process or ``POST /v1/activity``)."""
        self.reports.add(post, asyncio.get_running_loop().time())

    # -- outputs --------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with the table now and after every change; returns an undo."""
        self._subscribers.append(subscriber)
        subscriber(self.table)
        return lambda: self._subscribers.remove(subscriber)

    async def changed(self, after: int, timeout: float) -> RouteTablePayload | None:
        """The table once its version is not ``after``; None if it did not change in time."""
        if self.table["version"] != after:
            return self.table
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        return self.table if self.table["version"] != after else None

    def status(self, app: str) -> dict[str, Any]:
        """One app's state and its processes' instances (``GET /v1/apps/{app}``)."""
        machine = self.machines.get(app)
        if machine is None:
            raise UnknownApp(app)
        processes: dict[str, Any] = {}
        usage = self.dynos.usage(app) if self.dynos is not None else {}
        for name, spec in machine.config.processes.items():
            status = machine.statuses.get(name)
            processes[name] = {
                "release": spec.release,
                "wanted": machine.config.replicas(name),
                "desired": machine.desired.get(name, 0),
                "instances": [asdict(i) for i in status.instances] if status else [],
                "usage": {i.name: usage[i.name] for i in status.instances if i.name in usage}
                if status
                else {},
            }
            queue = self.queues.view(app, name)
            if queue is not None:  # workers woken by their queue: what it asks for and why
                processes[name]["queue"] = queue
        return {"app": app, "state": str(machine.phase), "reason": machine.reason,
                "processes": processes}  # fmt: skip

    def autoscale(self, app: str) -> dict[str, Any]:
        """One app's autoscaling: its settings, its state, its last decisions
        (``GET /v1/apps/{app}/autoscale``)."""
        machine = self.machines.get(app)
        if machine is None:
            raise UnknownApp(app)
        config = machine.config.autoscale.get(WEB)
        policy = machine.config.policy
        return {
            "app": app,
            "process": WEB,
            "enabled": config is not None,
            "settings": asdict(config) if config else None,
            "min": policy.min_scale,
            "max": policy.max_scale,
            "desired": machine.desired.get(WEB, 0),
            **self.autoscaler.view(app),
        }

    def states(self) -> dict[str, dict[str, Any]]:
        """Each app's state for people (``GET /v1/apps``)."""
        return {
            name: {
                "state": str(m.phase),
                "reason": m.reason,
                "desired": dict(m.desired),
                "endpoints": [f"{h}:{p}" for h, p, _ in m.view().endpoints],
            }
            for name, m in self.machines.items()
        }

    # -- the shell around the machines ----------------------------------------------------

    def _handle(self, machine: AppMachine, events: list[Event]) -> None:
        for event in events:
            self._record(machine, event)
        self._publish()
        dirty = self._dirty.get(machine.name)
        if dirty is not None and any(
            self._applied.get((machine.name, p)) != self._wanted(machine.name, p, n)
            for p, n in machine.desired.items()
        ):
            dirty.set()

    def _record(self, machine: AppMachine, event: Event) -> None:
        app = machine.name
        fields: dict[str, Any] = {"app": app}
        kind = event.kind
        if kind is EventKind.WAKING:
            self.metrics.wakes.labels(app).inc()
            log.info("app waking", extra=fields)
        elif kind is EventKind.AWAKE:
            assert event.seconds is not None
            self.metrics.wake_duration.labels(app).observe(event.seconds)
            log.info("app awake", extra={**fields, "wake_ms": round(event.seconds * 1000)})
        elif kind is EventKind.CRASHED:
            self.metrics.crashes.labels(app).inc()
            log.warning("app crashed", extra={**fields, "reason": event.reason})
        elif kind is EventKind.RECOVERED:
            log.info("app recovered", extra=fields)
        elif kind is EventKind.BOOT_TIMEOUT:
            self.metrics.boot_timeouts.labels(app).inc()
            log.warning("app boot timeout", extra={**fields, "reason": event.reason})
        elif kind is EventKind.SLEEPING:
            log.info(
                "app idle, going to sleep",
                extra={**fields, "idle_after": machine.config.policy.idle_after},
            )
        elif kind is EventKind.ASLEEP:
            self.metrics.sleeps.labels(app).inc()
            self.autoscaler.slept(app)
            if event.reason:
                fields["note"] = event.reason
            log.info("app asleep", extra=fields)
        elif kind is EventKind.SLEEP_CANCELLED:
            log.info("sleep cancelled by a request", extra=fields)

    def _publish(self) -> None:
        views = {name: _routed(m) for name, m in self.machines.items()}
        if views == self._views:
            return
        self._views = views
        self.version += 1
        self.table = route_table(self.version, self.machines.values())
        for machine in self.machines.values():
            if machine.phase is Phase.DRAINING and machine.drain_version is None:
                machine.drain_version = self.version
        for subscriber in list(self._subscribers):
            try:
                subscriber(self.table)
            except Exception:
                log.exception("route table subscriber failed", extra={"version": self.version})
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        async for status in self.runtime.watch():
            machine = self.machines.get(status.app)
            if machine is None:
                self._unclaimed[(status.app, status.process)] = status
                continue
            self._observe(machine, status, loop.time())

    def _observe(self, machine: AppMachine, status: ProcessStatus, now: float) -> None:
        key = (status.app, status.process)
        if key not in self._observed:
            self._observed.add(key)
            self._applied.setdefault(key, status.desired)
            if machine.adopt(status, now, self._active_since(machine, now)):
                log.info("app found running, adopted", extra={"app": status.app})
        self._handle(machine, machine.observe(status, now))

    def _active_since(self, machine: AppMachine, now: float) -> float | None:
        """When an app found running was last used, on the loop clock, if the runtime knows
        (KubernetesRuntime persists it); None: count from now. Never so old that the app
        sleeps before routers had ``router_ttl`` to report: a new agent knows no router yet."""
        wall = self.runtime.last_activity(machine.name)
        if wall is None:
            return None
        at = now - max(0.0, time.time() - wall)
        return max(at, now - machine.config.policy.idle_after + self.settings.router_ttl)

    async def _persist_activity(self, interval: float) -> None:
        """Write each used app's last activity through the runtime, for the next agent."""
        loop = asyncio.get_running_loop()
        written: dict[str, float] = {}
        while True:
            await asyncio.sleep(interval)
            for name, machine in list(self.machines.items()):
                last = self.reports.seen(name).last_seen
                if last is None or WEB not in machine.config.processes:
                    continue
                if last <= written.get(name, float("-inf")):
                    continue
                wall = time.time() - (loop.time() - last)
                try:
                    await self.runtime.record_activity(name, WEB, wall)
                except RuntimeFailure as exc:
                    log.warning(
                        "could not persist activity", extra={"app": name, "error": str(exc)}
                    )
                    continue
                written[name] = last

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.tick)
            now = loop.time()
            for router in self.reports.prune(now):
                log.warning("router stopped reporting", extra={"router": router})
            for name, machine in self.machines.items():
                drained = machine.drain_version is not None and self.reports.drained(
                    name, machine.drain_version
                )
                events = machine.tick(
                    now, self.reports.seen(name), drained, self.settings.drain_timeout
                )
                if events:
                    self._handle(machine, events)

    async def _autoscale(self) -> None:
        """Sample the routers' in-flight counts and apply the autoscaler's decisions."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.autoscale_interval)
            changes = self.autoscaler.tick(
                list(self.machines.values()), self.reports.load, loop.time()
            )
            for machine, decision in changes:
                machine.desired[WEB] = decision.desired
                self._handle(machine, [])

    async def _scaler(self, machine: AppMachine) -> None:
        """Bring the runtime to the machine's latest ``desired``, one app at a time."""
        dirty = self._dirty[machine.name]
        while True:
            await dirty.wait()
            async with self._lock(machine.name):  # not while a restart or define is under way
                dirty.clear()
                await self._scale(machine, dirty)

    async def _scale(self, machine: AppMachine, dirty: asyncio.Event) -> None:
        for process, desired in list(machine.desired.items()):
            key = (machine.name, process)
            replicas = self._wanted(machine.name, process, desired)
            if key not in self._observed or self._applied.get(key) == replicas:
                continue
            if process == WEB and replicas == 0:
                # Before the call: a wake during it must not take the stopping instances.
                machine.retire()
            try:
                await self.runtime.scale(machine.name, process, replicas)
            except Exception as exc:
                log.error(
                    "scale failed; retrying",
                    extra={"app": machine.name, "process_type": process, "error": repr(exc)},
                )
                asyncio.get_running_loop().call_later(SCALE_RETRY, dirty.set)
                continue
            self._applied[key] = replicas


def _routed(machine: AppMachine) -> tuple[object, ...]:
    """What routers see of an app: a change in any of it is a new table version."""
    policy = machine.config.policy
    config = machine.config
    return (machine.view(), config.hosts, policy.boot_timeout, policy.max_held, config.maintenance)
