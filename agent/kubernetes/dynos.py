"""The dyno monitor's source on Kubernetes: PodMetrics from the metrics.k8s.io API.

metrics-server (or any metrics.k8s.io provider) answers a list of PodMetrics
for the namespace, selected on ``slipway.dev/app``; each carries its pod's
labels, a ``timestamp``, a ``window`` and per container ``usage.memory`` (the
working set) and ``usage.cpu`` (cores over the window). The working set is
reported as RSS (the kubelet evicts and the OOM killer acts on it); the CPU
rate is integrated into CPU seconds across samples, per pod.

The hard limit is the container's memory limit (manifests.resources_of): the
kernel kills at it, so ``kill`` does nothing here, and ``killed`` finds those
kills in the watched pods instead: a container whose restart count went up with
``lastState.terminated.reason: OOMKilled`` (a pod seen for the first time sets
the count to compare with; its past kills are not reported again).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from agent.dyno import Sample, runtime_metrics_enabled
from agent.dynosize import Size, parse_size
from agent.dynowatch import Target
from agent.errors import ConfigError
from agent.kubernetes import manifests
from agent.kubernetes.errors import translated
from agent.kubernetes.manifests import Manifest

GROUP, VERSION, PLURAL = "metrics.k8s.io", "v1beta1", "pods"
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}  # fmt: skip


def quantity(text: object) -> float:
    """A Kubernetes quantity ("123456Ki", "250m", "12345678n") as a number; ValueError if not."""
    match = _QUANTITY.match(str(text).strip())
    if match is None or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _seconds(stamp: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class PodMetricsSource:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        definitions: Callable[[], Mapping[str, Manifest]],
        pods: Callable[[], Iterable[Manifest]] = tuple,
    ) -> None:
        """``definitions()``: app -> its definition (agent/definition.py's JSON, env included),
        for each process type's size and the app's LOG_RUNTIME_METRICS; ``pods()``: the
        watched pods (KubernetesRuntime's cache), for the OOM kills."""
        self._custom: Any = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._definitions = definitions
        #: pod uid -> (timestamp of its last metrics, CPU seconds integrated so far).
        self._cpu: dict[str, tuple[float, float]] = {}
        self._pods = pods
        #: pod uid -> its containers' restarts, summed, when last looked at.
        self._restarts: dict[str, int] = {}

    async def sample(self) -> list[tuple[Target, Sample]]:
        with translated("list PodMetrics"):
            found: Manifest = await self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self._namespace, PLURAL, label_selector=manifests.SELECTOR
            )
        definitions = self._definitions()
        out: list[tuple[Target, Sample]] = []
        seen: set[str] = set()
        for item in found.get("items") or ():
            pair = self._one(item, definitions)
            if pair is not None:
                out.append(pair)
                seen.add(pair[1].incarnation)
        for gone in set(self._cpu) - seen:
            del self._cpu[gone]
        return out

    def _one(
        self, item: Manifest, definitions: Mapping[str, Manifest]
    ) -> tuple[Target, Sample] | None:
        key = manifests.key_of(item)
        meta = item.get("metadata") or {}
        name = meta.get("name")
        if key is None or not name:
            return None
        app, process = key
        try:
            memory = sum(quantity(c["usage"]["memory"]) for c in item.get("containers") or ())
            cores = sum(quantity(c["usage"]["cpu"]) for c in item.get("containers") or ())
        except (KeyError, TypeError, ValueError):
            return None  # a provider's partial answer: this pod waits for the next round
        definition = definitions.get(app) or {}
        size = _size(definition, process)
        uid = str(meta.get("uid") or name)
        at = _seconds(item.get("timestamp"))
        last_at, total = self._cpu.get(uid, (None, 0.0))
        if at is not None:
            if last_at is not None and at > last_at:
                total += cores * (at - last_at)
            self._cpu[uid] = (at, total)
        target = Target(
            app=app,
            process=process,
            dyno=str(name),
            size=size,
            runtime_metrics=runtime_metrics_enabled(definition.get("env") or {}),
            handle=uid,
        )
        return target, Sample(rss=int(memory), cache=0, swap=0, cpu_seconds=total, incarnation=uid)

    async def kill(self, target: Target, reason: str) -> bool:
        return False  # the container's memory limit: the kernel kills it first

    def killed(self) -> list[Target]:
        found: list[Target] = []
        seen: dict[str, int] = {}
        definitions = self._definitions()
        for pod in self._pods():
            key = manifests.key_of(pod)
            meta = pod.get("metadata") or {}
            if key is None or not meta.get("name"):
                continue
            uid = str(meta.get("uid") or meta["name"])
            statuses = (pod.get("status") or {}).get("containerStatuses") or ()
            restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
            oom = any(
                ((cs.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
                for cs in statuses
            )
            seen[uid] = restarts
            before = self._restarts.get(uid)
            if before is not None and restarts > before and oom:
                app, process = key
                found.append(
                    Target(
                        app=app,
                        process=process,
                        dyno=str(meta["name"]),
                        size=_size(definitions.get(app) or {}, process),
                        handle=uid,
                    )
                )
        self._restarts = seen
        return found


def _size(definition: Manifest, process: str) -> Size:
    raw = ((definition.get("processes") or {}).get(process) or {}).get("size")
    try:
        return parse_size(raw if isinstance(raw, str) else None)
    except ConfigError:  # checked when defined; an old definition keeps the default
        return parse_size(None)
