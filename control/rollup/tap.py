"""What feeds the rollup under ``slipway up``: router lines and route-table state changes.

``RouterLineTap`` is a router ``LogSink``: it reads the fields the router writes
for every request (router/accesslog.py: ``connect=``, ``service=``, ``status=``,
and ``code=`` on errors), so the rollup needs no second hook in the proxy's hot
path and sees exactly what the logs show. ``TableWatcher`` subscribes to the
agent's route table and turns an app's state changes into events: waking ->
awake is a wake (with its time), awake -> asleep a sleep, -> crashed a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from control.rollup.store import Rollup
from kit.wire import RouteTablePayload

Clock = Callable[[], float]


def parse_router_line(line: str) -> tuple[int, float, str] | None:
    """(status, connect + service ms, H-code or "") from a router line; None if not one.

    The request's own fields (path, host, fwd) come before ``connect=``; everything from
    the last `` connect=`` on is the router's numbers in a fixed order
    (``connect=Nms service=Nms status=N ...``), so a path cannot forge them. Read by
    position, not parsed as logfmt: this runs once per request on the router's loop.
    """
    at = line.rfind(" connect=")
    if at < 0:
        return None
    parts = line[at + 9 :].split(" ", 3)
    if len(parts) < 3:
        return None
    connect, service, status = parts[0], parts[1], parts[2]
    if not (connect.endswith("ms") and service.startswith("service=") and service.endswith("ms")):
        return None
    if not status.startswith("status="):
        return None
    try:
        ms = float(connect[:-2]) + float(service[8:-2])
        code = int(status[7:])
    except ValueError:
        return None
    if not 0 <= ms < 1e9:  # also NaN
        return None
    error = ""
    if line.startswith("at=error code="):
        error = line[14 : line.find(" ", 14)]
    return code, ms, error


class RouterLineTap:
    """A router ``LogSink`` that counts each line into the rollup; never blocks, never raises."""

    def __init__(self, rollup: Rollup, *, clock: Clock = time.time) -> None:
        self.rollup = rollup
        self._clock = clock

    def emit(self, app: str, line: str) -> None:
        parsed = parse_router_line(line)
        if parsed is None:
            return
        status, ms, code = parsed
        self.rollup.request(app, now=self._clock(), status=status, ms=ms, code=code)


class TableWatcher:
    """A route-table subscriber (``Agent.subscribe``) that records sleeps, wakes and crashes."""

    def __init__(self, rollup: Rollup, *, clock: Clock = time.time) -> None:
        self.rollup = rollup
        self._clock = clock
        self._states: dict[str, str] = {}
        self._waking_since: dict[str, float] = {}

    def __call__(self, table: RouteTablePayload) -> None:
        now = self._clock()
        seen: dict[str, str] = {}
        for app, route in table["apps"].items():
            state = route.get("state", "awake")
            seen[app] = state
            before = self._states.get(app)
            if before is None or before == state:
                continue
            if state == "waking":
                self._waking_since[app] = now
            elif state == "awake" and before == "waking":
                since = self._waking_since.pop(app, now)
                self.rollup.wake(app, now=now, seconds=now - since)
            elif state == "asleep" and before in ("awake", "waking"):
                self.rollup.event(app, now=now, kind="sleep")
            elif state == "crashed":
                self.rollup.event(app, now=now, kind="crash", detail=route.get("reason", ""))
        self._states = seen
