"""KubernetesRuntime: the Runtime seam over Deployments, EndpointSlices and Pods.

Writes are small and targeted: ``apply`` creates or patches a Deployment (and
a Service for web) without touching replicas; ``scale`` goes through the
scale subresource; the last-activity time is a Deployment annotation so a
restarted agent knows how long an app has been idle. Reads are three
resilient watches feeding one cache; every change recomputes the status of
the process types it touches and publishes it if it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from kubernetes_asyncio import client
from prometheus_client import CollectorRegistry, Counter

from agent.apps import AppConfig
from agent.definition import definition_json
from agent.errors import ConfigError, RuntimeFailure
from agent.kubernetes import manifests
from agent.kubernetes.errors import (
    ApiUnavailable,
    Conflict,
    Gone,
    KubeError,
    NotFound,
    NotLeader,
    checked,
    translated,
)
from agent.kubernetes.manifests import Manifest
from agent.kubernetes.settings import KubeSettings
from agent.kubernetes.status import Bucket, Cache, Key, status_of
from agent.kubernetes.watching import ResourceWatch, WatchMetrics
from agent.once import RELEASE_DYNO, tail
from agent.runtime import OnceResult, ProcessSpec, ProcessStatus
from kit.kube import watch_events
from kit.oneoff import WATCHER
from kit.tasks import TaskSet

log = logging.getLogger(__name__)

#: Seconds past a one-off run's timeout before the agent stops waiting for its Job's deadline.
RUN_GRACE = 30.0
#: Seconds each watch of a one-off Job asks the apiserver to stay open.
RUN_WATCH_SECONDS = 60
#: Lines of a one-off pod's log read at its end (then cut to OUTPUT_TAIL characters).
RUN_LOG_LINES = 200


def _always() -> bool:
    return True


class KubernetesRuntime:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        settings: KubeSettings,
        registry: CollectorRegistry,
        is_leader: Callable[[], bool] = _always,
        sleep: Callable[[float], Any] = asyncio.sleep,
        tasks: TaskSet | None = None,
    ) -> None:
        """``tasks``: the process's task set; a watch that dies of a bug (a frozen view of
        the cluster) stops the process."""
        self.settings = settings
        self.activity_interval: float | None = settings.activity_interval
        # Typed as Any: we pass and receive the wire form (dicts, raw responses), not the
        # client's model classes, which the generated signatures insist on.
        self._apps: Any = client.AppsV1Api(api)
        self._core: Any = client.CoreV1Api(api)
        self._discovery: Any = client.DiscoveryV1Api(api)
        self._batch: Any = client.BatchV1Api(api)
        self._is_leader = is_leader
        self.cache = Cache()
        self._published: dict[Key, ProcessStatus] = {}
        self._subscribers: list[asyncio.Queue[ProcessStatus]] = []
        self._tasks = TaskSet.of(tasks)
        self._started = False
        #: app -> its definition (wire form), written on its Deployments by ``apply``.
        self._definitions: dict[str, Manifest] = {}
        self._metrics = WatchMetrics(registry)
        self._scales = Counter(
            "slipway_agent_kube_scales_total",
            "Scale subresource patches sent, by direction.",
            ["direction"],
            registry=registry,
        )
        common: dict[str, Any] = {
            "settings": settings,
            "selector": manifests.SELECTOR,
            "metrics": self._metrics,
            "sleep": sleep,
        }
        self.watches = (
            ResourceWatch(
                "deployments",
                self._apps.list_namespaced_deployment,
                on_reset=self._resetter(self.cache.deployments),
                on_event=self._eventer(self.cache.deployments),
                **common,
            ),
            ResourceWatch(
                "pods",
                self._core.list_namespaced_pod,
                on_reset=self._resetter(self.cache.pods),
                on_event=self._eventer(self.cache.pods),
                **common,
            ),
            ResourceWatch(
                "endpointslices",
                self._discovery.list_namespaced_endpoint_slice,
                on_reset=self._resetter(self.cache.slices),
                on_event=self._eventer(self.cache.slices),
                **common,
            ),
        )

    # -- the view ------------------------------------------------------------------------------

    def _resetter(self, bucket: Bucket) -> Callable[[list[Manifest]], None]:
        def reset(items: list[Manifest]) -> None:
            self._publish(bucket.reset(items))

        return reset

    def _eventer(self, bucket: Bucket) -> Callable[[str, Manifest], None]:
        def on_event(kind: str, obj: Manifest) -> None:
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                return  # not an object of ours (a malformed event): nothing to file it under
            touched = bucket.delete(str(name)) if kind == "DELETED" else bucket.put(obj)
            self._publish(touched)

        return on_event

    def _publish(self, keys: set[Key]) -> None:
        if not all(w.synced.is_set() for w in self.watches):
            return  # the first snapshot goes out once all three are listed
        for key in sorted(keys):
            status = status_of(self.cache, key)
            if self._published.get(key) == status:
                continue
            self._published[key] = status
            for queue in self._subscribers:
                queue.put_nowait(status)

    @property
    def failed(self) -> asyncio.Event:
        """Set when a task of the process died (a watch: the view is frozen); the runner exits."""
        return self._tasks.failed

    def ready(self) -> str | None:
        """None while every watch is in sync; otherwise why the view may be stale."""
        if self._tasks.failed.is_set():
            return f"background task {self._tasks.failed_task} failed: {self._tasks.failure!r}"
        problems = [f"{w.resource}: {w.problem}" for w in self.watches if w.problem]
        return "; ".join(problems) or None

    def last_activity(self, app: str) -> float | None:
        """The newest persisted last-activity time (epoch seconds) over the app's Deployments."""
        times = [
            t
            for (owner, _), objs in self.cache.deployments.by_key.items()
            if owner == app
            for d in objs.values()
            if (t := manifests.last_activity(d)) is not None
        ]
        return max(times, default=None)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for w in self.watches:
            self._tasks.start(f"kube-watch-{w.resource}", w.run())

    async def watch(self) -> AsyncIterator[ProcessStatus]:
        self.start()
        await asyncio.gather(*(w.synced.wait() for w in self.watches))
        queue: asyncio.Queue[ProcessStatus] = asyncio.Queue()
        # Subscribe and take the snapshot with no await between: every status queued
        # after this point is newer than the snapshot, so the consumer never goes back.
        self._subscribers.append(queue)
        snapshot = [
            status_of(self.cache, key) for key in sorted(self.cache.keys() | set(self._published))
        ]
        for status in snapshot:
            self._published[(status.app, status.process)] = status
        try:
            for status in snapshot:
                yield status
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    async def close(self) -> None:
        await self._tasks.stop()

    # -- writes --------------------------------------------------------------------------------

    def describe(self, config: AppConfig) -> None:
        """Remember the app's definition: ``apply`` stores it (without env values) on the app's
        Deployments, where a restarted or newly elected agent finds it (``definitions``)."""
        for process, spec in sorted(config.processes.items()):
            if not spec.image:
                raise ConfigError(
                    f"app {config.name!r} process {process!r}: an image is required on Kubernetes"
                )
        self._definitions[config.name] = definition_json(config)

    def definitions(self) -> dict[str, Manifest]:
        """app -> the definition on its Deployments (the newest release's), from the watch."""
        found: dict[str, tuple[int, Manifest]] = {}
        for (app, _), objs in sorted(self.cache.deployments.by_key.items()):
            for obj in objs.values():
                definition = manifests.definition_of(obj)
                if definition is None:
                    continue
                release = definition.get("release")
                rank = release if isinstance(release, int) else -1
                if app not in found or rank > found[app][0]:
                    found[app] = (rank, definition)
        return {app: definition for app, (_, definition) in found.items()}

    async def apply(self, spec: ProcessSpec) -> None:
        """The release's env Secret, the web Service, then the Deployment (at 0 replicas when
        new; without replicas when it exists). Nothing is sent when the Deployment already
        carries exactly this spec (a new leader re-applying every app costs no writes)."""
        ns, port = self.settings.namespace, self.settings.app_port
        name = manifests.object_name(spec.app, spec.process)
        body = manifests.deployment(
            spec,
            port=port,
            replicas=0,
            definition=self._definitions.get(spec.app),
            pull_secret=self.settings.image_pull_secret,
            drain=self.settings.app_drain_seconds,
            stop_grace=self.settings.app_stop_grace,
        )
        applied = body["metadata"]["annotations"][manifests.APPLIED_ANNOTATION]
        current = self.cache.deployments.by_name.get(name)
        if current is not None:
            annotations = (current.get("metadata") or {}).get("annotations") or {}
            if annotations.get(manifests.APPLIED_ANNOTATION) == applied:
                return
        await self._env_secret(spec)
        if spec.process == "web":
            svc = manifests.service(spec, port=port)
            try:
                with translated(f"create service {name}"):
                    await self._core.create_namespaced_service(ns, svc)
            except Conflict:
                with translated(f"patch service {name}"):
                    await self._core.patch_namespaced_service(name, ns, svc)
        try:
            with translated(f"create deployment {name}"):
                await self._apps.create_namespaced_deployment(ns, body)
            log.info("deployment created", extra={"app": spec.app, "process_type": spec.process})
        except Conflict:
            del body["spec"]["replicas"]
            with translated(f"patch deployment {name}"):
                await self._apps.patch_namespaced_deployment(name, ns, body)
            log.info(
                "deployment updated",
                extra={"app": spec.app, "process_type": spec.process, "release": spec.release},
            )

    async def _env_secret(self, spec: ProcessSpec) -> None:
        """Create the release's Secret once; then drop those of releases long gone."""
        ns = self.settings.namespace
        secret = manifests.env_secret(spec)
        name = secret["metadata"]["name"]
        try:
            with translated(f"create secret {name}"):
                await self._core.create_namespaced_secret(ns, secret)
        except Conflict:
            return  # immutable: a release's config vars never change, so it is already right
        log.info("config secret created", extra={"app": spec.app, "release": spec.release})
        secrets = await self._secrets_of(spec.app)
        for stale in manifests.stale_secrets(secrets, keep=self.settings.keep_releases):
            await self._delete_secret(stale)

    async def _secrets_of(self, app: str) -> list[Manifest]:
        selector = f"{manifests.APP_LABEL}={app}"
        with translated(f"list secrets of {app}"):
            resp = await self._core.list_namespaced_secret(
                self.settings.namespace, label_selector=selector, _preload_content=False
            )
            body = await (await checked(resp, f"list secrets of {app}")).json()
        return list(body.get("items") or [])

    async def _delete_secret(self, name: str) -> None:
        try:
            with translated(f"delete secret {name}"):
                await self._core.delete_namespaced_secret(name, self.settings.namespace)
        except NotFound:
            pass

    async def run_once(self, spec: ProcessSpec, command: str, *, timeout: float) -> OnceResult:
        """A Job of the release's image (its env Secret made first, as ``apply`` makes it):
        watched until it ends, then its pod's log tail; on timeout the Job is deleted."""
        ns = self.settings.namespace
        name = manifests.once_job_name(spec.app, spec.release, secrets.token_hex(3))
        watcher = WATCHER.get()
        dyno = watcher.name if watcher is not None and watcher.name else RELEASE_DYNO
        if watcher is not None:
            watcher.dyno = dyno
        try:
            job = manifests.once_job(
                spec,
                command,
                name=name,
                timeout=timeout,
                pull_secret=self.settings.image_pull_secret,
                dyno=dyno,
            )
            await self._env_secret(spec)
            with translated(f"create job {name}"):
                await self._batch.create_namespaced_job(ns, job)
        except (KubeError, ValueError) as exc:
            return OnceResult(ok=False, output=f"command could not start: {exc}")
        log.info(
            "one-off job created", extra={"app": spec.app, "release": spec.release, "job": name}
        )
        try:
            # The Job's own deadline ends it; ours is a backstop (a lost watch, a slow controller).
            async with asyncio.timeout(timeout + RUN_GRACE):
                ended = await self._job_end(name)
        except TimeoutError:
            ended = (False, "timed out")
        except BaseException:
            await self._delete_job(name)
            raise
        ok, why = ended
        output = await self._run_log(name)
        if why == "timed out":
            await self._delete_job(name)
            why = f"timed out after {timeout:g}s; job {name} deleted"
        log.info("one-off job ended", extra={"app": spec.app, "job": name, "ok": ok})
        if ok:
            return OnceResult(ok=True, output=output)
        return OnceResult(ok=False, output=f"{output}\njob {name} failed: {why}".lstrip())

    async def _job_end(self, name: str) -> tuple[bool, str]:
        """List, then watch, one Job until it ends; a watch that ends resumes where it was."""
        ns, selector = self.settings.namespace, f"{manifests.RUN_LABEL}={name}"
        version: str | None = None
        while True:
            if version is None:
                with translated(f"read job {name}"):
                    resp = await self._batch.list_namespaced_job(
                        ns, label_selector=selector, _preload_content=False
                    )
                    body = await (await checked(resp, f"read job {name}")).json()
                items = body.get("items") or []
                if not items:
                    return False, "the Job is gone (deleted by someone else)"
                if (end := manifests.once_outcome(items[0])) is not None:
                    return end
                version = (body.get("metadata") or {}).get("resourceVersion") or ""
            try:
                with translated(f"watch job {name}"):
                    resp = await self._batch.list_namespaced_job(
                        ns,
                        label_selector=selector,
                        watch=True,
                        resource_version=version,
                        timeout_seconds=RUN_WATCH_SECONDS,
                        _preload_content=False,
                    )
                    resp = await checked(resp, f"watch job {name}")
                    async for kind, obj in watch_events(resp):
                        if kind == "DELETED":
                            return False, "the Job was deleted before it ended"
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if (end := manifests.once_outcome(obj)) is not None:
                            return end
            except Gone:
                version = None
            except (ApiUnavailable, ValueError) as exc:
                log.warning("one-off job watch failed", extra={"job": name, "error": str(exc)})
                version = None
                await asyncio.sleep(1.0)

    async def _run_log(self, name: str) -> str:
        """The tail of the one-off pod's log; what went wrong when there is none to read."""
        ns = self.settings.namespace
        try:
            with translated(f"list pods of job {name}"):
                resp = await self._core.list_namespaced_pod(
                    ns, label_selector=f"{manifests.RUN_LABEL}={name}", _preload_content=False
                )
                pods = (await (await checked(resp, f"list pods of job {name}")).json()).get(
                    "items"
                ) or []
            if not pods:
                return "(no pod ran: see the Job's events)"
            pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
            pod = str(pods[-1]["metadata"]["name"])
            with translated(f"read the log of {pod}"):
                resp = await self._core.read_namespaced_pod_log(
                    pod,
                    ns,
                    container=manifests.ONCE_CONTAINER,
                    tail_lines=RUN_LOG_LINES,
                    _preload_content=False,
                )
                text = (await (await checked(resp, f"read the log of {pod}")).read()).decode(
                    "utf-8", "replace"
                )
        except KubeError as exc:
            return f"(no log: {exc})"
        return tail(text)

    async def _delete_job(self, name: str) -> None:
        try:
            with translated(f"delete job {name}"):
                await self._batch.delete_namespaced_job(
                    name, self.settings.namespace, propagation_policy="Background"
                )
        except NotFound:
            pass
        except KubeError as exc:
            log.warning("one-off job not deleted", extra={"job": name, "error": str(exc)})

    async def remove(self, app: str, process: str) -> None:
        """Delete the process type's Deployment (and Service); with the app's last one, its
        env Secrets and its definition go too."""
        ns, name = self.settings.namespace, manifests.object_name(app, process)
        try:
            with translated(f"delete deployment {name}"):
                await self._apps.delete_namespaced_deployment(name, ns)
        except NotFound:
            pass
        # Gone now, not when the watch says so: an apply right after must not find it cached.
        self._publish(self.cache.deployments.delete(name))
        if process == "web":
            try:
                with translated(f"delete service {name}"):
                    await self._core.delete_namespaced_service(name, ns)
            except NotFound:
                pass
        selector = f"{manifests.APP_LABEL}={app}"
        with translated(f"list deployments of {app}"):
            resp = await self._apps.list_namespaced_deployment(
                ns, label_selector=selector, _preload_content=False
            )
            left = (await (await checked(resp, f"list deployments of {app}")).json()).get("items")
        if left:
            return
        for secret in await self._secrets_of(app):
            await self._delete_secret(str(secret["metadata"]["name"]))
        self._definitions.pop(app, None)

    async def scale(self, app: str, process: str, replicas: int) -> None:
        if not self._is_leader():
            raise NotLeader(f"not the leader: refusing to scale {app}/{process}")
        ns, name = self.settings.namespace, manifests.object_name(app, process)
        body = manifests.scale_patch(replicas)
        with translated(f"scale deployment {name}"):
            await self._apps.patch_namespaced_deployment_scale(name, ns, body)
        self._scales.labels("up" if replicas > 0 else "down").inc()
        log.info("scaled", extra={"app": app, "process_type": process, "replicas": replicas})

    async def restart(self, app: str, process: str) -> None:
        """Roll the process type's pods onto fresh ones (a rolling update: surge first, so a
        web process keeps serving); replicas, spec and config stay as they are."""
        ns, name = self.settings.namespace, manifests.object_name(app, process)
        patch = manifests.restart_patch(time.time())
        with _failure(), translated(f"restart deployment {name}"):
            await self._apps.patch_namespaced_deployment(name, ns, patch)
        log.info("rolling restart", extra={"app": app, "process_type": process})

    async def record_activity(self, app: str, process: str, at: float) -> None:
        """Persist the last-activity time (epoch seconds) on the Deployment; leader only."""
        if not self._is_leader():
            raise NotLeader(f"not the leader: refusing to write activity of {app}")
        ns, name = self.settings.namespace, manifests.object_name(app, process)
        with _failure(), translated(f"annotate deployment {name}"):
            await self._apps.patch_namespaced_deployment(name, ns, manifests.activity_patch(at))


@contextlib.contextmanager
def _failure() -> Iterator[None]:
    """The apiserver's refusals as the Runtime protocol's RuntimeFailure, for the Agent."""
    try:
        yield
    except KubeError as exc:
        raise RuntimeFailure(str(exc)) from exc
