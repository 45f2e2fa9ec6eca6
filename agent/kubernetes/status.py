"""Pure: the watched Deployments, Pods and EndpointSlices -> one ProcessStatus per process type.

Readiness comes from EndpointSlices (what the router connects to is exactly
what the endpoint controller published); Pods add what slices cannot say:
a container stuck in CrashLoopBackOff or ImagePullBackOff. The Deployment adds what
neither can: pods that are never created (a ResourceQuota exceeded, a Pod Security
violation), which its ReplicaFailure condition reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
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


class Bucket:
    """The watched objects of one resource, by name and by (app, process).

    The second index makes a status O(objects of that process), not O(cluster):
    an agent with thousands of sleeping review apps recomputes one app per event.
    """

    def __init__(self) -> None:
        self.by_name: dict[str, Manifest] = {}
        self.by_key: dict[Key, dict[str, Manifest]] = {}

    def put(self, obj: Manifest) -> set[Key]:
        """Store ``obj``; returns the keys whose status may have changed."""
        name = str(obj["metadata"]["name"])
        touched = self.delete(name)
        self.by_name[name] = obj
        key = key_of(obj)
        if key is not None:
            self.by_key.setdefault(key, {})[name] = obj
            touched.add(key)
        return touched

    def delete(self, name: str) -> set[Key]:
        old = self.by_name.pop(name, None)
        key = key_of(old) if old is not None else None
        if key is None:
            return set()
        members = self.by_key[key]
        del members[name]
        if not members:
            del self.by_key[key]
        return {key}

    def reset(self, items: Iterable[Manifest]) -> set[Key]:
        touched = set(self.by_key)
        self.by_name.clear()
        self.by_key.clear()
        for obj in items:
            touched |= self.put(obj)
        return touched

    def of(self, key: Key) -> list[Manifest]:
        return list(self.by_key.get(key, {}).values())


@dataclass
class Cache:
    """The last listed/watched state of the three resources."""

    deployments: Bucket = field(default_factory=Bucket)
    pods: Bucket = field(default_factory=Bucket)
    slices: Bucket = field(default_factory=Bucket)

    def keys(self) -> set[Key]:
        return set(self.deployments.by_key) | set(self.pods.by_key) | set(self.slices.by_key)


def _crash_reason(pod: Manifest) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in CRASH_REASONS:
            message = waiting.get("message")
            return f"{reason}: {message}" if message else str(reason)
    return ""


def replica_failure(deployment: Manifest | None) -> str:
    """Why the Deployment's pods cannot be created ("FailedCreate: ... exceeded quota ..."),
    from its ReplicaFailure condition; empty when they can. A wake would otherwise wait for
    pods that never come and end in a boot timeout that names nothing."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or ():
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            reason = condition.get("reason") or "ReplicaFailure"
            message = condition.get("message")
            return f"{reason}: {message}" if message else str(reason)
    return ""


def _restarts(pod: Manifest) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(cs.get("restartCount") or 0) for cs in statuses)


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


def _start_time(pod: dict[str, Any]) -> float | None:
    """The pod's ``status.startTime`` (RFC 3339, UTC) as epoch seconds; None if absent."""
    raw = (pod.get("status") or {}).get("startTime")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_of(cache: Cache, key: Key) -> ProcessStatus:
    app, process = key
    deployment = next(iter(cache.deployments.of(key)), None)
    desired = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    pods = sorted(cache.pods.of(key), key=lambda p: str(p["metadata"]["name"]))
    endpoints = _endpoints(cache.slices.of(key))
    instances: list[Instance] = []
    for pod in pods:
        name = str(pod["metadata"]["name"])
        reason = _crash_reason(pod)
        restarts = _restarts(pod)
        started = _start_time(pod)
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
                    restarts=restarts,
                    started_at=started,
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
                    restarts=restarts,
                    started_at=started,
                )
            )
    # Endpoints whose pod we have not seen yet (the pod watch lags): the slice is the truth.
    for name, (host, port, ready) in sorted(endpoints.items()):
        instances.append(
            Instance(name, host, port, ready=ready, reason="" if ready else "not ready")
        )
    # Fewer pods than asked for, and the cluster says why no more will come: a crash, as a
    # CrashLoopBackOff is, so the wake ends now with that reason.
    failure = replica_failure(deployment)
    if failure and desired > len(instances) and deployment is not None:
        instances.append(
            Instance(
                str(deployment["metadata"]["name"]), None, None, ready=False, crashed=True,
                reason=failure,
            )
        )  # fmt: skip
    return ProcessStatus(app=app, process=process, desired=desired, instances=tuple(instances))
