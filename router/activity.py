"""Per-app activity, kept in memory for the agent to read.

The hot path does two dict look-ups per request. Times are on the router's
loop clock; the report converts them to ``idle_for`` (seconds since the last
request) so an agent in another process can place them on its own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


@dataclass(slots=True)
class AppActivity:
    requests: int = 0
    in_flight: int = 0
    last_seen: float = 0.0


class ActivityReport(TypedDict):
    #: Requests counted since the router started (monotonic; diff two reports for a rate).
    requests: int
    in_flight: int
    #: Seconds since the last request arrived or finished, at report time.
    idle_for: float


class Activity:
    def __init__(self) -> None:
        self.apps: dict[str, AppActivity] = {}

    def begin(self, app: str, now: float) -> None:
        entry = self.apps.get(app)
        if entry is None:
            entry = self.apps[app] = AppActivity()
        entry.requests += 1
        entry.in_flight += 1
        entry.last_seen = now

    def end(self, app: str, now: float) -> None:
        entry = self.apps[app]
        entry.in_flight -= 1
        entry.last_seen = now

    def report(self, now: float) -> dict[str, ActivityReport]:
        return {
            app: {
                "requests": a.requests,
                "in_flight": a.in_flight,
                "idle_for": max(0.0, now - a.last_seen),
            }
            for app, a in self.apps.items()
        }
