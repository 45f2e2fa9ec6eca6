"""The Kubernetes client pieces every Kubernetes-speaking part of slipway shares.

The agent's runtime and the control plane's build Jobs both talk to the
apiserver with kubernetes-asyncio: one way to get a client (in-cluster
credentials, else a kubeconfig), one error tree with the one boundary that
translates the client's and aiohttp's errors into it, and one reader of raw
watch streams.

KubeError
├── ApiUnavailable   the apiserver could not be reached or answered 5xx/429 (retry later)
├── Gone             410: the resourceVersion we resume from was compacted (relist)
├── Conflict         409: someone else changed or created the object first
├── NotFound         404
└── Rejected         any other 4xx: our request is wrong (a bug or RBAC), never retried
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

#: A Kubernetes object in its wire form.
Manifest = dict[str, Any]


class KubeError(Exception):
    """Base of every error raised on purpose about the apiserver's answers."""


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


async def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from the pod's service account, or from ``kubeconfig`` / $KUBECONFIG.

    The caller closes it (``async with`` or ``await api.close()``).
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise Rejected(f"in-cluster Kubernetes credentials are unusable: {exc}") from exc
    else:
        try:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
        except (ConfigException, OSError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise Rejected(f"cannot load kubeconfig {where}: {exc}") from exc
    return client.ApiClient(configuration=configuration)


async def watch_events(
    resp: Any, *, seen: Callable[[str], None] | None = None
) -> AsyncIterator[tuple[str, Manifest]]:
    """The ``(type, object)`` events of a raw watch response (``_preload_content=False``).

    Blank keep-alive lines are skipped; ``seen`` is told every event's type (for a
    metric), an ``ERROR`` event's too, which then raises its status translated (a 410
    is ``Gone``: relist). The response is released however the caller stops.
    """
    try:
        async for line in resp.content:
            if not line.strip():
                continue
            event = json.loads(line)
            kind = str(event.get("type", ""))
            obj: Manifest = event.get("object") or {}
            if seen is not None:
                seen(kind)
            if kind == "ERROR":
                raise from_status(int(obj.get("code") or 500), str(obj.get("message") or obj))
            yield kind, obj
    finally:
        resp.release()
