"""Reading Server-Sent Events: one parser for every client of an SSE stream.

The logs CLI, the CLI following a build's output and the tests all read the
logs service's stream. The parser is fed one line at a time (without its
line ending) and hands back an event when a blank line ends one, so it
serves a blocking ``http.client`` response and an aiohttp stream alike.
Comments (``: heartbeat``) are counted, not returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    id: str | None
    data: str


@dataclass
class Parser:
    comments: int = 0
    _event: str = "message"
    _id: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, raw: bytes | str) -> Event | None:
        """Take one line; the event it completes, if any."""
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            done = Event(self._event, self._id, "\n".join(self._data)) if self._data else None
            self._event, self._id, self._data = "message", None, []
            return done
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        return None
