"""Builds in the control plane: a source in, a build row at once, a release when it is done.

``Builds.create`` stores a pending build and returns it; the build runs as a
background task (the builder bounds how many run at once and how long each
may take). Its output goes to the log sink (source ``build``), so the
``output_stream_url`` (the logs service's stream for the app, source
``build``) shows it live. On success the slug is released through
``Control.release_build``, the one release path: a failed release phase
numbers a failed release that the build points at, and a failed build
releases nothing, so the running release is untouched either way.

At start, ``resume`` takes the builds a stopped control plane left pending: a
builder whose builds outlive the process (Kubernetes Jobs, ``Reattaching``)
follows each again and finishes it as if nothing happened; any other's are
marked failed, no process being left to finish them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlencode, urlsplit

from control.builds.egress import Egress, InwardSource, check_destination, fetch_config
from control.builds.errors import BuildError, SourceError
from control.builds.heads import branch_head
from control.builds.model import Artifact, LogSink, Source
from control.builds.sources import (
    ACCEPTED,
    COMMIT,
    Kind,
    check_branch,
    classify,
    is_tarball,
    protocols,
)
from control.errors import Conflict, ControlError, Forbidden, ReleaseFailed, Unprocessable
from control.models import Build, BuildStatus
from control.releasing import RELEASE_COMMAND
from control.service import Control
from kit.oneoff import WATCHER, Lines, Watcher
from kit.redact import mask_text, mask_url

log = logging.getLogger(__name__)

#: Builds shown by a list: enough history to compare, bounded for the response.
LIST_LIMIT = 100
#: Characters of a failure kept with the build row (message plus the output's tail).
OUTPUT_TAIL = 4000


class Builder(Protocol):
    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Artifact: ...


@runtime_checkable
class Reattaching(Builder, Protocol):
    """A builder whose builds run on without this process (Kubernetes Jobs)."""

    async def attach(self, app: str, build_id: str, commit: str, *, elapsed: float) -> Artifact:
        """Follow the build already running to its end, as ``build`` would have."""
        ...

    def detach(self) -> None:
        """From now on, a cancelled build is left running for the next process to attach to."""
        ...


#: What a pending build left by a stopped control plane says when nothing can finish it.
INTERRUPTED = "interrupted: the control plane stopped"


def source_kind(url: str, *, tenant: bool) -> Kind:
    """The kind of ``url``; Unprocessable for what nobody may name, Forbidden for what only
    an admin may (a path on this machine, a cleartext transport) when a tenant names it."""
    try:
        kind = classify(url)
    except SourceError as exc:
        raise Unprocessable(str(exc), id="invalid_source") from None
    if tenant and kind is not Kind.REMOTE:
        raise Forbidden(
            f"this needs an admin token: an app token builds from {ACCEPTED}, "
            "or uploads a tarball (slipway builds:create DIR)",
            id="forbidden",
        )
    return kind


def source_from_blob(blob: object, *, tenant: bool) -> tuple[Source, str, str | None]:
    """``{url, version}`` -> (the source, its URL, its version), or the reason it is refused.

    A git URL needs the commit sha to build; a tarball (``.tar``, ``.tgz``,
    ``.tar.gz``) is a path on this machine and needs none. Nobody may name a git
    option or a remote helper (422); only an admin may name this machine's paths
    or a cleartext transport (403): an app token builds from https://, ssh:// or
    user@host:path, or uploads its tarball.
    """
    if not isinstance(blob, dict) or not isinstance(blob.get("url"), str) or not blob["url"]:
        raise Unprocessable(
            "source_blob must be {url, version}: a git URL and a commit sha, or a tarball path",
            id="invalid_source",
        )
    url: str = blob["url"]
    version = blob.get("version")
    kind = source_kind(url, tenant=tenant)
    if is_tarball(url):
        if kind is not Kind.LOCAL:
            raise Unprocessable(
                "tarball URLs are not downloaded: upload the tarball (slipway builds:create "
                "DIR) or give a git URL and commit",
                id="invalid_source",
            )
        if version is not None and not isinstance(version, str):
            raise Unprocessable("source_blob.version must be a string", id="invalid_source")
        # A path that is no file fails the build (with the reason in its output), as a
        # bad URL does: the request itself was well-formed.
        path = unquote(urlsplit(url).path) if url.startswith("file:") else url
        return Source.archive(Path(path)), url, version
    if not isinstance(version, str) or not COMMIT.match(version):
        raise Unprocessable(
            "source_blob.version must be the commit sha to build (7-64 hex digits)",
            id="invalid_source",
        )
    return Source.git(url, version, tenant=tenant), url, version


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
        egress: Egress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        #: Inward addresses a tenant's source may name (its builder checks again at fetch).
        self._egress = egress or Egress()
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

    async def create(
        self,
        app: str,
        source_blob: object,
        *,
        actor: str,
        tenant: bool,
        ref: str | None = None,
    ) -> Build:
        """Store a pending build of ``source_blob`` ({url, version}) and start it.

        ``tenant``: an app token sent it, so it may name no path on this machine.
        ``ref``: the branch ``version`` was resolved from (``branch_head``), recorded with it.
        """
        self._need_builder()
        if ref is not None:
            try:
                check_branch(ref)
            except SourceError as exc:
                raise Unprocessable(str(exc), id="invalid_ref") from None
        source, url, version = source_from_blob(source_blob, tenant=tenant)
        if tenant:
            await self._check_destination(url)
        return await self._start(app, source, url=url, version=version, actor=actor, ref=ref)

    async def branch_head(self, url: str, branch: str, *, tenant: bool) -> str:
        """The commit ``branch`` is at in the git repository ``url``, for ``create``.

        ``url`` passes the checks ``create`` makes before git is run on it (the same
        refusals: 422 for what nobody may name, 403 for an admin's kinds or an inward
        host named by a tenant), and git is held as a build's fetch is: the namer's
        transports only, and for a tenant, the host pinned to the addresses checked.
        """
        self._need_builder()
        source_kind(url, tenant=tenant)
        if is_tarball(url):
            raise Unprocessable("a tarball has no branches: give a git URL", id="invalid_source")
        env: dict[str, str] = {}
        if tenant:
            try:
                env = await fetch_config(url, self._egress)
            except InwardSource as exc:
                raise Forbidden(mask_text(str(exc)), id="inward_source") from None
            except SourceError as exc:
                raise Unprocessable(mask_text(str(exc)), id="unreachable") from None
        return await branch_head(url, branch, allow=protocols(tenant=tenant), env=env)

    async def _check_destination(self, url: str) -> None:
        """Forbidden when a tenant's host is, or now resolves to, an inward address; a name
        that does not resolve now is left to the fetch, which fails the build if it still
        does not."""
        try:
            await check_destination(url, self._egress)
        except InwardSource as exc:
            raise Forbidden(mask_text(str(exc)), id="inward_source") from None
        except SourceError:
            pass

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
        # Shown as "upload:<name>", not its path: the API and the audit log tell an app
        # token nothing of where this machine keeps its state.
        return await self._start(
            app,
            Source.archive(path),
            url=f"upload:{path.name}",
            version=None,
            actor=actor,
            owned=path,
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
        ref: str | None = None,
    ) -> Build:
        builder = self._need_builder()
        build_id = secrets.token_hex(8)
        # Heroku gives a build the app's config vars (collectstatic reads SECRET_KEY, and
        # DISABLE_COLLECTSTATIC); the builder shows them only to the app's own code.
        source = dataclasses.replace(source, config=await self.control.config(app))
        now = self._clock()
        async with self.control.store.tx() as tx:
            build = await tx.add_build(
                await tx.get_app(app),
                build_id=build_id,
                # At rest too: the row never holds the URL's credentials.
                source_url=mask_url(url),
                source_version=version,
                source_ref=ref,
                actor=actor,
                now=now,
            )
            detail = {"build": build_id, "source": mask_url(url), "version": version}
            if ref is not None:
                detail["ref"] = ref  # the activity says "deployed REF (commit SHA)"
            await tx.record(actor=actor, action="build.create", app=app, detail=detail, now=now)
        self._follow(build, functools.partial(builder.build, app, source, build_id=build_id), owned)
        return build

    async def resume(self) -> int:
        """Builds a stopped control plane left pending: followed again, or failed; how many."""
        async with self.control.store.tx(write=False) as tx:
            pending = await tx.pending_builds()
        builder = self._builder
        for build in pending:
            if isinstance(builder, Reattaching) and build.source_version is not None:
                elapsed = max(0.0, self._clock() - build.created_at)
                log.info("following a build again", extra={"app": build.app, "build": build.id})
                attach = functools.partial(
                    builder.attach, build.app, build.id, build.source_version, elapsed=elapsed
                )
                self._follow(build, attach, None)
            else:
                await self._finish(build, BuildStatus.FAILED, output=INTERRUPTED)
        return len(pending)

    def _follow(
        self, build: Build, produce: Callable[[], Awaitable[Artifact]], owned: Path | None
    ) -> None:
        task = asyncio.create_task(
            self._run(build, produce, owned), name=f"build-{build.app}-{build.id}"
        )
        self._running[build.id] = task
        task.add_done_callback(lambda _: self._running.pop(build.id, None))

    async def _run(
        self, build: Build, produce: Callable[[], Awaitable[Artifact]], owned: Path | None
    ) -> Build:
        """The background task: never leaves the row pending while this process lives."""
        try:
            return await self._build_and_release(build, produce, owned)
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
        self, build: Build, produce: Callable[[], Awaitable[Artifact]], owned: Path | None
    ) -> Build:
        app = build.app
        try:
            artifact = await produce()
        except (BuildError, OSError) as exc:
            # Masked before it is cut: a cut could leave half a URL that no longer looks
            # like one, its password included.
            output = mask_text(str(exc))[-OUTPUT_TAIL:]
            return await self._finish(build, BuildStatus.FAILED, output=output)
        finally:
            if owned is not None:
                await asyncio.to_thread(owned.unlink, missing_ok=True)
        procfile = dict(artifact.process_types)
        try:
            await self._release(build, artifact, procfile)
        finally:
            # Only now: a client following the build (builds:create) sees the release
            # phase's output before the build stops being pending.
            await self._finish(build, BuildStatus.SUCCEEDED, artifact=artifact)
        return await self.get(app, build.id)

    async def _release(self, build: Build, artifact: Artifact, procfile: dict[str, str]) -> None:
        """Release the build; the release phase's output follows the build's lines."""
        what = (artifact.commit or build.id)[:7]
        command = procfile.get(RELEASE_COMMAND)
        self._say(build, "-----> Releasing")
        if command is not None:
            self._say(build, f"-----> Running release command: {command}")
        # The release phase's lines as it prints them (the releaser runs it in this task),
        # after the build's: a client following the build (builds:create) sees them live.
        lines = Lines(lambda line: self._say(build, "       " + line))
        watcher = Watcher(on_output=lines.feed)
        token = WATCHER.set(watcher)
        try:
            release = await self.control.release_build(
                build.app,
                build_id=build.id,
                artifact=artifact.reference,
                procfile=procfile,
                description=f"Deploy {what}",
                actor=build.actor,
            )
        except ReleaseFailed as exc:
            lines.flush()
            self._say_output(build, exc.output, watcher, ok=False)
            self._say(build, f" !     Release v{exc.version} failed: {exc}")
        else:
            lines.flush()
            self._say_output(build, release.output, watcher, ok=True)
            self._say(build, f"-----> Released v{release.version}")
        finally:
            WATCHER.reset(token)

    def _say_output(self, build: Build, output: str, watcher: Watcher, *, ok: bool) -> None:
        """The release phase's output if it was not seen as printed (it ran elsewhere), else
        only what the runner added when it failed: the exit code, or the timeout."""
        said = output.splitlines()
        if watcher.seen:
            said = [] if ok else said[-1:]
        for line in said:
            self._say(build, "       " + line)

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
                output=mask_text(output),
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
        """Stop following builds in flight; the next start resumes or fails them."""
        if isinstance(self._builder, Reattaching):
            self._builder.detach()  # a rolling restart must not kill the builds it outlives
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A builder holding a connection (the Kubernetes API's) lets it go with the builds.
        close = getattr(self._builder, "close", None)
        if close is not None:
            await close()

    def _say(self, build: Build, text: str) -> None:
        self._sink.publish(build.app, "build", f"build.{build.id}", mask_text(text), self._clock())
