"""What the request-chart endpoints read: ``RequestSource``, over the rollup or Prometheus."""

from __future__ import annotations

from typing import Protocol

from control.rollup.store import EventJson, PointJson, Rollup


class RequestSource(Protocol):
    #: Named in the API's answer ("rollup", "prometheus"), so a chart can say where from.
    name: str

    async def points(self, app: str, *, since: float, until: float, step: int) -> list[PointJson]:
        """One point per ``step`` seconds in ``[since, until]``."""

    async def events(self, app: str, *, since: float, until: float) -> list[EventJson]:
        """Sleeps, wakes (with ``seconds``) and crashes in ``[since, until]``."""


class RollupSource:
    name = "rollup"

    def __init__(self, rollup: Rollup) -> None:
        self.rollup = rollup

    async def points(self, app: str, *, since: float, until: float, step: int) -> list[PointJson]:
        return self.rollup.points(app, since=since, until=until, step=step)

    async def events(self, app: str, *, since: float, until: float) -> list[EventJson]:
        return self.rollup.events(app, since=since, until=until)
