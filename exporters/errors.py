"""The exporters' errors.

ExporterError
├── TargetsFileError     the targets file cannot be read or is invalid (message names the
│                        file and the target, never a DSN or a password)
└── PollError            one poll of one target failed; ``kind`` is one of a few bounded
                         values, so it can be a metric label

Library errors (psycopg, redis, OSError, asyncio timeouts) are translated into
PollError in one place, :func:`exporters.errors.classify`, with ``raise ... from``
at the call sites of the shells. The original message is never put in a label
or a log field: it may carry a host name, a user name or worse.
"""

from __future__ import annotations

import asyncio
import enum

import psycopg
import redis.exceptions


class ErrorKind(enum.StrEnum):
    """Why a poll failed: the bounded ``error`` label value."""

    CONNECT = "connect"  # refused, unreachable, reset: nothing listens or the link broke
    TIMEOUT = "timeout"  # no answer within the per-target timeout (a silent listener)
    AUTH = "auth"  # the server refused the credentials
    DENIED = "denied"  # authenticated, but a needed command or view is not allowed
    QUERY = "query"  # the server answered with an error we did not expect
    PROTOCOL = "protocol"  # the answer could not be understood
    NOT_FOUND = "not_found"  # a database target whose database is not on its server
    SERVER_DOWN = "server_down"  # a database target whose server target failed


class ExporterError(Exception):
    """Base of every error the exporters raise on purpose."""


class TargetsFileError(ExporterError):
    pass


class PollError(ExporterError):
    def __init__(self, kind: ErrorKind) -> None:
        super().__init__(f"poll failed: {kind.value}")
        self.kind = kind


def classify(exc: BaseException) -> ErrorKind:
    """The bounded kind of a library error raised while polling one target."""
    if isinstance(exc, PollError):
        return exc.kind
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | redis.exceptions.TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return ErrorKind.AUTH
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return ErrorKind.DENIED
    if isinstance(exc, redis.exceptions.ConnectionError | ConnectionError | OSError):
        return ErrorKind.CONNECT
    if isinstance(exc, redis.exceptions.ResponseError):
        return ErrorKind.QUERY
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ErrorKind.DENIED
    if isinstance(
        exc, psycopg.errors.InvalidPassword | psycopg.errors.InvalidAuthorizationSpecification
    ):
        return ErrorKind.AUTH
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return ErrorKind.TIMEOUT
    if isinstance(exc, psycopg.OperationalError):
        return _classify_pg_operational(exc)
    if isinstance(exc, psycopg.Error):
        return ErrorKind.QUERY
    return ErrorKind.PROTOCOL


def _classify_pg_operational(exc: psycopg.OperationalError) -> ErrorKind:
    # libpq reports a refused password as an OperationalError without a SQLSTATE;
    # its English message is stable enough to tell it from a refused connection.
    text = str(exc).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return ErrorKind.AUTH
    if "timeout" in text:
        return ErrorKind.TIMEOUT
    return ErrorKind.CONNECT
