"""Where every line enters: forward batches, the router's sink, in-process producers.

A line is appended to its app's ring (and so reaches live subscribers) and
written to the archive spool in the same synchronous step, so by the time a
forward chunk is acked its lines are both visible and on disk.
"""

from __future__ import annotations

import logging
import time as _time
from collections import defaultdict
from collections.abc import Callable

from logs.archive import Spool
from logs.forward import Batch
from logs.mapping import Target, resolve, text_of
from logs.metrics import LogsMetrics
from logs.model import LogLine, Source, valid_app
from logs.ring import Hub

log = logging.getLogger(__name__)

#: Fluent Bit's ``fluent_signal`` values (FLB_EVENT_TYPE_*) other than logs (0).
_SIGNALS = {1: "metrics", 2: "traces"}


class LogService:
    """Also the router's ``LogSink`` (``emit``), structurally: logs never imports router."""

    def __init__(
        self,
        *,
        hub: Hub,
        metrics: LogsMetrics,
        spool: Spool | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.spool = spool
        self.clock = clock
        self._received = {s: metrics.received.labels(s.value) for s in Source}

    def publish(
        self, app: str, source: str, process: str, text: str, time: float | None = None
    ) -> None:
        """One line from an in-process producer (LocalRuntime output, builds, releases).

        The agent's ``ProcessLogSink`` and the builds' sink, structurally: ``source`` is
        ``app``, ``router``, ``build`` or ``release``; never blocks, never raises.
        """
        try:
            self.append(app, Source(source), process, text, time)
        except ValueError:
            self.metrics.dropped.labels("bad_source").inc()
        except Exception:  # a producer's loop must survive anything here
            log.exception("published line failed", extra={"app": app})
            self.metrics.dropped.labels("error").inc()

    def emit(self, app: str, line: str) -> None:
        """The router's ``LogSink.emit``: no I/O beyond a buffered file append, never raises."""
        try:
            self.append(app, Source.ROUTER, "router", line)
        except Exception:  # the proxy's hot path must survive anything here
            log.exception("router line failed", extra={"app": app})
            self.metrics.dropped.labels("error").inc()

    def append(
        self, app: str, source: Source, process: str, text: str, time: float | None = None
    ) -> LogLine | None:
        """``publish`` that returns the line (None for an invalid app) and may raise."""
        if not valid_app(app):
            self.metrics.dropped.labels("unknown_app").inc()
            return None
        now = self.clock()
        line = self.hub.append(app, now if time is None else time, source, process, text)
        self._received[source].inc()
        # Nobody waits for an ack here, so no flush per line: the proxy's hot path pays a
        # buffered append, and the uploader flushes every tick (at most ~1 s of exposure).
        self._archive(app, [line], now, flush=False)
        return line

    def accept(self, batch: Batch) -> bool:
        """Take a forward batch; False means refused (spool full) and must not be acked."""
        if batch.signal != 0:
            self.metrics.signals_dropped.labels(_SIGNALS.get(batch.signal, "other")).inc()
            return True
        if batch.chunk is not None and self.spool is not None and not self.spool.has_room():
            self.metrics.dropped.labels("spool_full").inc(len(batch.entries))
            return False
        per_app: dict[str, list[LogLine]] = defaultdict(list)
        counts: dict[Source, int] = defaultdict(int)
        unknown = 0
        append = self.hub.append
        # Per batch, not per service: a tag is looked up once per frame, and nothing
        # outlives it (a cache across frames grows with every app that ever logged).
        targets: dict[str, Target | None] = {}
        for time, record in batch.entries:
            target = resolve(batch.tag, record, targets)
            if target is None:
                unknown += 1
                continue
            line = append(target.app, time, target.source, target.process, text_of(record))
            per_app[target.app].append(line)
            counts[target.source] += 1
            if target.claimed is not None:
                self.metrics.relabelled.labels(target.claimed.value).inc()
        if unknown:
            self.metrics.dropped.labels("unknown_app").inc(unknown)
        for source, n in counts.items():
            self._received[source].inc(n)
        now = self.clock()
        for app, lines in per_app.items():
            self._archive(app, lines, now)
        return True

    def _archive(self, app: str, lines: list[LogLine], now: float, *, flush: bool = True) -> None:
        if self.spool is None:
            return
        if not self.spool.has_room():
            self.metrics.dropped.labels("spool_full").inc(len(lines))
            return
        self.spool.append(app, lines, now, flush=flush)
        self.metrics.spool_bytes.set(self.spool.bytes)
