"""Per-app activity, kept in memory for the agent to read.

The hot path does two dict look-ups per request. Times are on the router's
loop clock; the report converts them to ``idle_for`` (seconds since the last
request) so an agent in another process can place them on its own clock.

In flight is also integrated over time at each change (a multiply and an add on
the entry, nothing allocated) into ``busy``, request-seconds since the router
started: the agent diffs two reports for the time-weighted average in flight
between them, so requests much shorter than its sampling are counted by how
long they ran, not by whether one happened to be in flight at a report.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.wire import ActivityReport


@dataclass(slots=True)
class AppActivity:
    requests: int = 0
    in_flight: int = 0
    last_seen: float = 0.0
    #: ``in_flight`` integrated over time (request-seconds) up to ``since``.
    busy: float = 0.0
    #: Loop time of the last change of ``in_flight``.
    since: float = 0.0


class Activity:
    def __init__(self) -> None:
        self.apps: dict[str, AppActivity] = {}

    def begin(self, app: str, now: float) -> None:
        entry = self.apps.get(app)
        if entry is None:
            entry = self.apps[app] = AppActivity(since=now)
        entry.busy += entry.in_flight * (now - entry.since)
        entry.since = now
        entry.requests += 1
        entry.in_flight += 1
        entry.last_seen = now

    def end(self, app: str, now: float) -> None:
        entry = self.apps[app]
        entry.busy += entry.in_flight * (now - entry.since)
        entry.since = now
        entry.in_flight -= 1
        entry.last_seen = now

    def forget(self, app: str) -> None:
        """A deleted app's entry goes; the caller waits until it has none in flight
        (``end`` needs the entry)."""
        self.apps.pop(app, None)

    def report(self, now: float) -> dict[str, ActivityReport]:
        return {
            app: {
                "requests": a.requests,
                "in_flight": a.in_flight,
                "idle_for": max(0.0, now - a.last_seen),
                "busy": a.busy + a.in_flight * (now - a.since),
            }
            for app, a in self.apps.items()
        }
