"""Builds in the control plane: a source in, a build row at once, a release when it is done.

``Builds.create`` stores a pending build and returns it; the build runs as a
background task (the builder bounds how many run at once and how long each
may take). Its output goes to the log sink (source ``build``), so the
``output_stream_url`` (the logs service's stream for the app, source
``build``) shows it live. On success the slug is released through
``Control.release_build``, the one release path: a failed release phase
numbers a failed release that the build points at, and a failed build
releases nothing, so the running release is untouched either way.

Builds pending when the control plane stopped are marked failed at start
(``Control.start``): no process is left to finish them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

from control.builds.errors import BuildError
from control.builds.model import Artifact, LogSink, Source
from control.errors import Conflict, ControlError, ReleaseFailed
from control.models import Build, BuildStatus
from control.rules import is_tarball, redact_url, validate_source_blob
from control.service import Control

log = logging.getLogger(__name__)

#: Builds shown by a list: enough history to compare, bounded for the response.
LIST_LIMIT = 100
#: Characters of a failure kept with the build row (message plus the output's tail).
OUTPUT_TAIL = 4000


class Builder(Protocol):
    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Artifact: ...


class BuildsUnavailable(Conflict):
    """This control plane has no builder: its configuration, not an outage, so not a 5xx."""

    default_id = "builds_unavailable"


class Builds:
    def __init__(
        self,
        control: Control,
        *,
        builder: Builder | None,
        sink: LogSink,
        logs_url: str | None = None,
        uploads: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        self._builder = builder
        self._sink = sink
        self._logs_url = logs_url.rstrip("/") if logs_url else None
        self._uploads = uploads
        self._clock = clock
        self._running: dict[str, asyncio.Task[Build]] = {}

    def output_stream_url(self, app: str, build_id: str) -> str | None:
        """The logs service's stream (SSE) of one build's lines: its history, then live.

        The builder publishes a build's lines as process ``build.<id>``, so the
        logs service's process filter picks out this build.
        """
        if self._logs_url is None:
            return None
        query = urlencode({"source": "build", "process": f"build.{build_id}", "tail": "1"})
        return f"{self._logs_url}/apps/{quote(app)}/logs?{query}"

    def _need_builder(self) -> Builder:
        if self._builder is None:
            raise BuildsUnavailable(
                "this control plane has no builder "
                "(set SLIPWAY_BUILD_ROOT, or SLIPWAY_BUILDER=kubernetes)"
            )
        return self._builder

    async def create(self, app: str, source_blob: object, *, actor: str) -> Build:
        """Store a pending build of ``source_blob`` ({url, version}) and start it."""
        self._need_builder()
        url, version = validate_source_blob(source_blob)
        if is_tarball(url):
            # A path that is no file fails the build (with the reason in its output), as a
            # bad URL does: the request itself was well-formed.
            source = Source.archive(Path(url.removeprefix("file://")))
        else:
            assert version is not None
            source = Source.git(url, version)
        return await self._start(app, source, url=url, version=version, actor=actor)

    async def upload(self, app: str, chunks: AsyncIterator[bytes], *, actor: str) -> Build:
        """A build of a tarball sent as the request body (``slipway builds:create DIR``)."""
        self._need_builder()
        if self._uploads is None:
            raise BuildsUnavailable("this control plane takes no uploads")
        await self.control.get_app(app)
        await asyncio.to_thread(self._uploads.mkdir, parents=True, exist_ok=True)
        path = self._uploads / f"{app}-{secrets.token_hex(8)}.tar.gz"
        out = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)
        except BaseException:
            out.close()
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        out.close()
        return await self._start(
            app, Source.archive(path), url=str(path), version=None, actor=actor, owned=path
        )

    async def _start(
        self,
        app: str,
        source: Source,
        *,
        url: str,
        version: str | None,
        actor: str,
        owned: Path | None = None,
    ) -> Build:
        builder = self._need_builder()
        build_id = secrets.token_hex(8)
        now = self._clock()
        async with self.control.store.tx() as tx:
            build = await tx.add_build(
                await tx.get_app(app),
                build_id=build_id,
                source_url=url,
                source_version=version,
                actor=actor,
                now=now,
            )
            await tx.record(
                actor=actor,
                action="build.create",
                app=app,
                detail={"build": build_id, "source": redact_url(url), "version": version},
                now=now,
            )
        task = asyncio.create_task(
            self._run(builder, build, source, owned), name=f"build-{app}-{build_id}"
        )
        self._running[build_id] = task
        task.add_done_callback(lambda _: self._running.pop(build_id, None))
        return build

    async def _run(
        self, builder: Builder, build: Build, source: Source, owned: Path | None
    ) -> Build:
        """The background task: never leaves the row pending while this process lives."""
        try:
            return await self._build_and_release(builder, build, source, owned)
        except ControlError as exc:
            # The app was deleted while it built (its builds went with it), or the store
            # failed: nothing left to record.
            log.warning(
                "build abandoned", extra={"app": build.app, "build": build.id, "error": str(exc)}
            )
            return build
        except Exception as exc:
            log.exception("build crashed", extra={"app": build.app, "build": build.id})
            return await self._finish(build, BuildStatus.FAILED, output=f"internal error: {exc}")

    async def _build_and_release(
        self, builder: Builder, build: Build, source: Source, owned: Path | None
    ) -> Build:
        app = build.app
        try:
            artifact = await builder.build(app, source, build_id=build.id)
        except (BuildError, OSError) as exc:
            return await self._finish(build, BuildStatus.FAILED, output=str(exc)[-OUTPUT_TAIL:])
        finally:
            if owned is not None:
                await asyncio.to_thread(owned.unlink, missing_ok=True)
        procfile = dict(artifact.process_types)
        await self._finish(build, BuildStatus.SUCCEEDED, artifact=artifact)
        what = (artifact.commit or build.id)[:7]
        self._say(build, "-----> Releasing")
        try:
            release = await self.control.release_build(
                app,
                build_id=build.id,
                artifact=artifact.reference,
                procfile=procfile,
                description=f"Deploy {what}",
                actor=build.actor,
            )
        except ReleaseFailed as exc:
            self._say(build, f" !     Release v{exc.version} failed: {exc}")
        else:
            self._say(build, f"-----> Released v{release.version}")
        return await self.get(app, build.id)

    async def _finish(
        self,
        build: Build,
        status: BuildStatus,
        *,
        output: str = "",
        artifact: Artifact | None = None,
    ) -> Build:
        now = self._clock()
        async with self.control.store.tx() as tx:
            app = await tx.get_app(build.app)
            await tx.finish_build(
                app,
                build.id,
                status,
                now=now,
                output=output,
                commit=None if artifact is None else artifact.commit,
                artifact=None if artifact is None else artifact.reference,
                digest=None if artifact is None else artifact.digest,
                procfile=None if artifact is None else artifact.process_types,
            )
            await tx.record(
                actor=build.actor,
                action="build.finish",
                app=build.app,
                detail={"build": build.id, "status": status.value},
                now=now,
            )
            return await tx.get_build(app, build.id)

    async def wait(self, app: str, build_id: str) -> Build:
        """The build once it is no longer pending (and its release, if any, is done)."""
        task = self._running.get(build_id)
        if task is not None:
            await asyncio.shield(task)
        return await self.get(app, build_id)

    async def get(self, app: str, build_id: str) -> Build:
        async with self.control.store.tx(write=False) as tx:
            return await tx.get_build(await tx.get_app(app), build_id)

    async def list(self, app: str) -> list[Build]:
        async with self.control.store.tx(write=False) as tx:
            return await tx.list_builds(await tx.get_app(app), limit=LIST_LIMIT)

    async def last_built(self) -> dict[str, float]:
        """App name -> when its newest build was made."""
        async with self.control.store.tx(write=False) as tx:
            return await tx.last_builds()

    async def close(self) -> None:
        """Cancel builds in flight (their rows are failed at the next start)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A builder holding a connection (the Kubernetes API's) lets it go with the builds.
        close = getattr(self._builder, "close", None)
        if close is not None:
            await close()

    def _say(self, build: Build, text: str) -> None:
        self._sink.publish(build.app, "build", f"build.{build.id}", text, self._clock())
