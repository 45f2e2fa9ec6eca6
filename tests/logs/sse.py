"""SSE for tests: kit.sse's parser with a bounded wait and the data decoded as JSON."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from kit.sse import Parser


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


class SSE:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.parser = Parser()

    @property
    def comments(self) -> int:
        return self.parser.comments

    async def next(self, timeout: float = 5.0) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                done = self.parser.feed(raw)
                if done is not None:
                    return Event(done.event, done.id, json.loads(done.data))

    async def take(self, n: int, timeout: float = 5.0) -> list[Event]:
        return [await self.next(timeout) for _ in range(n)]
