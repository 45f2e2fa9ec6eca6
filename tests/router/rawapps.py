"""Tiny raw-socket upstreams that misbehave on purpose, and record what they were sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class RawApp:
    """``mode``: "record" (answer ok to each read), "close" (close without answering),
    "close-second" (answer the first request on a connection, close on the second),
    "silent" (accept, never answer)."""

    mode: str
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0
    server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> RawApp:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while data := await reader.read(65536):
                self.received += data
                if self.mode == "close" or (self.mode == "close-second" and served == 1):
                    break
                if self.mode == "silent":
                    continue
                writer.write(OK)
                await writer.drain()
                served += 1
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
