"""The platform's lines about an app, posted to the logs service from another process.

On Kubernetes the logs service runs in its own pod. Two platform components have
lines that belong in an app's stream as the platform's: the agent (R14/R15 and
runtime metrics, source ``dyno``) and the routers (``at=info method=GET ...``,
source ``router``). The forward port cannot give them that source (a shipper
carries tenant output, so a platform claim there stays an app line); so this sink
posts them to the logs service's ``POST /platform/lines`` with the platform token
(the agent API's token in the chart, which the logs service takes as its own).

``publish`` never blocks nor raises, and costs an append: the router calls it on
its hot path. Lines go into a bounded queue (``capacity`` lines, ``max_bytes`` of
text); a background task (``run``, supervised by the caller's ``kit.tasks`` set)
posts what is queued every ``interval``, in batches the logs service accepts.
While the logs service is down or slow lines wait, the oldest going first past
either bound (counted, ``reason="overflow"``); failed posts back off, doubling up
to ``max_backoff``; the outage is logged once. Metrics are named for the
component: ``slipway_<component>_platform_lines_{sent,dropped,queued}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

#: Lines waiting while the logs service is away: R14 lines come every 20 s per dyno, a
#: router's a few hundred a second, so this is seconds to minutes of an outage.
CAPACITY = 10_000
#: Text waiting, over all queued lines: a router's lines carry request paths of up to
#: 8 KiB, and 10 000 of those must not take a router pod's memory.
MAX_BYTES = 8 * 1024 * 1024
#: Lines per request: the logs service's own limit (logs/platform.py MAX_LINES).
BATCH = 1000
#: Bytes of JSON per request, under the logs service's 2 MiB (logs/platform.py MAX_BODY).
BATCH_BYTES = 1024 * 1024
#: A line's text is cut here, as the logs service cuts it (logs/platform.py MAX_TEXT).
MAX_TEXT = 10_000


class PlatformLogSink:
    """A ``ProcessLogSink`` posting to a logs service; ``run`` is its long-lived task."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        registry: CollectorRegistry,
        component: str,
        interval: float = 1.0,
        capacity: int = CAPACITY,
        max_bytes: int = MAX_BYTES,
        timeout: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/") + "/platform/lines"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.interval = interval
        self.max_backoff = max(interval, max_backoff)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._queue: deque[dict[str, Any]] = deque()
        self._bytes = 0
        self.dropped = Counter(
            f"slipway_{component}_platform_lines_dropped",
            "Platform lines not delivered to the logs service, by reason: overflow (the "
            "oldest, while it was down or slow), or refused (4xx).",
            ["reason"],
            registry=registry,
        )
        self.sent = Counter(
            f"slipway_{component}_platform_lines_sent",
            "Platform lines the logs service accepted.",
            registry=registry,
        )
        queued = Gauge(
            f"slipway_{component}_platform_lines_queued",
            "Platform lines waiting to be posted to the logs service.",
            registry=registry,
        )
        queued.set_function(lambda: len(self._queue))

    @property
    def queued(self) -> int:
        """Lines waiting (a batch being posted is not among them)."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT]
        self._queue.append(
            {"app": app, "source": source, "process": process, "text": text, "time": time}
        )
        self._bytes += len(text)
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest lines past ``capacity`` or ``max_bytes``, counting them."""
        over = 0
        queue = self._queue
        while queue and (len(queue) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= len(queue.popleft()["text"])
            over += 1
        if over:
            self.dropped.labels("overflow").inc(over)

    async def run(self) -> None:
        failures = 0
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while True:
                await asyncio.sleep(min(self.interval * 2**failures, self.max_backoff))
                try:
                    await self.flush(session)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if not failures:
                        log.warning(
                            "platform lines not delivered; retrying",
                            extra={"url": self.url, "error": repr(exc), "queued": self.queued},
                        )
                    failures = min(failures + 1, 16)
                    continue
                if failures:
                    log.info("platform lines delivered again", extra={"url": self.url})
                    failures = 0

    async def drain(self, timeout: float = 2.0) -> None:
        """One last bounded flush, on the way out (a drained router's last lines)."""
        if not self._queue:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
                await self.flush(session)

    async def flush(self, session: aiohttp.ClientSession) -> None:
        """Post everything queued, a batch at a time; a batch stays queued until accepted.

        Raises on a connection error, a timeout or a 5xx (kept, retried next time); a
        4xx is our bug or a wrong token, not an outage: that batch is dropped, counted
        and logged, so one bad line does not block every line after it.
        """
        while self._queue:
            batch, body = self._take()
            try:
                await self._post(session, body, len(batch))
            except BaseException:
                # Back in front, in order; lines that came meanwhile stay behind them, and
                # past the bounds the oldest go, as they do in ``publish``.
                self._queue.extendleft(reversed(batch))
                self._bytes += sum(len(x["text"]) for x in batch)
                self._trim()
                raise

    def _take(self) -> tuple[list[dict[str, Any]], bytes]:
        """The next batch off the queue: at most BATCH lines and BATCH_BYTES of JSON."""
        batch: list[dict[str, Any]] = []
        parts: list[bytes] = []
        size = len(b'{"lines":[]}')
        queue = self._queue
        while queue and len(batch) < BATCH:
            part = json.dumps(queue[0], separators=(",", ":")).encode()
            if batch and size + len(part) + 1 > BATCH_BYTES:
                break
            line = queue.popleft()
            self._bytes -= len(line["text"])
            batch.append(line)
            parts.append(part)
            size += len(part) + 1
        return batch, b'{"lines":[' + b",".join(parts) + b"]}"

    async def _post(self, session: aiohttp.ClientSession, body: bytes, count: int) -> None:
        headers = {**self._headers, "Content-Type": "application/json"}
        async with session.post(self.url, data=body, headers=headers) as resp:
            if resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=await resp.text()
                )
            if resp.status >= 400:
                log.error(
                    "the logs service refused platform lines",
                    extra={"status": resp.status, "error": (await resp.text()).strip()},
                )
                self.dropped.labels("refused").inc(count)
            else:
                self.sent.inc(count)
