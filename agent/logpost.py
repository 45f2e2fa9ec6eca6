"""The platform's lines about an app, posted to the logs service (the agent on Kubernetes).

On Kubernetes the agent runs in its own pod, with no logs service in process, and
its R14/R15 and runtime-metrics lines belong in the app's stream as the platform's
(``slipway[web.x7k2q]``). The forward port cannot give them that source (a shipper
carries tenant output, so a ``dyno`` claim there stays an app line); so this sink
posts them to the logs service's ``POST /platform/lines`` with the agent's own
token, which the chart gives the logs service as its platform token.

``publish`` never blocks nor raises: it appends to a bounded queue, and a
background task posts what is queued every ``interval``. While the logs service
is unreachable lines wait (the oldest go first past ``capacity``, counted), and
the outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

#: Lines waiting while the logs service is away: R14 lines come every 20 s per dyno, so
#: this is minutes of a few hundred dynos over quota.
CAPACITY = 10_000
#: Lines per request: the logs service's own limit (logs/platform.py).
BATCH = 1000


class PlatformLogSink:
    """A ``ProcessLogSink`` posting to a logs service; ``run`` is its long-lived task."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        registry: CollectorRegistry,
        interval: float = 1.0,
        capacity: int = CAPACITY,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/") + "/platform/lines"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.interval = interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._queue: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.dropped = Counter(
            "slipway_agent_platform_lines_dropped",
            "Platform lines (R14/R15, runtime metrics) not delivered to the logs service, "
            "by reason: overflow while it was unreachable, or refused (4xx).",
            ["reason"],
            registry=registry,
        )
        self.sent = Counter(
            "slipway_agent_platform_lines_sent",
            "Platform lines the logs service accepted.",
            registry=registry,
        )

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped.labels("overflow").inc()
        self._queue.append(
            {"app": app, "source": source, "process": process, "text": text, "time": time}
        )

    async def run(self) -> None:
        failing = False
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.flush(session)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if not failing:
                        log.warning(
                            "platform lines not delivered; retrying",
                            extra={"url": self.url, "error": repr(exc), "queued": len(self._queue)},
                        )
                    failing = True
                    continue
                if failing:
                    log.info("platform lines delivered again", extra={"url": self.url})
                    failing = False

    async def flush(self, session: aiohttp.ClientSession) -> None:
        """Post everything queued, a batch at a time; a batch stays queued until accepted.

        Raises on a connection error or a 5xx (kept, retried next time); a 4xx is our
        bug or a wrong token, not an outage: that batch is dropped, counted and logged,
        so one bad line does not block every line after it.
        """
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                await self._post(session, batch)
            except BaseException:
                # Back in front, in order (if lines came meanwhile and the queue is full,
                # the newest give way: the outage's start is what people look for).
                self._queue.extendleft(reversed(batch))
                raise

    async def _post(self, session: aiohttp.ClientSession, batch: list[dict[str, Any]]) -> None:
        async with session.post(self.url, json={"lines": batch}, headers=self._headers) as resp:
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=await resp.text()
                )
            if resp.status >= 400:
                log.error(
                    "the logs service refused platform lines",
                    extra={"status": resp.status, "error": (await resp.text()).strip()},
                )
                self.dropped.labels("refused").inc(len(batch))
            else:
                self.sent.inc(len(batch))
