"""ReleaseTarget over the agent's ``Runtime`` seam: a release becomes ProcessSpecs.

Each process type of a release is one ``ProcessSpec`` whose env is the
release's config vars plus its add-on URLs and whose ``release`` is the
version, so applying a new release restarts the running instances onto it
(the runtime compares specs). Restart stops and starts a type again, since
re-applying an unchanged spec is rightly a no-op.

Dyno states come from the runtime's watch: a pure mapping of its snapshots
(``dynos_of``) that ``run()`` keeps current. Under ``slipway up`` the agent
wraps the same runtime; this target is what the control plane hands it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from agent.runtime import ProcessSpec, ProcessStatus, Runtime
from control.models import Formation
from control.releasing import (
    Deployment,
    Dyno,
    DynoState,
    PhaseResult,
    run_release_command,
    slug_layout,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]


def dynos_of(status: ProcessStatus, *, quantity: int, release: int) -> list[Dyno]:
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
            )
        )
    return dynos


class RuntimeTarget:
    def __init__(self, *, runtime: Runtime, release_timeout: float) -> None:
        self.runtime = runtime
        self._release_timeout = release_timeout
        #: What was last applied, per (app, process type): rebuilt from the store at start
        #: (Control.start redeploys every current release), so it is a cache, not state.
        self._specs: dict[Key, ProcessSpec] = {}
        self._quantity: dict[Key, int] = {}
        self._status: dict[Key, ProcessStatus] = {}

    async def run(self) -> None:
        """Follow the runtime's snapshots; start it as a named long-lived task."""
        async for status in self.runtime.watch():
            self._status[(status.app, status.process)] = status

    async def release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        cwd, slug_env = slug_layout(deployment.artifact)
        return await run_release_command(
            command,
            cwd=cwd,
            env={**slug_env, **deployment.env},
            timeout=self._release_timeout,
        )

    async def deploy(self, deployment: Deployment) -> None:
        quantities: Mapping[str, int] = {f.type: f.quantity for f in deployment.formation}
        cwd, slug_env = slug_layout(deployment.artifact)
        for process, command in sorted(deployment.processes.items()):
            key = (deployment.app, process)
            spec = ProcessSpec(
                app=deployment.app,
                process=process,
                command=command,
                env={**slug_env, **deployment.env},
                cwd=cwd,
                release=deployment.version,
            )
            await self.runtime.apply(spec)
            self._specs[key] = spec
            self._quantity[key] = quantities.get(process, 0)
            await self.runtime.scale(deployment.app, process, self._quantity[key])
        for app, process in [k for k in self._specs if k[0] == deployment.app]:
            if process not in deployment.processes:
                await self._remove((app, process))
        log.info("release applied", extra={"app": deployment.app, "release": deployment.version})

    async def scale(self, app: str, item: Formation) -> None:
        key = (app, item.type)
        if key not in self._specs:
            return  # not deployed yet: the next deploy applies the formation
        self._quantity[key] = item.quantity
        await self.runtime.scale(app, item.type, item.quantity)

    async def restart(self, app: str, process: str | None) -> None:
        for key in sorted(self._specs):
            if key[0] != app or (process is not None and key[1] != process):
                continue
            spec = self._specs[key]
            await self.runtime.remove(*key)
            self._status.pop(key, None)
            await self.runtime.apply(spec)
            await self.runtime.scale(app, key[1], self._quantity.get(key, 0))

    def status(self, app: str, process: str) -> ProcessStatus | None:
        """The runtime's last snapshot of one process type (where its instances listen)."""
        return self._status.get((app, process))

    async def dynos(self, app: str) -> list[Dyno]:
        found: list[Dyno] = []
        for key in sorted(self._specs):
            if key[0] == app and key in self._status:
                found += dynos_of(
                    self._status[key],
                    quantity=self._quantity.get(key, 0),
                    release=self._specs[key].release,
                )
        return found

    async def forget(self, app: str) -> None:
        for key in [k for k in self._specs if k[0] == app]:
            await self._remove(key)

    async def _remove(self, key: Key) -> None:
        await self.runtime.remove(*key)
        self._specs.pop(key, None)
        self._quantity.pop(key, None)
        self._status.pop(key, None)
