"""The Kubernetes builder: one Job per build running the CNB lifecycle, followed to its end.

``KubernetesBuilder.build`` creates the Job of ``cnb.build_job``, then
follows it: a list+watch of the Job and one of its pod (both selected by the
build's labels) feed the pure ``cnb.outcome``; each container's log
(``fetch-source``, then ``creator``) is read with ``follow=true`` once the
container has started, and every line goes to the sink as it comes. On
success the artifact is the app image pinned by digest
(``<registry>/<app>@sha256:...``, from creator's report in the pod status,
else from its log), with the process types of the Procfile the init
container sent back.

A control plane that stops (``detach``) leaves its build Jobs running
(``activeDeadlineSeconds`` bounds them); the next one finds each pending
build's Job by its labels and follows it (``attach``) to the same end, with
what is left of the timeout.

A build that cannot start (an image that cannot be pulled), runs past its
timeout, or is cancelled has its Job deleted (``propagationPolicy:
Background``, so the pod goes too); one that ended on its own keeps its Job
for ``ttlSecondsAfterFinished``, for ``kubectl logs``. A lost connection to
the apiserver while a build runs is retried until the timeout; one that
prevents creating the Job fails the build at once, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from control.builds import cnb
from control.builds.egress import fetch_config
from control.builds.errors import BuildError, BuildFailed, BuildTimeout, SourceError
from control.builds.metrics import BuildMetrics
from control.builds.model import Artifact, LogSink, Source, Stack
from control.builds.procfile import parse_procfile
from control.builds.settings import CNBSettings
from control.builds.sources import check_git_source
from kit.kube import (
    ApiUnavailable,
    Gone,
    KubeError,
    NotFound,
    api_client,
    checked,
    translated,
    watch_events,
)
from kit.redact import mask_text

log = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[client.ApiClient]]
#: Seconds a call that is not a stream may take (create, delete, list).
CALL_TIMEOUT = 30.0
#: Seconds a watch asks the apiserver to hold it open before resuming from where it was.
WATCH_SECONDS = 60
#: Retry delays while the apiserver cannot be reached: 0.5 s doubling to 10 s, well inside
#: a build's timeout, so a short outage costs seconds, not the build.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
#: Seconds to wait, once the pod says a container ended, for its log stream to end too;
#: kubelet closes it at once, so this only bounds a stream the apiserver left hanging.
LOG_GRACE = 5.0


async def connect_from_env() -> client.ApiClient:
    """The pod's service account in a cluster, else the kubeconfig ``$KUBECONFIG`` names now.

    kubernetes-asyncio reads ``$KUBECONFIG`` once, when it is imported; this reads it
    when the first build connects.
    """
    return await api_client(os.environ.get("KUBECONFIG") or None)


@dataclass(slots=True)
class _Run:
    """One build in progress: its Job, what was last seen of it, and its output."""

    app: str
    build_id: str
    job_name: str
    tail: deque[str]
    """The last lines of output: a failure's tail, and where the digest line is."""
    cache_hit: bool = False
    job: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    api_problem: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on each change of the Job or pod; ``_until_done`` clears it."""
    log_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """The same for ``_logs``: one event cleared by two waiters loses a wake-up or, worse,
    leaves one of them looping on a set event without ever yielding to the loop."""

    def notify(self) -> None:
        self.changed.set()
        self.log_changed.set()

    log_done: asyncio.Event = field(default_factory=asyncio.Event)


class KubernetesBuilder:
    """Builds as Kubernetes Jobs, one at a time per app (an app's cache image is shared)."""

    def __init__(
        self,
        settings: CNBSettings,
        *,
        sink: LogSink,
        metrics: BuildMetrics,
        timeout: float,
        connect: Connect | None = None,
        buildpacks: Callable[[str], Awaitable[Sequence[str]]] | None = None,
        tail_lines: int = 40,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._timeout = timeout
        self._connect = connect or connect_from_env
        self._buildpacks = buildpacks
        self._tail_lines = tail_lines
        self._clock = clock
        self._api: client.ApiClient | None = None
        self._api_lock = asyncio.Lock()
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._detached = False

    def detach(self) -> None:
        """Builds cancelled from now on keep their Jobs, for the next control plane."""
        self._detached = True

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def build(self, app: str, source: Source, *, build_id: str | None = None) -> Artifact:
        if source.git_url is None or source.commit is None:
            raise SourceError(
                "a build on Kubernetes takes a git URL and commit; "
                "an uploaded archive needs the local builder"
            )
        check_git_source(source.git_url, source.commit, tenant=source.tenant)
        # A tenant's host is checked as resolved here, and the Job's git held to the
        # addresses checked (the chart's egress policy fences the build pods as well).
        pinned = await fetch_config(source.git_url, self._settings.egress) if source.tenant else {}
        build_id = build_id or secrets.token_hex(6)
        buildpacks = await self._buildpacks(app) if self._buildpacks is not None else ()
        job = cnb.build_job(
            app,
            build_id,
            git_url=source.git_url,
            commit=source.commit,
            settings=self._settings,
            buildpacks=buildpacks,
            tenant=source.tenant,
            git_env=pinned,
        )
        run = _Run(app, build_id, job["metadata"]["name"], deque(maxlen=self._tail_lines))
        async with self._app_locks.setdefault(app, asyncio.Lock()):
            return await self._timed(run, job, source.commit, self._timeout)

    async def attach(self, app: str, build_id: str, commit: str, *, elapsed: float) -> Artifact:
        """Follow the Job of a build started by a control plane that stopped since.

        ``elapsed``: seconds since the build began; it gets what is left of its timeout.
        """
        api = await self._client()
        try:
            with translated("list the build Job"):
                resp = await client.BatchV1Api(api).list_namespaced_job(
                    self._settings.namespace,
                    label_selector=cnb.job_labels(app, build_id),
                    _preload_content=False,
                    _request_timeout=CALL_TIMEOUT,
                )
                body = await (await checked(resp, "list the build Job")).json()
        except KubeError as exc:
            raise BuildFailed(
                f"interrupted: the control plane restarted and cannot find the build Job: {exc}"
            ) from exc
        items = body.get("items") or []
        if not items:
            raise BuildFailed(
                "interrupted: the control plane restarted and the build Job is gone; build again"
            )
        name = items[-1]["metadata"]["name"]
        run = _Run(app, build_id, name, deque(maxlen=self._tail_lines), job=items[-1])
        async with self._app_locks.setdefault(app, asyncio.Lock()):
            return await self._timed(run, None, commit, max(0.0, self._timeout - elapsed))

    async def _timed(
        self, run: _Run, job: dict[str, Any] | None, commit: str, timeout: float
    ) -> Artifact:
        started = time.monotonic()
        result = "failed"
        try:
            async with asyncio.timeout(timeout):
                artifact = await self._build(run, job, commit)
            result = "succeeded"
            self._metrics.cache.labels("hit" if artifact.cache_hit else "miss").inc()
            self._say(run, f"-----> Build {run.build_id} succeeded ({artifact.image})")
            return artifact
        except TimeoutError as exc:
            result = "timeout"
            message = f"build timed out after {self._timeout:g}s; its Job was deleted"
            if run.api_problem is not None:
                message += f" (the Kubernetes API was unreachable: {run.api_problem})"
            self._say(run, f" !     {message}")
            await self._delete(run)
            raise BuildTimeout(message, tail=tuple(run.tail)) from exc
        except asyncio.CancelledError:
            if not self._detached:
                await asyncio.shield(self._delete(run))
            raise
        except BuildError as exc:
            self._say(run, f" !     {str(exc).splitlines()[0]}")
            raise
        finally:
            elapsed = time.monotonic() - started
            self._metrics.builds.labels(Stack.BUILDPACKS.value, result).inc()
            self._metrics.duration.labels(result).observe(elapsed)
            log.info(
                "build finished",
                extra={"app": run.app, "build": run.build_id, "result": result, "seconds": elapsed},
            )

    async def _build(self, run: _Run, job: dict[str, Any] | None, commit: str) -> Artifact:
        started = time.monotonic()
        api = await self._client()
        if job is None:
            self._say(run, f"-----> Following Job {run.job_name} again after a restart")
        else:
            await self._create(run, api, job, commit)
        async with asyncio.TaskGroup() as tasks:
            watchers = [
                tasks.create_task(self._watch(run, api, "job")),
                tasks.create_task(self._watch(run, api, "pod")),
                tasks.create_task(self._logs(run, api)),
            ]
            try:
                end = await self._until_done(run, api)
            finally:
                for task in watchers[:2]:
                    task.cancel()
            if end.finished and not end.by_job:
                # The pod ended: its log streams end too; take their last lines first.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOG_GRACE):
                        await run.log_done.wait()
            watchers[2].cancel()
        if end.failure is not None:
            if not end.finished:
                await self._delete(run)
            raise BuildFailed(end.failure, tail=tuple(run.tail))
        return self._artifact(run, end, commit, time.monotonic() - started)

    async def _create(
        self, run: _Run, api: client.ApiClient, job: dict[str, Any], commit: str
    ) -> None:
        self._say(run, f"-----> Building {commit[:12]} on Kubernetes (Job {run.job_name})")
        try:
            # Any: the Job is a plain dict (cnb.build_job), which the client sends as it is.
            batch: Any = client.BatchV1Api(api)
            with translated("create the build Job"):
                await batch.create_namespaced_job(
                    self._settings.namespace, job, _request_timeout=CALL_TIMEOUT
                )
        except ApiUnavailable as exc:
            raise BuildFailed(
                f"cannot start the build: the Kubernetes API is unreachable: {exc}"
            ) from exc
        except KubeError as exc:
            raise BuildFailed(f"the Kubernetes API refused the build Job: {exc}") from exc

    def _artifact(self, run: _Run, end: cnb.Outcome, commit: str, elapsed: float) -> Artifact:
        try:
            digest = cnb.digest_from_report(end.report or "")
        except BuildError:
            digest = cnb.digest_from_log(run.tail)
        if end.procfile is None:
            raise BuildFailed("the source's Procfile did not come back from fetch-source")
        process_types = parse_procfile(end.procfile)
        return Artifact(
            build_id=run.build_id,
            app=run.app,
            commit=commit,
            slug=None,
            process_types=MappingProxyType(process_types),
            stack=Stack.BUILDPACKS,
            cache_hit=run.cache_hit,
            digest=digest,
            duration=elapsed,
            image=cnb.release_ref(self._settings, run.app, digest),
        )

    async def _until_done(self, run: _Run, api: client.ApiClient) -> cnb.Outcome:
        refreshed = False
        while True:
            end = cnb.outcome(run.job, run.pod)
            if end is not None and end.by_job and not refreshed:
                # The Job's and the pod's watches race: read the pod itself once before
                # settling for the Job's summary of how it ended.
                refreshed = True
                await self._read_pod(run, api)
                continue
            if end is not None:
                return end
            await run.changed.wait()
            run.changed.clear()

    async def _read_pod(self, run: _Run, api: client.ApiClient) -> None:
        try:
            with translated("list the build pod"):
                resp = await client.CoreV1Api(api).list_namespaced_pod(
                    self._settings.namespace,
                    label_selector=cnb.job_labels(run.app, run.build_id),
                    _preload_content=False,
                    _request_timeout=CALL_TIMEOUT,
                )
                body = await (await checked(resp, "list the build pod")).json()
        except KubeError as exc:
            run.api_problem = str(exc)
            return
        items = body.get("items") or []
        if items:
            run.pod = items[-1]
            run.notify()

    # -- the apiserver ---------------------------------------------------------------

    async def _client(self) -> client.ApiClient:
        async with self._api_lock:
            if self._api is None:
                try:
                    self._api = await self._connect()
                except KubeError as exc:
                    raise BuildFailed(f"no Kubernetes API to build with: {exc}") from exc
            return self._api

    async def _watch(self, run: _Run, api: client.ApiClient, kind: str) -> None:
        """List, then watch, the build's Job or pod until cancelled; resume on every end."""
        list_fn: Callable[..., Awaitable[Any]] = (
            client.BatchV1Api(api).list_namespaced_job
            if kind == "job"
            else client.CoreV1Api(api).list_namespaced_pod
        )
        selector = cnb.job_labels(run.app, run.build_id)
        namespace = self._settings.namespace
        version: str | None = None
        backoff = BACKOFF_INITIAL
        while True:
            try:
                if version is None:
                    with translated(f"list {kind}s"):
                        resp = await list_fn(
                            namespace,
                            label_selector=selector,
                            _preload_content=False,
                            _request_timeout=CALL_TIMEOUT,
                        )
                        body = await (await checked(resp, f"list {kind}s")).json()
                    items = body.get("items") or []
                    self._seen(run, kind, "ADDED", items[-1] if items else None)
                    version = (body.get("metadata") or {}).get("resourceVersion")
                with translated(f"watch {kind}s"):
                    resp = await list_fn(
                        namespace,
                        label_selector=selector,
                        watch=True,
                        resource_version=version or "",
                        timeout_seconds=WATCH_SECONDS,
                        _preload_content=False,
                        _request_timeout=WATCH_SECONDS + 10,
                    )
                    resp = await checked(resp, f"watch {kind}s")
                    run.api_problem = None
                    backoff = BACKOFF_INITIAL
                    async for event, obj in watch_events(resp):
                        self._seen(run, kind, event, obj)
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
            except Gone:
                version = None
            except (KubeError, ValueError) as exc:
                run.api_problem = str(exc)
                log.warning(
                    "build watch failed",
                    extra={"app": run.app, "build": run.build_id, "error": str(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    @staticmethod
    def _seen(run: _Run, kind: str, event: str, obj: dict[str, Any] | None) -> None:
        if obj is None or event == "BOOKMARK":
            return
        value = None if event == "DELETED" else obj
        if kind == "job":
            run.job = value
        else:
            run.pod = value
        run.notify()

    async def _logs(self, run: _Run, api: client.ApiClient) -> None:
        """Each container's output in turn, line by line into the sink, as it is written."""
        core = client.CoreV1Api(api)
        try:
            for container in (cnb.FETCH_CONTAINER, cnb.CREATOR_CONTAINER):
                while not cnb.started(run.pod, container):
                    run.log_changed.clear()  # before looking: a change after it wakes us
                    end = cnb.outcome(run.job, run.pod)
                    if end is not None and not end.by_job:
                        return  # the container never started: it has no output
                    await run.log_changed.wait()
                pod_name = (run.pod or {})["metadata"]["name"]
                await self._follow(run, core, pod_name, container)
        finally:
            run.log_done.set()

    async def _follow(
        self, run: _Run, core: client.CoreV1Api, pod_name: str, container: str
    ) -> None:
        try:
            with translated(f"read the {container} log"):
                resp = await core.read_namespaced_pod_log(
                    pod_name,
                    self._settings.namespace,
                    container=container,
                    follow=True,
                    _preload_content=False,
                )
                resp = await checked(resp, f"read the {container} log")
                try:
                    async for raw in resp.content:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        run.tail.append(line)
                        run.cache_hit = run.cache_hit or cnb.cache_hit_from_log((line,))
                        self._say(run, "       " + line)
                finally:
                    resp.release()
        except (KubeError, aiohttp.ClientPayloadError) as exc:
            # The build goes on without its output: its status says how it ends.
            self._say(run, f" !     {container} output interrupted: {exc}")

    async def _delete(self, run: _Run) -> None:
        if self._api is None:
            return
        try:
            with translated("delete the build Job"):
                await client.BatchV1Api(self._api).delete_namespaced_job(
                    run.job_name,
                    self._settings.namespace,
                    propagation_policy="Background",
                    _request_timeout=CALL_TIMEOUT,
                )
        except NotFound:
            pass
        except KubeError as exc:
            log.warning(
                "build job not deleted",
                extra={"app": run.app, "build": run.build_id, "error": str(exc)},
            )

    def _say(self, run: _Run, text: str) -> None:
        self._sink.publish(
            run.app, "build", f"build.{run.build_id}", mask_text(text), self._clock()
        )
