"""Heroku-style router log lines and the sink they go to.

A ``LogSink`` must not block: ``emit`` is called on the proxy's hot path.
The stream sink batches the lines of one loop iteration into one write.
Every line, whichever sink it goes to (this process's log, the app's log
stream), shows the path with its secret query values masked (kit/redact.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Protocol, TextIO

from kit.logfmt import quote
from kit.redact import mask_path


class LogSink(Protocol):
    def emit(self, app: str, line: str) -> None:
        """Take one router line for ``app``; never block, never raise."""


def router_line(
    *,
    error_code: str,
    error_desc: str,
    method: str,
    path: str,
    host: str,
    app: str,
    request_id: str,
    fwd: str,
    dyno: str,
    connect_ms: int,
    service_ms: int,
    status: int,
    bytes_out: int,
    protocol: str,
    wake_ms: int | None,
) -> str:
    """One line in Heroku's router format, plus ``app=`` and (when it waited) ``wake=``.

    ``path`` is the raw request target: ``?access_token=`` and the like are masked here.
    """
    shown = mask_path(path) if path else "/"
    head = f"at=error code={error_code} desc={quote(error_desc)} " if error_code else "at=info "
    line = (
        f"{head}method={method} path={_always_quoted(shown)} host={quote(host)} app={app} "
        f"request_id={request_id} fwd={_always_quoted(fwd)} dyno={dyno} connect={connect_ms}ms "
        f"service={service_ms}ms status={status} bytes={bytes_out} protocol={protocol}"
    )
    if wake_ms is not None:
        line += f" wake={wake_ms}ms"
    return line


def _always_quoted(value: str) -> str:
    """Heroku quotes ``path`` and ``fwd`` even when they need no quotes."""
    text = quote(value)
    return text if text.startswith('"') else f'"{text}"'


class StreamSink:
    """Router lines to a stream (stderr by default) as ``slipway[router]: ...``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._pending: list[str] = []

    def emit(self, app: str, line: str) -> None:
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write straight away
                self._pending.append(f"slipway[router]: {line}\n")
                self.flush()
                return
        self._pending.append(f"slipway[router]: {line}\n")

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        # A closed stderr must not take the proxy down.
        with contextlib.suppress(OSError, ValueError):
            self._stream.write("".join(lines))
            self._stream.flush()
