"""The one path that makes a release, and the per-app locks that serialise it.

A release: number it (app row locked), run the release phase, deploy, then
mark it succeeded and current; any failure marks it failed and leaves the
previous release current and running. Config changes, deploys, rollbacks,
build results and add-on attachments all come here with a ``Compose`` that
says what the new release runs. Everything else that touches one app's
processes (a redeploy for new hosts, scaling, deleting it) holds the same
lock, so the release phase of one never races another's deploy.

The release phase's output goes to the app's log stream (source ``release``,
process ``release.1``) as it is printed, through the one-off watcher
(kit/oneoff.py), which a caller may watch too (a build shows it after its own
lines). Run elsewhere (an agent over HTTP, a Kubernetes Job), only its tail
comes back, at the end: published then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent.once import RELEASE_DYNO
from control.addons.env import addon_env
from control.builds.model import LogSink
from control.errors import ReleaseFailed
from control.models import App, Formation, Release, ReleaseStatus
from control.releasing import Deployment, PhaseResult, ReleaseTarget, split_procfile
from control.rules import MAX_DESCRIPTION, default_formation
from control.store.db import Store
from control.store.queries import Tx
from kit.oneoff import WATCHER, Lines, Watcher
from kit.redact import mask_text

#: What a new release runs, from the current one: (artifact, procfile, config).
Compose = Callable[[Release], tuple[str | None, Mapping[str, str], Mapping[str, str]]]


def same_as(current: Release) -> tuple[str | None, Mapping[str, str], Mapping[str, str]]:
    return current.artifact, current.procfile, current.config


def shorten(description: str) -> str:
    """A release description that fits its column, marked as cut when it was."""
    if len(description) <= MAX_DESCRIPTION:
        return description
    return description[: MAX_DESCRIPTION - 3] + "..."


class Releaser:
    def __init__(
        self,
        *,
        store: Store,
        target: ReleaseTarget,
        clock: Callable[[], float] = time.time,
        app_domain: str | None = None,
        sink: LogSink | None = None,
    ) -> None:
        """``sink``: where the release phase's lines go (the logs service), if anywhere."""
        self.store = store
        self.target = target
        self.sink = sink
        self.app_domain = app_domain
        self._clock = clock
        self._locks: dict[int, asyncio.Lock] = {}

    def lock(self, app: App) -> asyncio.Lock:
        """The lock of ``app``'s processes: held while anything changes what runs."""
        return self._locks.setdefault(app.id, asyncio.Lock())

    def forget(self, app: App) -> None:
        """Drop a deleted app's lock (ids are not reused)."""
        self._locks.pop(app.id, None)

    async def release(
        self,
        app: App,
        *,
        description: str,
        compose: Compose,
        actor: str,
        audit: Mapping[str, Any],
    ) -> Release:
        """Make and run the release ``compose`` says; ReleaseFailed leaves the current one running.

        ``audit``: what the release.create entry records besides version and description.
        """
        async with self.lock(app):
            now = self._clock()
            async with self.store.tx() as tx:
                app = await tx.get_app(app.name, lock=True)
                artifact, procfile, config = compose(await tx.current_release(app))
                addons = await tx.list_addons(app)
                hosts = await self.hosts(tx, app)
                existing = {f.type: f for f in await tx.list_formation(app)}
                release = await tx.add_release(
                    app,
                    # Made ones ("Set A, B, ... config vars") may be longer than the column.
                    description=shorten(description),
                    artifact=artifact,
                    procfile=procfile,
                    config=config,
                    addon_env=addon_env(addons, config),
                    actor=actor,
                    now=now,
                )
                await tx.record(
                    actor=actor,
                    action="release.create",
                    app=app.name,
                    detail={"version": release.version, "description": description, **audit},
                    now=now,
                )
            processes, command = split_procfile(procfile)
            formation = [
                existing.get(p) or default_formation(p, now=now) for p in sorted(processes)
            ]
            deployment = Deployment(
                app=app.name,
                version=release.version,
                artifact=artifact,
                processes=processes,
                env={**config, **release.addon_env},
                formation=formation,
                hosts=hosts,
                maintenance=app.maintenance,
            )
            output = ""
            try:
                if command is not None and artifact is not None:
                    result = await self._release_phase(deployment, command)
                    output = result.output
                    if not result.ok:
                        raise ReleaseFailed(
                            f"the release command of v{release.version} failed; "
                            f"v{app.current_release} keeps running",
                            version=release.version,
                            output=output,
                        )
                if artifact is not None:
                    await self.target.deploy(deployment)
            except Exception as exc:
                # Whatever broke, the release must not stay pending: record it as failed.
                if not isinstance(exc, ReleaseFailed):
                    output = f"{output}\ndeploy failed: {exc}".strip()
                await self._finish(app, release, ReleaseStatus.FAILED, output, actor)
                if isinstance(exc, ReleaseFailed):
                    raise
                raise ReleaseFailed(
                    f"deploying v{release.version} failed: {exc}",
                    version=release.version,
                    output=output,
                ) from exc
            async with self.store.tx() as tx:
                await tx.finish_release(
                    app, release.version, ReleaseStatus.SUCCEEDED, output=output, now=self._clock()
                )
                for item in formation:
                    if item.type not in existing:
                        await tx.put_formation(app, item)
                await tx.remove_formation(app, [t for t in existing if t not in processes])
                return await tx.get_release(app, release.version)

    async def _release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        """Run the release command, publishing its lines (source ``release``) as printed,
        and passing its output on to whoever watches this task's one-off (a build)."""
        outer = WATCHER.get()

        def publish(line: str) -> None:
            if self.sink is not None:
                # Masked as build lines are: a migration may print its DATABASE_URL.
                text = mask_text(line)
                self.sink.publish(deployment.app, "release", RELEASE_DYNO, text, self._clock())

        lines = Lines(publish)

        def output(chunk: bytes) -> None:
            lines.feed(chunk)
            if outer is not None:
                outer.output(chunk)

        watcher = Watcher(on_output=output)
        token = WATCHER.set(watcher)
        try:
            result = await self.target.release_phase(deployment, command)
        finally:
            WATCHER.reset(token)
            lines.flush()
        if not watcher.seen:
            # It ran where no watcher reaches (an agent over HTTP, a Job): its tail, now.
            for line in result.output.splitlines():
                publish(line)
        elif not result.ok:
            publish(result.output.rpartition("\n")[2])  # "command exited with code N"
        if outer is not None:
            outer.code, outer.dyno = watcher.code, watcher.dyno
        return result

    async def _finish(
        self, app: App, release: Release, status: ReleaseStatus, output: str, actor: str
    ) -> None:
        now = self._clock()
        async with self.store.tx() as tx:
            await tx.finish_release(app, release.version, status, output=output, now=now)
            await tx.record(
                actor=actor,
                action="release.fail",
                app=app.name,
                detail={"version": release.version},
                now=now,
            )

    async def redeploy(self, app: App) -> None:
        """Hand the app's current release to the target again: new hosts, a new name, a restart."""
        async with self.lock(app):
            await self._redeploy(app)

    async def _redeploy(self, app: App) -> None:
        async with self.store.tx(write=False) as tx:
            app = await tx.get_app(app.name)  # as it is now: maintenance may have just changed
            release = await tx.current_release(app)
            formation = await tx.list_formation(app)
            addons = await tx.list_addons(app)
            hosts = await self.hosts(tx, app)
        if release.artifact is None:
            return
        processes, _ = split_procfile(release.procfile)
        await self.target.deploy(
            Deployment(
                app=app.name,
                version=release.version,
                artifact=release.artifact,
                processes=processes,
                env={**release.config, **addon_env(addons, release.config)},
                formation=formation,
                hosts=hosts,
                maintenance=app.maintenance,
            )
        )

    async def hosts(self, tx: Tx, app: App) -> list[str]:
        """Where the router sends to ``app``: ``APP.{app_domain}`` and its custom domains."""
        default = [f"{app.name}.{self.app_domain}"] if self.app_domain else []
        return default + [d.hostname for d in await tx.list_domains(app)]

    async def release_quietly(
        self, app: App, description: str, actor: str, audit: Mapping[str, Any]
    ) -> Release:
        """A release of the same code (an add-on change): a failure shows in it, not raised."""
        try:
            return await self.release(
                app, description=description, compose=same_as, actor=actor, audit=audit
            )
        except ReleaseFailed as exc:
            async with self.store.tx(write=False) as tx:
                return await tx.get_release(await tx.get_app(app.name), exc.version)

    async def scale(self, app: App, items: Iterable[Formation]) -> None:
        """Apply new quantities and idle policies, never in the middle of a release."""
        async with self.lock(app):
            for item in items:
                await self.target.scale(app.name, item)

    async def move(self, app: App, *, old_name: str) -> None:
        """Run a renamed app under its new name: the runtime knows an app by its name."""
        async with self.lock(app):
            await self.target.forget(old_name)
            await self._redeploy(app)
