"""logfmt for slipway's own logs: a constant message plus key=value fields.

Fields come from ``extra={...}``. Keys that name a secret are redacted here,
at the last step, so a careless call site cannot leak a password or a DSN; any
other value has the credentials of the URLs it carries masked (``kit.redact``).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from kit.redact import mask_text

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_NEEDS_QUOTES = re.compile(r'[ ="\\\n\r\t]')
_SECRET_WORDS = ("password", "passwd", "secret", "token", "dsn", "authorization", "credential")


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def quote(value: object) -> str:
    """Render one logfmt value, URL credentials masked: bare when safe, double-quoted otherwise."""
    text = "" if value is None else str(value)
    if "://" in text:  # checked here too: the router renders every request's fields
        text = mask_text(text)
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def format_fields(fields: Mapping[str, object]) -> str:
    """``k=v k2="v 2"`` with secrets redacted; the one place that renders fields."""
    return " ".join(
        f"{key}={'[redacted]' if _is_secret(key) else quote(value)}"
        for key, value in fields.items()
    )


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=router.proxy msg="..." key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                fields[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
            fields["traceback"] = self.formatException(record.exc_info)
        return format_fields(fields)


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install logfmt on the root logger; called once, at the entry point."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate our per-request lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
