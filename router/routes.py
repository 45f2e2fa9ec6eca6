"""The route table: host -> app -> ready endpoints, swapped atomically.

The table is immutable; a new one replaces the old in a single assignment, so
a request resolves against one consistent version. The agent publishes the
wire form (``RouteTablePayload``) as a full snapshot; a static file carries
the same form.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeGuard

from kit.wire import (
    DEFAULT_BOOT_TIMEOUT,
    DEFAULT_MAX_HELD,
    RouteTablePayload,
)
from router.errors import RouteTableError


class AppState(StrEnum):
    ASLEEP = "asleep"
    WAKING = "waking"
    AWAKE = "awake"
    CRASHED = "crashed"


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
    #: Maintenance mode: every request gets H80, none reaches (or wakes) the app.
    maintenance: bool = False


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
    def from_payload(cls, payload: object) -> RouteTable:
        """A table from its wire form (``RouteTablePayload``), every field checked first.

        The payload comes from a file or the network, so it is read as plain
        JSON and checked before any typed object is built: a compiled router
        enforces annotations at run time, and the error must say what to fix.
        """
        if not isinstance(payload, dict):
            raise _malformed("the table must be a JSON object")
        version = payload.get("version")
        if not _is_int(version):
            raise _malformed("version must be an integer")
        apps = payload.get("apps")
        if not isinstance(apps, dict):
            raise _malformed("apps must be an object of app name to route")
        return cls.build(version, [_app_route(name, entry) for name, entry in apps.items()])

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
                    "maintenance": app.maintenance,
                }
                for app in self.apps.values()
            },
        }


def _malformed(reason: str) -> RouteTableError:
    return RouteTableError(f"malformed route table: {reason}")


def _is_int(value: object) -> TypeGuard[int]:
    """An integer, and not a bool (JSON's true is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _app_route(name: str, entry: object) -> AppRoute:
    """One app of a wire-form table, checked field by field (see ``AppRoutePayload``)."""
    if not isinstance(entry, dict):
        raise _malformed(f"app {name!r} must be an object")
    hosts = entry.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise _malformed(f"app {name!r}: hosts must be a list of host names")
    endpoints = entry.get("endpoints", [])
    if not isinstance(endpoints, list):
        raise _malformed(f"app {name!r}: endpoints must be a list")
    state = entry.get("state", AppState.AWAKE.value)
    if state not in _STATES:
        raise _malformed(f"app {name!r}: state must be one of {', '.join(_STATES)}")
    boot_timeout = entry.get("boot_timeout", DEFAULT_BOOT_TIMEOUT)
    if not isinstance(boot_timeout, int | float) or isinstance(boot_timeout, bool):
        raise _malformed(f"app {name!r}: boot_timeout must be a number of seconds")
    if not 0 <= boot_timeout < float("inf"):
        raise _malformed(f"app {name!r}: boot_timeout must be 0 or more, and finite")
    max_held = entry.get("max_held", DEFAULT_MAX_HELD)
    if not _is_int(max_held) or max_held < 0:
        raise _malformed(f"app {name!r}: max_held must be an integer, 0 or more")
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        raise _malformed(f"app {name!r}: reason must be a string")
    maintenance = entry.get("maintenance", False)
    if not isinstance(maintenance, bool):
        raise _malformed(f"app {name!r}: maintenance must be true or false")
    return AppRoute(
        name=name,
        hosts=tuple(hosts),
        endpoints=tuple(_endpoint(name, e) for e in endpoints),
        state=AppState(state),
        boot_timeout=float(boot_timeout),
        max_held=max_held,
        reason=reason,
        maintenance=maintenance,
    )


def _endpoint(app: str, entry: object) -> Endpoint:
    if not isinstance(entry, dict):
        raise _malformed(f"app {app!r}: each endpoint must be an object")
    host, port, dyno = entry.get("host"), entry.get("port"), entry.get("dyno", "web.1")
    if not isinstance(host, str) or not host:
        raise _malformed(f"app {app!r}: an endpoint's host must be a host name or address")
    if not _is_int(port) or not 0 < port < 65536:
        raise _malformed(f"app {app!r}: an endpoint's port must be an integer from 1 to 65535")
    if not isinstance(dyno, str):
        raise _malformed(f"app {app!r}: an endpoint's dyno must be a string")
    return Endpoint(host, port, dyno)


_STATES = tuple(s.value for s in AppState)


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
    ``watch(fn)``: ``fn(old, new)`` after every swap (the router forgets the
    series of apps gone from the table), so a swap costs what it costs, never a request.
    """

    def __init__(self, table: RouteTable | None = None) -> None:
        self.table = table or RouteTable()
        #: A table was given or fed: until then every host would be a 404, so not ready.
        self.synced = table is not None
        self._waiters: dict[str, list[tuple[asyncio.Future[AppRoute], frozenset[Endpoint]]]] = {}
        self._watchers: list[Callable[[RouteTable, RouteTable], None]] = []

    def watch(self, watcher: Callable[[RouteTable, RouteTable], None]) -> None:
        """Call ``watcher(old, new)`` after each ``replace``."""
        self._watchers.append(watcher)

    def replace(self, table: RouteTable) -> None:
        old = self.table
        self.table, self.synced = table, True
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
        for watcher in self._watchers:
            watcher(old, table)

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
            maintenance=route.maintenance,
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
