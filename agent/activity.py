"""Activity reports from every router, merged per app (pure; the caller passes ``now``).

Each router posts, about every second, its per-app counts plus the route
table version it is serving. Reports are placed on the agent's clock when
they arrive (``idle_for`` is relative), so routers need no clock in common
with the agent. A router that stops reporting for ``ttl`` no longer counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.policy import Seen
from kit.wire import ActivityPost, ActivityReport


@dataclass(slots=True)
class _RouterReport:
    received: float
    version: int
    apps: dict[str, ActivityReport]


@dataclass
class Reports:
    ttl: float
    _routers: dict[str, _RouterReport] = field(default_factory=dict)
    #: app -> when any router last saw a request for it; outlives the router that reported it.
    _last_seen: dict[str, float] = field(default_factory=dict)
    #: (router, app) -> (report received, its ``busy``, the load then) at the last ``load``.
    _sampled: dict[tuple[str, str], tuple[float, float | None, float]] = field(default_factory=dict)

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
        if gone:
            self._sampled = {k: v for k, v in self._sampled.items() if k[0] in self._routers}
        return gone

    def routers(self) -> list[str]:
        return sorted(self._routers)

    def seen(self, app: str) -> Seen:
        in_flight = sum(r.apps[app]["in_flight"] for r in self._routers.values() if app in r.apps)
        return Seen(in_flight=in_flight, last_seen=self._last_seen.get(app))

    def load(self, app: str) -> float:
        """Requests in flight for ``app`` over every live router: the autoscaler's sample,
        taken once per tick (it keeps where each router's count was).

        Each router's is the time-weighted average since the previous sample: the
        growth of its ``busy`` (request-seconds) over the time between the reports
        read, on this clock. Until a router has reported twice (or after it
        restarted, or when it sends no ``busy``) its count at report time, and so
        when the last sample is older than ``ttl`` (the app slept meanwhile: an
        average over the whole sleep would be one sample's worth of nothing); with
        no new report since the last sample, the load found then.
        """
        total = 0.0
        for name, report in self._routers.items():
            entry = report.apps.get(app)
            if entry is None:
                continue
            busy = entry.get("busy")
            received, busy_before, load_before = self._sampled.get((name, app), (0.0, None, 0.0))
            if busy is not None and busy_before is not None:
                if report.received == received:
                    load = load_before
                elif received < report.received <= received + self.ttl and busy >= busy_before:
                    load = (busy - busy_before) / (report.received - received)
                else:
                    load = float(entry["in_flight"])
            else:
                load = float(entry["in_flight"])
            self._sampled[name, app] = (report.received, busy, load)
            total += load
        return total

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
    checked: dict[str, ActivityReport] = {}
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
        if "busy" in entry:
            busy = entry["busy"]
            # NaN and infinity fail the comparison too.
            if isinstance(busy, bool) or not isinstance(busy, int | float) or not 0 <= busy < 1e15:
                raise ValueError(f"apps.{app}: busy must be request-seconds >= 0")
            checked[app]["busy"] = float(busy)
    return {"router": router, "version": version, "apps": checked}


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
