"""ReleaseTarget over the agent: a release becomes the app's definition in the agent.

The agent is the only writer of replicas. A release, a formation change or a
new domain is handed to it as the app's whole definition (the JSON of
``agent/definition.py``: hosts, each process type's command in the release's
directory or image, the env, the formation and the idle policy); the agent
restarts what changed and lets its policy decide when the app sleeps and
wakes. The same JSON goes in process (``slipway up``: ``LocalAgent``) or over
HTTP (``slipway serve control --agent-url``: ``AgentClient``), so both paths
are one.

Dyno states are the agent's view, read when asked: a pure mapping of its
process snapshots (``dynos_of``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp

from agent.agent import Agent
from agent.apps import WEB
from agent.definition import parse_definition
from agent.errors import RuntimeFailure, UnknownApp
from agent.queues import detect as detect_queue
from agent.runtime import Instance, ProcessStatus
from control.errors import TargetUnavailable
from control.models import Formation
from control.releasing import (
    RELEASE_COMMAND,
    Deployment,
    Dyno,
    DynoState,
    PhaseResult,
    slug_layout,
)
from kit.oneoff import WATCHER
from kit.ptyspawn import PtyChild

log = logging.getLogger(__name__)

#: Seconds an AgentClient waits for a one-off run beyond its timeout (a Job's start).
RUN_MARGIN = 60.0


class AgentLink(Protocol):
    """How the control plane reaches the agent."""

    async def define(self, app: str, definition: dict[str, Any]) -> None: ...

    async def forget(self, app: str) -> None:
        """Stop the app; an app the agent does not know is not an error."""

    async def restart(self, app: str, process: str | None) -> None: ...

    async def status(self, app: str) -> dict[str, Any] | None:
        """``GET /v1/apps/{app}``'s JSON, or None for an app the agent does not run."""

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        """``GET /v1/apps/{app}/autoscale``'s JSON, or None for an app the agent does not run."""

    async def run_once(
        self, app: str, definition: dict[str, Any], command: str, timeout: float
    ) -> PhaseResult:
        """Run ``command`` once in the release ``definition`` describes, where the agent runs
        the app's processes (a child process, or a Job on Kubernetes)."""

    def terminal_refusal(self) -> str | None:
        """Why ``open_terminal`` cannot be done through this link; None when it can."""

    async def open_terminal(
        self,
        app: str,
        definition: dict[str, Any],
        command: str,
        *,
        dyno: str,
        size: tuple[int, int],
        term: str,
    ) -> PtyChild:
        """``run_once``'s process on a pty (``slipway run bash``); the caller owns it."""


class LocalAgent:
    """The agent in this process (``slipway up``)."""

    def __init__(self, agent: Agent, *, idle_after: float | None = None) -> None:
        """``idle_after``: ``slipway up --idle-after``, over what each app's formation says."""
        self.agent = agent
        self._idle_after = idle_after

    async def define(self, app: str, definition: dict[str, Any]) -> None:
        if self._idle_after is not None:
            policy = {**definition.get("policy", {}), "idle_after": self._idle_after}
            definition = {**definition, "policy": policy}
        await self.agent.define(parse_definition(app, definition))

    async def forget(self, app: str) -> None:
        with contextlib.suppress(UnknownApp):
            await self.agent.forget(app)

    async def restart(self, app: str, process: str | None) -> None:
        await self.agent.restart(app, process)

    async def status(self, app: str) -> dict[str, Any] | None:
        try:
            return self.agent.status(app)
        except UnknownApp:
            return None

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        try:
            return self.agent.autoscale(app)
        except UnknownApp:
            return None

    async def run_once(
        self, app: str, definition: dict[str, Any], command: str, timeout: float
    ) -> PhaseResult:
        config = parse_definition(app, definition)
        result = await self.agent.run_once(config, command, timeout=timeout)
        return PhaseResult(ok=result.ok, output=result.output)

    def terminal_refusal(self) -> str | None:
        return self.agent.terminal_refusal()

    async def open_terminal(
        self,
        app: str,
        definition: dict[str, Any],
        command: str,
        *,
        dyno: str,
        size: tuple[int, int],
        term: str,
    ) -> PtyChild:
        config = parse_definition(app, definition)
        return await self.agent.open_terminal(config, command, dyno=dyno, size=size, term=term)


class AgentClient:
    """An agent in another process or pod, over its HTTP API."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        missing_ok: bool = False,
        timeout: float | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(
                method, self.url + path, json=body, timeout=limit
            ) as resp:
                if resp.status == 404 and missing_ok:
                    return None
                if resp.status >= 400:
                    reason = (await resp.text())[:500]
                    raise TargetUnavailable(
                        f"the agent at {self.url} refused {method} {path}: {resp.status} {reason}"
                    )
                return await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TargetUnavailable(
                f"cannot reach the agent at {self.url} ({exc!r}); is it running?"
            ) from exc

    async def define(self, app: str, definition: dict[str, Any]) -> None:
        await self._call("PUT", f"/v1/apps/{app}", definition)

    async def forget(self, app: str) -> None:
        await self._call("DELETE", f"/v1/apps/{app}", missing_ok=True)

    async def restart(self, app: str, process: str | None) -> None:
        await self._call("POST", f"/v1/apps/{app}/restart", {"process": process})

    async def status(self, app: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._call("GET", f"/v1/apps/{app}", missing_ok=True)
        return found

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        path = f"/v1/apps/{app}/autoscale"
        found: dict[str, Any] | None = await self._call("GET", path, missing_ok=True)
        return found

    async def run_once(
        self, app: str, definition: dict[str, Any], command: str, timeout: float
    ) -> PhaseResult:
        body: dict[str, Any] = {"definition": definition, "command": command, "timeout": timeout}
        watcher = WATCHER.get()
        if watcher is not None and watcher.name:
            # `slipway run`'s name (run.1234) is the process's DYNO there too; the agent
            # runs it under no watcher of ours, so it must be told.
            body["dyno"] = watcher.name
        # The agent answers when the process ends: wait longer than it may run (a Job's
        # image pull and a follower's hop to the leader included).
        total = timeout + (self._timeout.total or 0) + RUN_MARGIN
        found = await self._call("POST", f"/v1/apps/{app}/run", body, timeout=total)
        if watcher is not None and watcher.name:
            watcher.dyno = watcher.name
        return PhaseResult(ok=bool(found["ok"]), output=str(found["output"]))

    def terminal_refusal(self) -> str | None:
        return (
            f"an interactive run needs the embedded runtime (slipway up); the agent at "
            f"{self.url} is another process (on Kubernetes, a one-off is a Job): use --no-tty"
        )

    async def open_terminal(
        self,
        app: str,
        definition: dict[str, Any],
        command: str,
        *,
        dyno: str,
        size: tuple[int, int],
        term: str,
    ) -> PtyChild:
        raise RuntimeFailure(self.terminal_refusal() or "")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def definition_of(
    deployment: Deployment, *, slug_env: Mapping[str, str] | None = None, cwd: str | None = None
) -> dict[str, Any] | None:
    """The agent's definition of a release (pure); None when nothing is to run.

    The idle policy is the web type's (the agent sleeps and wakes an app as a
    whole); a web type scaled to 0 is not run nor routed (Heroku's H14).
    ``cwd`` and ``slug_env`` are a built slug's layout (``slug_layout``), when
    the artifact is one: where its commands run and its tools on PATH.
    """
    formation = {f.type: f for f in deployment.formation}
    web = formation.get(WEB)
    processes = {
        name: command
        for name, command in deployment.processes.items()
        if not (name == WEB and web is not None and web.quantity == 0)
    }
    if not processes:
        return None
    local = deployment.artifact is not None and os.path.isabs(deployment.artifact)
    policy: dict[str, Any] = {}
    if web is not None:
        policy = {
            "idle_after": web.idle_after,
            "min_scale": web.min_scale,
            "max_scale": max(1, web.max_scale, web.min_scale),
            "never_sleep": web.never_sleep,
        }
    explicit = {f.type: f.queue for f in deployment.formation if f.queue}
    queues = queues_of(processes, deployment.env, explicit)
    return {
        "hosts": list(deployment.hosts) if WEB in processes else [],
        "release": deployment.version,
        "env": {**(slug_env or {}), **deployment.env},
        "processes": {
            name: {
                "command": command,
                "cwd": (cwd or deployment.artifact) if local else None,
                "image": None if local else deployment.artifact,
                **({"size": formation[name].size} if name in formation else {}),
            }
            for name, command in sorted(processes.items())
        },
        "formation": {
            name: formation[name].quantity if name in formation else 0 for name in processes
        },
        "policy": policy,
        "autoscale": {WEB: dict(web.autoscale)}
        if web and web.autoscale and WEB in processes
        else {},
        # Only when there is one: an agent older than queue watching refuses the key.
        **({"queues": queues} if queues else {}),
        "maintenance": deployment.maintenance,
    }


def queues_of(
    processes: Mapping[str, str],
    env: Mapping[str, str],
    explicit: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The queue each worker type works from, so its jobs wake it while the app sleeps (pure).

    What its formation says (``ps:queue``) first; else what its Procfile line shows
    (``rq worker``, ``celery ... worker``, ``sidekiq``).
    """
    found: dict[str, Any] = {}
    for name, command in sorted(processes.items()):
        if name == WEB:
            continue
        given = (explicit or {}).get(name)
        if given:
            found[name] = dict(given)
            continue
        source = detect_queue(command, env)
        if source is not None:
            found[name] = source.wire()
    return found


def dynos_of(
    status: ProcessStatus,
    *,
    quantity: int,
    release: int,
    size: str = "standard-1x",
    usage: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Dyno]:
    """The dynos one process type shows (pure).

    A type scaled to zero by its owner shows nothing; one the agent put to
    sleep (wanted, but no replica desired now) shows as asleep.
    """
    if not status.instances:
        if quantity > 0 and status.desired == 0:
            return [
                Dyno(
                    name=status.process,
                    type=status.process,
                    state=DynoState.ASLEEP,
                    release=release,
                    size=size,
                )
            ]
        return []
    dynos = []
    for instance in status.instances:
        if instance.crashed:
            state = DynoState.CRASHED
        elif instance.ready:
            state = DynoState.UP
        else:
            state = DynoState.WAKING
        dynos.append(
            Dyno(
                name=instance.name,
                type=status.process,
                state=state,
                release=release,
                reason=instance.reason,
                size=size,
                usage=(usage or {}).get(instance.name),
                started_at=instance.started_at,
            )
        )
    return dynos


class AgentTarget:
    def __init__(self, link: AgentLink, *, release_timeout: float) -> None:
        self.link = link
        self._release_timeout = release_timeout
        #: The last deployment per app, so a formation change can send the whole definition
        #: again. Rebuilt from the store at start (Control.resume), so a cache, not state.
        self._deployed: dict[str, Deployment] = {}

    async def release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        """The agent runs it, where it runs the app: a child process in the release's
        directory (``slipway up``), or a Job of the release's image (Kubernetes)."""
        cwd, slug_env = await asyncio.to_thread(slug_layout, deployment.artifact)
        once = dataclasses.replace(
            deployment, processes={RELEASE_COMMAND: command}, formation=(), hosts=()
        )
        definition = definition_of(once, slug_env=slug_env, cwd=cwd)
        if definition is None:  # cannot be: one process type, and not web
            return PhaseResult(ok=False, output="nothing to run the release command in")
        return await self.link.run_once(deployment.app, definition, command, self._release_timeout)

    def terminal_refusal(self) -> str | None:
        return self.link.terminal_refusal()

    async def open_terminal(
        self, deployment: Deployment, command: str, *, dyno: str, size: tuple[int, int], term: str
    ) -> PtyChild:
        """The one-off as ``release_phase`` runs it, on a pty: same directory, env, sandbox."""
        cwd, slug_env = await asyncio.to_thread(slug_layout, deployment.artifact)
        once = dataclasses.replace(
            deployment, processes={RELEASE_COMMAND: command}, formation=(), hosts=()
        )
        definition = definition_of(once, slug_env=slug_env, cwd=cwd)
        if definition is None:
            raise RuntimeFailure("nothing to run the command in")
        return await self.link.open_terminal(
            deployment.app, definition, command, dyno=dyno, size=size, term=term
        )

    async def deploy(self, deployment: Deployment) -> None:
        cwd, slug_env = await asyncio.to_thread(slug_layout, deployment.artifact)
        definition = definition_of(deployment, slug_env=slug_env, cwd=cwd)
        if definition is None:
            await self.link.forget(deployment.app)
        else:
            await self.link.define(deployment.app, definition)
        self._deployed[deployment.app] = deployment
        log.info("release applied", extra={"app": deployment.app, "release": deployment.version})

    async def scale(self, app: str, item: Formation) -> None:
        deployment = self._deployed.get(app)
        if deployment is None:
            return  # not deployed yet: the next deploy applies the formation
        formation: Sequence[Formation] = [
            item if f.type == item.type else f for f in deployment.formation
        ]
        await self.deploy(dataclasses.replace(deployment, formation=formation))

    async def restart(self, app: str, process: str | None) -> None:
        if app in self._deployed:
            with contextlib.suppress(UnknownApp):
                await self.link.restart(app, process)

    async def dynos(self, app: str) -> list[Dyno]:
        deployment = self._deployed.get(app)
        status = await self.link.status(app)
        if deployment is None or status is None:
            return []
        quantity = {f.type: f.quantity for f in deployment.formation}
        sizes = {f.type: f.size for f in deployment.formation}
        found: list[Dyno] = []
        for process, view in sorted(status["processes"].items()):
            snapshot = ProcessStatus(
                app=app,
                process=process,
                desired=view["desired"],
                instances=tuple(Instance(**i) for i in view["instances"]),
            )
            found += dynos_of(
                snapshot,
                quantity=quantity.get(process, 0),
                release=view["release"],
                size=sizes.get(process, "standard-1x"),
                usage=view.get("usage"),
            )
        return found

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        if app not in self._deployed:
            return None
        return await self.link.autoscale(app)

    async def forget(self, app: str) -> None:
        self._deployed.pop(app, None)
        await self.link.forget(app)
