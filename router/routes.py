"""The route table: host -> app -> ready endpoints, swapped atomically.

The table is immutable; a new one replaces the old in a single assignment, so
a request resolves against one consistent version. The agent publishes the
wire form (``RouteTablePayload``) as a full snapshot; a static file carries
the same form.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NotRequired, TypedDict

from router.errors import RouteTableError


class AppState(StrEnum):
    ASLEEP = "asleep"
    WAKING = "waking"
    AWAKE = "awake"
    CRASHED = "crashed"


# Heroku's defaults: 30 s router timeout is per request; 60 s to bind is the boot limit.
DEFAULT_BOOT_TIMEOUT = 60.0
# Held requests per app while it wakes; past it, H11 (backlog too deep).
DEFAULT_MAX_HELD = 100


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    #: The dyno name in router log lines (``web.1``) or the pod name.
    dyno: str = "web.1"


@dataclass(frozen=True, slots=True)
class AppRoute:
    name: str
    hosts: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    state: AppState = AppState.AWAKE
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    max_held: int = DEFAULT_MAX_HELD
    #: Why the app is crashed (shown in the error page and the log line).
    reason: str = ""


class EndpointPayload(TypedDict):
    host: str
    port: int
    dyno: NotRequired[str]


class AppRoutePayload(TypedDict):
    hosts: list[str]
    endpoints: NotRequired[list[EndpointPayload]]
    state: NotRequired[str]
    boot_timeout: NotRequired[float]
    max_held: NotRequired[int]
    reason: NotRequired[str]


class RouteTablePayload(TypedDict):
    version: int
    apps: dict[str, AppRoutePayload]


def normalize_host(host: str) -> str:
    """Lower-case, without port or trailing dot: what a Host header names."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal, maybe with a port
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".")


@dataclass(frozen=True)
class RouteTable:
    version: int = 0
    apps: Mapping[str, AppRoute] = field(default_factory=dict)
    _exact: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: (".apps.example.com", app), longest suffix first so the most specific wins.
    _wildcards: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def build(cls, version: int, apps: Iterable[AppRoute]) -> RouteTable:
        by_name: dict[str, AppRoute] = {}
        exact: dict[str, str] = {}
        wildcards: list[tuple[str, str]] = []
        for app in apps:
            if app.name in by_name:
                raise RouteTableError(f"app {app.name!r} appears twice in the route table")
            by_name[app.name] = app
            for raw in app.hosts:
                host = normalize_host(raw)
                if host.startswith("*."):
                    suffix = host[1:]
                    if any(s == suffix for s, _ in wildcards):
                        raise RouteTableError(f"host {raw!r} is claimed by two apps")
                    wildcards.append((suffix, app.name))
                else:
                    if host in exact:
                        raise RouteTableError(
                            f"host {raw!r} is claimed by apps {exact[host]!r} and {app.name!r}"
                        )
                    exact[host] = app.name
        wildcards.sort(key=lambda item: len(item[0]), reverse=True)
        return cls(version, by_name, exact, tuple(wildcards))

    def resolve(self, host: str) -> AppRoute | None:
        """The app serving ``host`` (a raw Host header value), exact before wildcard."""
        name = normalize_host(host)
        app = self._exact.get(name)
        if app is None:
            for suffix, candidate in self._wildcards:
                if name.endswith(suffix) and len(name) > len(suffix):
                    app = candidate
                    break
            else:
                return None
        return self.apps[app]

    @classmethod
    def from_payload(cls, payload: RouteTablePayload) -> RouteTable:
        try:
            for name, entry in payload["apps"].items():
                hosts = entry["hosts"]
                if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
                    raise TypeError(f"app {name!r}: hosts must be a list of host names")
            apps = [
                AppRoute(
                    name=name,
                    hosts=tuple(entry["hosts"]),
                    endpoints=tuple(
                        Endpoint(e["host"], int(e["port"]), e.get("dyno", "web.1"))
                        for e in entry.get("endpoints", [])
                    ),
                    state=AppState(entry.get("state", AppState.AWAKE)),
                    boot_timeout=float(entry.get("boot_timeout", DEFAULT_BOOT_TIMEOUT)),
                    max_held=int(entry.get("max_held", DEFAULT_MAX_HELD)),
                    reason=entry.get("reason", ""),
                )
                for name, entry in payload["apps"].items()
            ]
            return cls.build(int(payload["version"]), apps)
        except (KeyError, TypeError, ValueError) as exc:
            raise RouteTableError(f"malformed route table: {exc!r}") from exc

    def to_payload(self) -> RouteTablePayload:
        return {
            "version": self.version,
            "apps": {
                app.name: {
                    "hosts": list(app.hosts),
                    "endpoints": [
                        {"host": e.host, "port": e.port, "dyno": e.dyno} for e in app.endpoints
                    ],
                    "state": str(app.state),
                    "boot_timeout": app.boot_timeout,
                    "max_held": app.max_held,
                    "reason": app.reason,
                }
                for app in self.apps.values()
            },
        }


def load_file(path: Path) -> RouteTable:
    """A static route table from JSON in the wire form."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RouteTableError(f"cannot read route table {path}: {exc}") from exc
    return RouteTable.from_payload(payload)


class Routes:
    """The router's current table; waiters learn of every swap.

    ``wait_for(app, ...)`` is how a held request learns its app has endpoints
    (or crashed): one mechanism for in-process and remote route feeds.
    """

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table or RouteTable()
        self._waiters: dict[str, list[tuple[asyncio.Future[AppRoute], frozenset[Endpoint]]]] = {}

    def replace(self, table: RouteTable) -> None:
        self.table = table
        for name in list(self._waiters):
            route = table.apps.get(name)
            if route is None:
                continue
            waiting = self._waiters[name]
            for fut, refused in list(waiting):
                if _usable(route, refused) and not fut.done():
                    fut.set_result(route)
                    waiting.remove((fut, refused))
            if not waiting:
                del self._waiters[name]

    def fail(self, app: str, reason: str) -> None:
        """Release everyone waiting for ``app`` with a crashed route (the wake failed)."""
        route = self.table.apps.get(app) or AppRoute(name=app)
        crashed = AppRoute(
            name=app,
            hosts=route.hosts,
            state=AppState.CRASHED,
            boot_timeout=route.boot_timeout,
            max_held=route.max_held,
            reason=reason,
        )
        for fut, _ in self._waiters.pop(app, []):
            if not fut.done():
                fut.set_result(crashed)

    async def wait_for(
        self, app: str, timeout: float, refused: frozenset[Endpoint] = frozenset()
    ) -> AppRoute:
        """The app's route once it has endpoints (other than ``refused``) or crashed.

        ``refused`` are endpoints that just refused a connection: a request
        racing a scale-down waits for the table to move past them.
        TimeoutError after ``timeout``.
        """
        route = self.table.apps.get(app)
        if route is not None and _usable(route, refused):
            return route
        fut: asyncio.Future[AppRoute] = asyncio.get_running_loop().create_future()
        entry = (fut, refused)
        self._waiters.setdefault(app, []).append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            waiters = self._waiters.get(app)
            if waiters and entry in waiters:
                waiters.remove(entry)
                if not waiters:
                    del self._waiters[app]


def _usable(route: AppRoute, refused: frozenset[Endpoint]) -> bool:
    if route.state is AppState.CRASHED:
        return True
    return any(e not in refused for e in route.endpoints)
