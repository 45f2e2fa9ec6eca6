"""The router's side of the agent's HTTP API: the route feed, activity reports, wakes.

``AgentClient`` is the router's ``Waker`` when the agent runs elsewhere. It
follows ``GET /v1/routes?after=VERSION`` (a long poll answered as soon as
the table changes) into ``Routes.replace``, and posts ``Activity.report``
with the version it serves every ``report_interval``, so the agent knows
when this router has stopped sending to an app it is putting to sleep.

While the agent is unreachable the router keeps serving its last table;
the feed retries with a capped backoff and says so in the log once.
The wire types are declared here (the router must not import the agent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import aiohttp

from kit.tasks import TaskSet
from kit.wire import ActivityPost, RouteTablePayload
from router.activity import Activity
from router.errors import AgentUnavailable, RouteTableError
from router.routes import Routes, RouteTable

log = logging.getLogger(__name__)

# Routers report about once a second (DESIGN); idleness is decided in minutes.
REPORT_INTERVAL = 1.0
# The agent holds a long poll this long; the client waits a little more before giving up.
FEED_WAIT = 25.0
# Retry backoff while the agent is unreachable: fast at first (a restart), then calm.
RETRY_MIN = 0.1
RETRY_MAX = 5.0
# A wake is one small POST; if the agent cannot take it in this long, held requests get H10.
WAKE_TIMEOUT = 5.0


class AgentClient:
    def __init__(
        self,
        url: str,
        *,
        routes: Routes,
        activity: Activity | None = None,
        name: str | None = None,
        report_interval: float = REPORT_INTERVAL,
        token: str | None = None,
        tasks: TaskSet | None = None,
    ) -> None:
        """``tasks``: the process's task set: a dead feed (a frozen table) or a dead report
        loop (apps put to sleep under live traffic) stops the process."""
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.routes = routes
        #: Set once the router exists (it owns the Activity); reports start then.
        self.activity = activity
        # Host and pid: each worker of a forked router reports on its own.
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.report_interval = report_interval
        self.synced = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks = TaskSet.of(tasks)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "AgentClient.start() first"
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), headers=self._headers
        )
        self._tasks.start("agent-feed", self._follow())
        self._tasks.start("agent-report", self._report_loop())

    async def stop(self) -> None:
        await self._tasks.stop()
        if self._session is not None:
            await self._session.close()

    # -- Waker ----------------------------------------------------------------------------

    async def wake(self, app: str) -> None:
        try:
            async with self.session.post(
                f"{self.url}/v1/apps/{app}/wake", timeout=aiohttp.ClientTimeout(WAKE_TIMEOUT)
            ) as resp:
                if resp.status != 202:
                    raise AgentUnavailable(f"agent answered {resp.status} to wake {app}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AgentUnavailable(f"cannot reach the agent to wake {app}: {exc!r}") from exc

    # -- the feed -------------------------------------------------------------------------

    async def fetch(self, after: int | None, wait: float = FEED_WAIT) -> RouteTable | None:
        """One poll: the table when it differs from ``after``; None if unchanged in time."""
        params = {} if after is None else {"after": str(after), "wait": str(wait)}
        try:
            async with self.session.get(
                f"{self.url}/v1/routes",
                params=params,
                timeout=aiohttp.ClientTimeout(total=wait + 10),
            ) as resp:
                if resp.status == 204:
                    return None
                if resp.status != 200:
                    raise AgentUnavailable(f"agent answered {resp.status} to the route feed")
                payload: RouteTablePayload = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AgentUnavailable(f"route feed from {self.url}: {exc!r}") from exc
        return RouteTable.from_payload(payload)

    async def _follow(self) -> None:
        delay = RETRY_MIN
        failing = False
        after: int | None = None
        while True:
            try:
                table = await self.fetch(after)
            except (AgentUnavailable, RouteTableError) as exc:
                if not failing:
                    log.warning(
                        "route feed failing; serving the last table", extra={"error": str(exc)}
                    )
                    failing = True
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            if failing:
                log.info("route feed back", extra={"url": self.url})
                failing, delay = False, RETRY_MIN
            if table is not None:
                self.routes.replace(table)
                after = table.version
                self.synced.set()

    # -- activity -------------------------------------------------------------------------

    def report(self) -> ActivityPost:
        loop = asyncio.get_running_loop()
        apps = self.activity.report(loop.time()) if self.activity is not None else {}
        return {"router": self.name, "version": self.routes.table.version, "apps": apps}

    async def send_report(self) -> None:
        try:
            async with self.session.post(
                f"{self.url}/v1/activity",
                json=self.report(),
                timeout=aiohttp.ClientTimeout(total=self.report_interval * 5),
            ) as resp:
                if resp.status != 204:
                    raise AgentUnavailable(
                        f"agent answered {resp.status} to a report: {await resp.text()}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AgentUnavailable(f"activity report to {self.url}: {exc!r}") from exc

    async def _report_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.report_interval)
            try:
                await self.send_report()
            except AgentUnavailable as exc:
                if not failing:
                    log.warning("activity reports failing", extra={"error": str(exc)})
                    failing = True
                continue
            if failing:
                log.info("activity reports back", extra={"url": self.url})
                failing = False
