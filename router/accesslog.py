"""Heroku-style router log lines and the sink they go to.

A ``LogSink`` must not block: ``emit`` is called on the proxy's hot path.
The stderr sink writes straight away; the logs service's sink queues.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Protocol, TextIO


class LogSink(Protocol):
    def emit(self, app: str, line: str) -> None:
        """Take one router line for ``app``; never block, never raise."""


class StreamSink:
    """Router lines to a stream (stderr by default), ``app`` prefixed like ``heroku[router]``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr

    def emit(self, app: str, line: str) -> None:
        # A closed stderr must not take the proxy down.
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(f"slipway[router]: {line}\n")
