"""A one-off process's output as it comes, for whoever started it.

A person at ``slipway run`` wants each line as it is printed and the exit
code; the release phase's lines go to the app's log stream (source
``release``) and a following ``builds:create`` as they are printed.
The call that runs it crosses several seams (control's ``ReleaseTarget``, the
agent, its ``Runtime``), none of which should change shape for one watcher,
so the watcher rides the call's context: whoever runs a one-off in this task
sets ``WATCHER``, and the code that reads the process's output
(agent/once.py) tells it. A one-off that runs elsewhere (over the agent's HTTP
API, a Kubernetes Job) reports nothing here: the caller gets the tail at the
end instead, which it can tell by ``Watcher.seen`` staying 0.
"""

from __future__ import annotations

import codecs
import contextvars
import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Watcher:
    """Receives a one-off's output chunks and, at the end, its exit code."""

    #: Called with each chunk of combined stdout and stderr, in order.
    on_output: Callable[[bytes], None]
    #: The dyno name to run as (Heroku's ``run.1234``, its DYNO), if the caller chose one.
    name: str = ""
    #: The exit code, once known here (None: it ran elsewhere, or was killed).
    code: int | None = None
    #: Bytes reported through ``on_output``.
    seen: int = 0
    #: The dyno name it ran as (``run.3``), once known here.
    dyno: str = field(default="")

    def output(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        self.on_output(chunk)


#: A one-off's name as a caller may choose it (Heroku's ``run.1234``): it becomes the
#: process's DYNO and its log lines' process, so nothing else.
DYNO_NAME = re.compile(r"^run\.[0-9]{1,9}$")


#: The watcher of the one-off the current task runs, if anyone watches it.
WATCHER: contextvars.ContextVar[Watcher | None] = contextvars.ContextVar(
    "slipway_oneoff_watcher", default=None
)


class Lines:
    """Output chunks to whole lines, for a log stream (which is line by line)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        text = self._partial + self._decoder.decode(chunk)
        *whole, self._partial = text.split("\n")
        for line in whole:
            self._emit(line)

    def flush(self) -> None:
        """The last line, if the output did not end with a newline."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self._emit(rest)
