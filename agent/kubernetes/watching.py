"""List, then watch one resource for ever: resume, relist on 410, back off, bookmarks.

The shape is client-go's reflector. A list gives the whole state and a
resourceVersion; a watch from that version gives every change after it. When
the apiserver ends a watch (its timeout, a dropped connection) we resume from
the last version seen, which bookmarks keep fresh even when nothing of ours
changes. When the version is too old (410 Gone) we list again: the view is
replaced, never patched from a gap. While the apiserver cannot be reached the
watch is marked unhealthy (readiness says so, a counter counts it), and
retries back off exponentially up to a ceiling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge

from agent.kubernetes.errors import ApiUnavailable, Gone, KubeError, checked, translated
from agent.kubernetes.manifests import Manifest
from agent.kubernetes.settings import KubeSettings
from kit.kube import watch_events

log = logging.getLogger(__name__)

#: ``list_fn(namespace, **kwargs)`` of kubernetes-asyncio (``list_namespaced_deployment``).
ListFn = Callable[..., Awaitable[Any]]
#: Called with the whole listed state (a relist replaces the view).
OnReset = Callable[[list[Manifest]], None]
#: Called with ("ADDED" | "MODIFIED" | "DELETED", object).
OnEvent = Callable[[str, Manifest], None]


class WatchMetrics:
    def __init__(self, registry: Any) -> None:
        self.failures = Counter(
            "slipway_agent_kube_watch_failures_total",
            "List or watch attempts that failed because the apiserver was unreachable or erred.",
            ["resource"],
            registry=registry,
        )
        self.relists = Counter(
            "slipway_agent_kube_relists_total",
            "Full relists of a resource (the first one, and after 410 Gone).",
            ["resource"],
            registry=registry,
        )
        self.events = Counter(
            "slipway_agent_kube_watch_events_total",
            "Watch events received, bookmarks included.",
            ["resource", "type"],
            registry=registry,
        )
        self.healthy = Gauge(
            "slipway_agent_kube_watch_healthy",
            "1 while the resource's view is in sync with the apiserver, 0 while it may be stale.",
            ["resource"],
            registry=registry,
        )


class ResourceWatch:
    def __init__(
        self,
        resource: str,
        list_fn: ListFn,
        *,
        settings: KubeSettings,
        selector: str,
        on_reset: OnReset,
        on_event: OnEvent,
        metrics: WatchMetrics,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.resource = resource
        self._list_fn = list_fn
        self.settings = settings
        self.selector = selector
        self._on_reset = on_reset
        self._on_event = on_event
        self.metrics = metrics
        self._sleep = sleep
        #: The last resourceVersion seen: where the next watch resumes.
        self.resource_version: str | None = None
        #: Why the view may be stale right now; None while in sync.
        self.problem: str | None = "not listed yet"
        self.synced = asyncio.Event()
        metrics.healthy.labels(resource).set(0)

    def _set_problem(self, problem: str | None) -> None:
        if problem is not None and self.problem is None:
            log.warning("watch out of sync", extra={"resource": self.resource, "problem": problem})
        elif problem is None and self.problem is not None and self.synced.is_set():
            log.info("watch back in sync", extra={"resource": self.resource})
        self.problem = problem
        self.metrics.healthy.labels(self.resource).set(0 if problem else 1)

    async def relist(self) -> None:
        with translated(f"list {self.resource}"):
            resp = await self._list_fn(
                self.settings.namespace,
                label_selector=self.selector,
                _preload_content=False,
                _request_timeout=self.settings.watch_timeout,
            )
            body = await (await checked(resp, f"list {self.resource}")).json()
        self.metrics.relists.labels(self.resource).inc()
        self.resource_version = (body.get("metadata") or {}).get("resourceVersion")
        self._on_reset(list(body.get("items") or []))
        self._set_problem(None)
        self.synced.set()

    async def watch_once(self) -> None:
        """One watch request from ``resource_version``, until the apiserver ends it."""
        timeout = self.settings.watch_timeout
        with translated(f"watch {self.resource}"):
            resp = await self._list_fn(
                self.settings.namespace,
                label_selector=self.selector,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=self.resource_version,
                timeout_seconds=max(1, int(timeout)),
                _preload_content=False,
                # The client gives up a little after the server should have ended it.
                _request_timeout=timeout + 10,
            )
            resp = await checked(resp, f"watch {self.resource}")
            # The apiserver accepted the watch: whatever we missed, we resume from.
            self._set_problem(None)
            async for kind, obj in watch_events(resp, seen=self._count):
                self._handle(kind, obj)

    def _count(self, kind: str) -> None:
        self.metrics.events.labels(self.resource, kind.lower()).inc()

    def _handle(self, kind: str, obj: Manifest) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK":
            self._on_event(kind, obj)
        if rv:
            self.resource_version = str(rv)

    async def run(self) -> None:
        backoff = self.settings.backoff_initial
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                await self.watch_once()
                backoff = self.settings.backoff_initial
            except Gone:
                log.info("watch expired, relisting", extra={"resource": self.resource})
                self.resource_version = None
            except (ApiUnavailable, ValueError) as exc:
                # ValueError: a line that is not JSON, a connection cut mid-event.
                self.metrics.failures.labels(self.resource).inc()
                self._set_problem(str(exc))
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max)
            except KubeError as exc:
                # 4xx other than 410: RBAC or a bug. Loud, but keep trying slowly.
                self.metrics.failures.labels(self.resource).inc()
                self._set_problem(str(exc))
                log.error("watch rejected", extra={"resource": self.resource, "error": str(exc)})
                await self._sleep(self.settings.backoff_max)
