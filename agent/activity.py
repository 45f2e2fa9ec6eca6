"""Activity reports from every router, merged per app (pure; the caller passes ``now``).

Each router posts, about every second, its per-app counts plus the route
table version it is serving. Reports are placed on the agent's clock when
they arrive (``idle_for`` is relative), so routers need no clock in common
with the agent. A router that stops reporting for ``ttl`` no longer counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from agent.policy import Seen


class AppActivityWire(TypedDict):
    """One app in a router's report: the same shape as ``router.activity.ActivityReport``."""

    requests: int
    in_flight: int
    idle_for: float


class ActivityPost(TypedDict):
    """``POST /v1/activity``: what one router saw, and which route table it serves."""

    router: str
    version: int
    apps: dict[str, AppActivityWire]


@dataclass(slots=True)
class _RouterReport:
    received: float
    version: int
    apps: dict[str, AppActivityWire]


@dataclass
class Reports:
    ttl: float
    _routers: dict[str, _RouterReport] = field(default_factory=dict)
    #: app -> when any router last saw a request for it; outlives the router that reported it.
    _last_seen: dict[str, float] = field(default_factory=dict)

    def add(self, post: ActivityPost, now: float) -> None:
        self._routers[post["router"]] = _RouterReport(now, post["version"], post["apps"])
        for app, entry in post["apps"].items():
            last = now if entry["in_flight"] > 0 else now - entry["idle_for"]
            if last > self._last_seen.get(app, float("-inf")):
                self._last_seen[app] = last

    def prune(self, now: float) -> list[str]:
        """Forget routers silent for ``ttl``; their names."""
        gone = [name for name, r in self._routers.items() if now - r.received > self.ttl]
        for name in gone:
            del self._routers[name]
        return gone

    def routers(self) -> list[str]:
        return sorted(self._routers)

    def seen(self, app: str) -> Seen:
        in_flight = sum(r.apps[app]["in_flight"] for r in self._routers.values() if app in r.apps)
        return Seen(in_flight=in_flight, last_seen=self._last_seen.get(app))

    def drained(self, app: str, version: int) -> bool:
        """Every live router serves ``version`` or later and has nothing in flight for ``app``.

        After that no router can send the app's old endpoints a new request,
        so its processes may stop without losing one.
        """
        return all(
            r.version >= version and (app not in r.apps or r.apps[app]["in_flight"] == 0)
            for r in self._routers.values()
        )


def parse_post(data: object) -> ActivityPost:
    """Check a decoded ``POST /v1/activity`` body; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with router, version and apps")
    router, version, apps = data.get("router"), data.get("version"), data.get("apps")
    if not isinstance(router, str) or not router:
        raise ValueError("router must be a non-empty string naming the router")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("version must be the route table version the router serves")
    if not isinstance(apps, dict):
        raise ValueError("apps must be an object of app name -> activity")
    checked: dict[str, AppActivityWire] = {}
    for app, entry in apps.items():
        if not isinstance(entry, dict):
            raise ValueError(f"apps.{app} must be an object")
        requests, in_flight, idle_for = (
            entry.get("requests"),
            entry.get("in_flight"),
            entry.get("idle_for"),
        )
        if not isinstance(requests, int) or not isinstance(in_flight, int):
            raise ValueError(f"apps.{app}: requests and in_flight must be whole numbers >= 0")
        if not _count(requests) or not _count(in_flight):
            raise ValueError(f"apps.{app}: requests and in_flight must be whole numbers >= 0")
        if not isinstance(idle_for, int | float) or isinstance(idle_for, bool) or idle_for < 0:
            raise ValueError(f"apps.{app}: idle_for must be seconds >= 0")
        checked[app] = {"requests": requests, "in_flight": in_flight, "idle_for": float(idle_for)}
    return {"router": router, "version": version, "apps": checked}


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
