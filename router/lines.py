"""Router lines to the logs service in another process (Kubernetes): the app's stream.

Under ``slipway up`` the logs service runs in the router's process and takes the lines
itself (it is a ``LogSink``). Elsewhere the router posts them to the logs service's
``POST /platform/lines`` (kit/logpost.py), as the agent posts its R14/R15 lines, with
the same token (the agent API's, which the chart gives the logs service as its platform
token). ``emit`` is an append to a bounded queue: a logs service that is down or slow
costs the oldest queued lines (``slipway_router_platform_lines_dropped_total``), never
a request's time. The lines still go to stderr (the pod's log) as well.
"""

from __future__ import annotations

import time

from kit.logpost import PlatformLogSink
from router.accesslog import LogSink


class PostedLines:
    """A ``LogSink`` queueing each line for the logs service, as the app's ``router`` lines."""

    def __init__(self, poster: PlatformLogSink) -> None:
        self.poster = poster

    def emit(self, app: str, line: str) -> None:
        self.poster.publish(app, "router", "router", line, time.time())


class Tee:
    """One line to several sinks; each ``emit`` is non-blocking already."""

    def __init__(self, *sinks: LogSink) -> None:
        self.sinks = sinks

    def emit(self, app: str, line: str) -> None:
        for sink in self.sinks:
            sink.emit(app, line)
