"""Pure: the watched Deployments, Pods and EndpointSlices -> one ProcessStatus per process type.

Readiness comes from EndpointSlices (what the router connects to is exactly
what the endpoint controller published); Pods add what slices cannot say:
a container stuck in CrashLoopBackOff or ImagePullBackOff.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.kubernetes.manifests import Manifest, key_of
from agent.runtime import Instance, ProcessStatus

#: Waiting reasons that will not fix themselves: surface them as crashed.
CRASH_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

Key = tuple[str, str]


@dataclass
class Cache:
    """The last listed/watched state of the three resources, by object name."""

    deployments: dict[str, Manifest] = field(default_factory=dict)
    pods: dict[str, Manifest] = field(default_factory=dict)
    slices: dict[str, Manifest] = field(default_factory=dict)

    def keys(self) -> set[Key]:
        found: set[Key] = set()
        for bucket in (self.deployments, self.pods, self.slices):
            for obj in bucket.values():
                key = key_of(obj)
                if key is not None:
                    found.add(key)
        return found


def _crash_reason(pod: Manifest) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in CRASH_REASONS:
            message = waiting.get("message")
            return f"{reason}: {message}" if message else str(reason)
    return ""


def _endpoints(slices: Iterable[Manifest]) -> dict[str, tuple[str, int, bool]]:
    """target pod name (or address) -> (address, port, ready) over the slices of one Service."""
    found: dict[str, tuple[str, int, bool]] = {}
    for sl in slices:
        ports = sl.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == "http"), None)
        if port is None and ports:
            port = ports[0].get("port")
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            addresses = ep.get("addresses") or []
            if not addresses:
                continue
            conditions: dict[str, Any] = ep.get("conditions") or {}
            # discovery.k8s.io/v1: a nil "ready" means unknown and is read as ready.
            ready = conditions.get("ready") is not False and not conditions.get("terminating")
            target = (ep.get("targetRef") or {}).get("name") or addresses[0]
            found[str(target)] = (str(addresses[0]), int(port), bool(ready))
    return found


def status_of(cache: Cache, key: Key) -> ProcessStatus:
    app, process = key
    deployment = next((d for d in cache.deployments.values() if key_of(d) == key), None)
    desired = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    pods = sorted(
        (p for p in cache.pods.values() if key_of(p) == key),
        key=lambda p: str(p["metadata"]["name"]),
    )
    endpoints = _endpoints(s for s in cache.slices.values() if key_of(s) == key)
    instances: list[Instance] = []
    for pod in pods:
        name = str(pod["metadata"]["name"])
        reason = _crash_reason(pod)
        ep = endpoints.pop(name, None)
        if ep is not None:
            host, port, ready = ep
            instances.append(
                Instance(
                    name,
                    host,
                    port,
                    ready=ready and not reason,
                    crashed=bool(reason),
                    reason=reason or ("" if ready else "not ready"),
                )
            )
        else:
            pod_ip = (pod.get("status") or {}).get("podIP")
            instances.append(
                Instance(
                    name,
                    pod_ip,
                    None,
                    ready=False,
                    crashed=bool(reason),
                    reason=reason or "no endpoint yet",
                )
            )
    # Endpoints whose pod we have not seen yet (the pod watch lags): the slice is the truth.
    for name, (host, port, ready) in sorted(endpoints.items()):
        instances.append(
            Instance(name, host, port, ready=ready, reason="" if ready else "not ready")
        )
    return ProcessStatus(app=app, process=process, desired=desired, instances=tuple(instances))
