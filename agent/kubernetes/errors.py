"""Errors of the Kubernetes runtime, and the one boundary that translates the client's.

KubeError
├── ApiUnavailable   the apiserver could not be reached or answered 5xx/429 (retry later)
├── Gone             410: the resourceVersion we resume from was compacted (relist)
├── Conflict         409: someone else changed or created the object first
├── NotFound         404
├── Rejected         any other 4xx: our request is wrong (a bug or RBAC), never retried
└── NotLeader        this agent replica does not hold the Lease, so it must not scale
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException


class KubeError(Exception):
    """Base of every error the Kubernetes runtime raises on purpose."""


class ApiUnavailable(KubeError):
    pass


class Gone(KubeError):
    pass


class Conflict(KubeError):
    pass


class NotFound(KubeError):
    pass


class Rejected(KubeError):
    pass


class NotLeader(KubeError):
    pass


def _message(exc: ApiException) -> str:
    """The Status message of an API error, without the headers or body dump."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}"


def from_status(status: int, text: str) -> KubeError:
    """The error for an HTTP status of the apiserver (also used for ERROR watch events)."""
    if status == 410:
        return Gone(text)
    if status == 409:
        return Conflict(text)
    if status == 404:
        return NotFound(text)
    if status == 429 or status >= 500:
        return ApiUnavailable(text)
    return Rejected(text)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate kubernetes-asyncio and aiohttp errors raised inside into KubeError."""
    try:
        yield
    except ApiException as exc:
        raise from_status(int(exc.status or 0), f"{what}: {_message(exc)}") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise ApiUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


async def checked(resp: Any, what: str) -> Any:
    """The raw response of a ``_preload_content=False`` call, or the KubeError for its status.

    kubernetes-asyncio only raises for a bad status when it parses the body
    itself; we read lists and watches raw, so the status is checked here.
    """
    status = int(resp.status)
    if 200 <= status < 300:
        return resp
    try:
        text = await resp.text()
    finally:
        resp.release()
    try:
        body = json.loads(text)
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    raise from_status(status, f"{what}: {status} {message or text[:200]}")
