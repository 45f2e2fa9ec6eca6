"""One log line as the service keeps it, and the small vocabulary around it."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import NamedTuple, TypedDict


class Source(enum.StrEnum):
    APP = "app"
    ROUTER = "router"
    BUILD = "build"
    RELEASE = "release"
    #: The platform's lines about an app's process: R14/R15, runtime metrics (agent/dynowatch.py).
    DYNO = "dyno"


#: App names are S3 key parts and URL path parts; the control plane uses the same rule.
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def valid_app(name: str) -> bool:
    return APP_NAME.fullmatch(name) is not None


class LogLine(NamedTuple):
    """A line of one app's stream; ``seq`` is the app's sequence number (the SSE id).

    A NamedTuple, not a frozen dataclass: one is made per line on the ingest path,
    and a tuple is built in C where a frozen dataclass runs ``object.__setattr__`` per field.
    """

    seq: int
    time: float
    source: Source
    #: ``web.1`` for app lines; ``router``, ``build``, ``release`` for the others.
    process: str
    text: str

    def to_wire(self, app: str) -> WireLine:
        return {
            "app": app,
            "seq": self.seq,
            "time": self.time,
            "source": self.source.value,
            "process": self.process,
            "text": self.text,
        }


class WireLine(TypedDict):
    """A line in JSON: SSE data, archive NDJSON."""

    app: str
    seq: int
    time: float
    source: str
    process: str
    text: str


def heroku_format(line: WireLine) -> str:
    """``2026-11-23T10:00:00.123456+00:00 app[web.1]: message``, Heroku's ``logs`` format.

    Router, build and release lines show as ``slipway[router]`` etc., as Heroku shows
    ``heroku[router]``.
    """
    stamp = dt.datetime.fromtimestamp(line["time"], dt.UTC).isoformat(timespec="microseconds")
    who = "app" if line["source"] == Source.APP.value else "slipway"
    return f"{stamp} {who}[{line['process']}]: {line['text']}"
