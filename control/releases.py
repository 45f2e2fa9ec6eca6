"""Releases asked for by name: deploy an artifact, roll back, release a build, run once.

Each makes its release through the releaser (control/releaser.py); this
module says what the new release runs and who may ask for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from agent.errors import RuntimeFailure
from control.addons.env import addon_env
from control.agent_target import AgentTarget
from control.errors import Conflict, Forbidden, ReleaseFailed, Unprocessable
from control.models import App, Release, ReleaseStatus
from control.releaser import Releaser
from control.releasing import Deployment, PhaseResult, split_procfile
from control.requests import Deploy
from control.rules import validate_procfile
from control.store.db import Store
from kit.ptyspawn import PtyChild

#: Why a control plane without the embedded runtime gives no terminal.
NO_TERMINAL = (
    "an interactive run needs the embedded runtime (slipway up); this control plane "
    "runs one-off processes elsewhere: use --no-tty"
)


class Releases:
    def __init__(
        self, *, store: Store, releaser: Releaser, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.releaser = releaser
        self._clock = clock

    async def _app(self, name: str) -> App:
        async with self.store.tx(write=False) as tx:
            return await tx.get_app(name)

    async def deploy(
        self,
        name: str,
        request: Deploy,
        *,
        actor: str,
        tenant: bool,
    ) -> Release:
        """A release of ``artifact``; a tenant's (an app token's) only if the app has it already.

        An artifact is a directory on this machine (or an image): an app token naming
        one could run its release phase on any host path. It may release again what its
        own builds made or its releases ran; anything else is an admin's to name.
        """
        artifact, procfile = request.artifact, request.procfile
        app = await self._app(name)
        if tenant:
            async with self.store.tx(write=False) as tx:
                known = await tx.has_artifact(app, artifact)
            if not known:
                raise Forbidden(
                    f"this needs an admin token: an app token releases only what {name}'s "
                    "builds made (slipway builds:create DIR uploads and builds a directory)",
                    id="forbidden",
                )
        return await self.releaser.release(
            app,
            description=request.description or f"Deploy {artifact}",
            compose=lambda current: (artifact, procfile, current.config),
            actor=actor,
            audit={"artifact": artifact},
        )

    async def rollback(self, name: str, version: int, *, actor: str) -> Release:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(name)
            old = await tx.get_release(app, version)
        if old.status is not ReleaseStatus.SUCCEEDED:
            raise Unprocessable(
                f"v{version} {old.status.value}; roll back to a release that succeeded",
                id="release_not_succeeded",
            )
        return await self.releaser.release(
            app,
            description=f"Rollback to v{version}",
            compose=lambda _: (old.artifact, old.procfile, old.config),
            actor=actor,
            audit={"to": version},
        )

    async def release_build(
        self,
        name: str,
        *,
        build_id: str,
        artifact: str,
        procfile: Mapping[str, str],
        description: str,
        actor: str,
    ) -> Release:
        """Release a finished build through the one release path; the build records the version.

        A failed release phase still numbers a release: the build points at it (failed).
        """
        checked = validate_procfile(dict(procfile))
        app = await self._app(name)
        try:
            release = await self.releaser.release(
                app,
                description=description,
                compose=lambda current: (artifact, checked, current.config),
                actor=actor,
                audit={"build": build_id, "artifact": artifact},
            )
        except ReleaseFailed as exc:
            async with self.store.tx() as tx:
                await tx.set_build_release(await tx.get_app(name), build_id, exc.version)
            raise
        async with self.store.tx() as tx:
            await tx.set_build_release(await tx.get_app(name), build_id, release.version)
        return release

    async def run_once(self, name: str, command: str, *, reason: str, actor: str) -> PhaseResult:
        """A one-off command on the current release with its env (postdeploy, pr-predestroy)."""
        deployment = await self.for_run(name, reason=reason, actor=actor)
        return await self.releaser.target.release_phase(deployment, command)

    async def open_terminal(
        self, name: str, command: str, *, actor: str, dyno: str, size: tuple[int, int], term: str
    ) -> PtyChild:
        """``run_once``'s process on a terminal (``slipway run bash``), where the target
        can give one: the embedded runtime; otherwise 409 saying why."""
        target = self.releaser.target
        refusal = self.terminal_refusal()
        if refusal is not None or not isinstance(target, AgentTarget):
            raise Conflict(refusal or NO_TERMINAL, id="tty_unsupported")
        deployment = await self.for_run(name, reason="run:tty", actor=actor)
        try:
            return await target.open_terminal(deployment, command, dyno=dyno, size=size, term=term)
        except RuntimeFailure as exc:
            raise Conflict(str(exc), id="run_failed") from exc

    def terminal_refusal(self) -> str | None:
        """Why ``open_terminal`` would answer 409, known before a WebSocket is opened."""
        target = self.releaser.target
        if not isinstance(target, AgentTarget):
            return NO_TERMINAL
        return target.terminal_refusal()

    async def for_run(self, name: str, *, reason: str, actor: str) -> Deployment:
        """The current release as a one-off runs in it (its env and add-ons), audited."""
        async with self.store.tx() as tx:
            app = await tx.get_app(name)
            release = await tx.current_release(app)
            addons = await tx.list_addons(app)
            await tx.record(
                actor=actor,
                action="run.once",
                app=name,
                detail={"reason": reason, "release": release.version},
                now=self._clock(),
            )
        processes, _ = split_procfile(release.procfile)
        return Deployment(
            app=name,
            version=release.version,
            artifact=release.artifact,
            processes=processes,
            env={**release.config, **addon_env(addons, release.config)},
        )

    async def list_releases(self, name: str, *, after: int | None, limit: int) -> list[Release]:
        async with self.store.tx(write=False) as tx:
            return await tx.list_releases(await tx.get_app(name), after=after, limit=limit)

    async def get_release(self, name: str, version: int) -> Release:
        async with self.store.tx(write=False) as tx:
            return await tx.get_release(await tx.get_app(name), version)
