"""Where app processes' output goes: the ``ProcessLogSink`` seam and the console sink.

LocalRuntime hands over each line as it is read. The logs service
implements the same ``publish`` method (structurally); until it runs, the
console sink prints ``hello[web.1]: line`` like ``heroku local`` does.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Protocol, TextIO


class ProcessLogSink(Protocol):
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        """One line (no newline) of ``app``'s ``process`` (``web.1``); never block, never raise.

        ``source`` is ``app`` for a process's own output; ``time`` is wall-clock seconds.
        """


class ConsoleSink:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        # A closed console must not take the runtime down.
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(f"{app}[{process}]: {text}\n")
            self._stream.flush()
