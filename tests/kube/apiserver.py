"""kmock's KubernetesEmulator with what a controller client needs and kmock 0.8 lacks.

kmock serves the HTTP, parses each request into (action, resource, namespace,
name, subresource), records it for assertions and answers API discovery. For
the resources the agent uses, this shim answers instead, with apiserver
semantics kmock does not have yet:

- resourceVersion on every object and list, one counter for the whole store;
  ``replace`` (PUT) with a stale resourceVersion is 409 Conflict, create of an
  existing name is 409 AlreadyExists;
- label selectors (``a=b``, ``a!=b``, ``a``, ``!a``, comma = and);
- ``watch=true`` streams resuming after ``resourceVersion``, ``timeoutSeconds``,
  BOOKMARK events when ``allowWatchBookmarks``, an ERROR 410 event when the
  version was compacted away (``compact()``);
- the ``scale`` subresource of Deployments (GET, PATCH, PUT as a Scale);
- the namespace of the URL set on created objects;
- faults a test can switch on: ``drop_watches()`` cuts every open stream
  mid-flight, ``outage`` answers 503 to everything.

Patches are merged recursively with lists replaced (JSON merge patch);
strategic-merge-by-key of lists is not emulated.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterable
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

Obj = dict[str, Any]
#: (group, version, plural) -> the kind's name.
KINDS: dict[tuple[str, str, str], str] = {
    ("apps", "v1", "deployments"): "Deployment",
    ("", "v1", "pods"): "Pod",
    ("", "v1", "services"): "Service",
    ("", "v1", "secrets"): "Secret",
    ("discovery.k8s.io", "v1", "endpointslices"): "EndpointSlice",
    ("coordination.k8s.io", "v1", "leases"): "Lease",
    ("batch", "v1", "jobs"): "Job",
    ("batch", "v1", "cronjobs"): "CronJob",
    ("apps", "v1", "statefulsets"): "StatefulSet",
    ("", "v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("networking.k8s.io", "v1", "networkpolicies"): "NetworkPolicy",
}
Res = tuple[str, str, str]


def _merge(base: Obj, patch: Obj) -> Obj:
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.strip().rstrip("=")) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    bookmark_interval: float = 0.2
    #: Answer 503 to every request of a known resource (an apiserver outage).
    outage: bool = False
    _store: dict[tuple[Res, str | None, str], Obj] = attrs.field(factory=dict, init=False)
    _history: list[tuple[int, Res, str, Obj]] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=100, init=False)
    _compacted: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition | None = attrs.field(default=None, init=False)
    _streams: set[asyncio.Transport] = attrs.field(factory=set, init=False)
    watch_requests: list[dict[str, str]] = attrs.field(factory=list, init=False)

    # -- what tests (the controllers) use ---------------------------------------------------------

    def objects_of(self, plural: str) -> list[Obj]:
        return [copy.deepcopy(o) for (r, _, _), o in self._store.items() if r[2] == plural]

    def get(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        res = self._res(plural)
        obj = self._store.get((res, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def put(self, plural: str, obj: Obj) -> Obj:
        """Create or replace an object as a controller would (no conflict check)."""
        res = self._res(plural)
        meta = obj.setdefault("metadata", {})
        key = (res, meta.get("namespace"), meta["name"])
        kind = "MODIFIED" if key in self._store else "ADDED"
        if kind == "ADDED":
            self._stamp_new(res, obj)
        return await self._write(key, kind, obj)

    async def patch_object(self, plural: str, namespace: str | None, name: str, patch: Obj) -> Obj:
        res = self._res(plural)
        key = (res, namespace, name)
        return await self._write(key, "MODIFIED", _merge(self._store[key], patch))

    async def delete_object(self, plural: str, namespace: str | None, name: str) -> None:
        res = self._res(plural)
        key = (res, namespace, name)
        obj = self._store.pop(key)
        await self._record(res, "DELETED", obj)

    def compact(self) -> None:
        """Forget history up to now: a watch resuming from an older version gets 410."""
        self._compacted = self._rv
        self._history.clear()

    async def drop_watches(self) -> None:
        """Cut every open watch stream mid-flight, as a crashed apiserver or LB would."""
        for transport in list(self._streams):
            transport.abort()
        self._streams.clear()
        await asyncio.sleep(0)

    # -- the store ------------------------------------------------------------------------------

    @staticmethod
    def _res(plural: str) -> Res:
        for res in KINDS:
            if res[2] == plural:
                return res
        raise KeyError(plural)

    def _stamp_new(self, res: Res, obj: Obj) -> None:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["generation"] = 1
        obj.setdefault("apiVersion", f"{res[0]}/{res[1]}" if res[0] else res[1])
        obj.setdefault("kind", KINDS[res])

    async def _write(self, key: tuple[Res, str | None, str], kind: str, obj: Obj) -> Obj:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._store[key] = obj
        self._history.append((self._rv, key[0], kind, copy.deepcopy(obj)))
        await self._notify()
        return copy.deepcopy(obj)

    async def _record(self, res: Res, kind: str, obj: Obj) -> None:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._history.append((self._rv, res, kind, obj))
        await self._notify()

    async def _notify(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            self._changed.notify_all()

    def _select(self, res: Res, namespace: str | None, selector: str | None) -> Iterable[Obj]:
        for (r, ns, _), obj in sorted(self._store.items(), key=lambda kv: str(kv[0])):
            if r != res or (namespace is not None and ns != namespace):
                continue
            if selector and not _selects(selector, obj["metadata"].get("labels") or {}):
                continue
            yield obj

    # -- HTTP ------------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        r = request.resource
        res = (r.group, r.version, r.plural) if r is not None else None
        if res not in KINDS:
            return await super()._handle(request)
        assert res is not None
        if self.outage:
            return self._error(503, "ServiceUnavailable", "the apiserver is down (test outage)")
        method = str(request.method.value if request.method else "").upper()
        params = dict(request.params)
        ns, name, sub = request.namespace, request.name, request.subresource
        if method == "GET" and params.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, res, ns, params)
        if name is None:
            if method == "GET":
                items = [
                    copy.deepcopy(o) for o in self._select(res, ns, params.get("labelSelector"))
                ]
                return aiohttp.web.json_response(
                    {
                        "apiVersion": f"{res[0]}/{res[1]}" if res[0] else res[1],
                        "kind": f"{KINDS[res]}List",
                        "metadata": {"resourceVersion": str(self._rv)},
                        "items": items,
                    }
                )
            if method == "POST":
                return await self._create(res, ns, dict(request.data or {}))
            return self._error(405, "MethodNotAllowed", method)
        key = (res, ns, name)
        current = self._store.get(key)
        if current is None:
            return self._error(404, "NotFound", f'{res[2]} "{name}" not found')
        body = dict(request.data or {}) if isinstance(request.data, dict) else {}
        if sub == "scale" and res[2] == "deployments":
            return await self._scale(key, current, method, body)
        if sub is not None:
            return self._error(404, "NotFound", f"no subresource {sub}")
        if method == "GET":
            return aiohttp.web.json_response(current)
        if method == "DELETE":
            del self._store[key]
            await self._record(res, "DELETED", current)
            return aiohttp.web.json_response(_status(200, "", "deleted") | {"status": "Success"})
        stale = self._stale(current, body)
        if stale is not None:
            return stale
        if method == "PATCH":
            patched = _merge(current, body)
            patched["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            return aiohttp.web.json_response(await self._write(key, "MODIFIED", patched))
        if method == "PUT":
            body.setdefault("metadata", {})
            body["metadata"] |= {
                k: current["metadata"][k]
                for k in ("uid", "creationTimestamp", "namespace")
                if k in current["metadata"]
            }
            return aiohttp.web.json_response(await self._write(key, "MODIFIED", body))
        return self._error(405, "MethodNotAllowed", method)

    def _stale(self, current: Obj, body: Obj) -> aiohttp.web.Response | None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
            return self._error(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; "
                "please apply your changes to the latest version and try again",
            )
        return None

    async def _create(self, res: Res, ns: str | None, obj: Obj) -> aiohttp.web.StreamResponse:
        meta = obj.setdefault("metadata", {})
        if ns is not None:
            meta["namespace"] = ns
        name = meta.get("name")
        if not name:
            return self._error(422, "Invalid", "metadata.name: Required value")
        key = (res, meta.get("namespace"), name)
        if key in self._store:
            return self._error(409, "AlreadyExists", f'{res[2]} "{name}" already exists')
        self._stamp_new(res, obj)
        return aiohttp.web.json_response(await self._write(key, "ADDED", obj), status=201)

    async def _scale(
        self, key: tuple[Res, str | None, str], current: Obj, method: str, body: Obj
    ) -> aiohttp.web.StreamResponse:
        if method in ("PATCH", "PUT"):
            stale = self._stale(current, body)
            if stale is not None:
                return stale
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                return self._error(422, "Invalid", "spec.replicas: must be >= 0")
            current = await self._write(
                key, "MODIFIED", _merge(current, {"spec": {"replicas": replicas}})
            )
        elif method != "GET":
            return self._error(405, "MethodNotAllowed", method)
        meta = current["metadata"]
        labels = (current["spec"].get("selector") or {}).get("matchLabels") or {}
        return aiohttp.web.json_response(
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "resourceVersion": meta["resourceVersion"],
                },
                "spec": {"replicas": current["spec"].get("replicas", 0)},
                "status": {
                    "replicas": (current.get("status") or {}).get("replicas", 0),
                    "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                },
            }
        )

    async def _watch(
        self, request: rendering.Request, res: Res, ns: str | None, params: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        self.watch_requests.append(params)
        selector = params.get("labelSelector")
        since = params.get("resourceVersion")
        timeout = float(params.get("timeoutSeconds") or 3600)
        bookmarks = params.get("allowWatchBookmarks", "").lower() in ("true", "1")
        raw_request = request._raw_request
        assert raw_request is not None
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await stream.prepare(raw_request)
        transport = raw_request.transport
        if transport is not None:
            self._streams.add(transport)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def send(kind: str, obj: Obj) -> None:
            await stream.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        def matches(r: Res, obj: Obj) -> bool:
            meta = obj.get("metadata") or {}
            if r != res or (ns is not None and meta.get("namespace") != ns):
                return False
            return not selector or _selects(selector, meta.get("labels") or {})

        try:
            if since in (None, "", "0"):
                cursor = self._rv
                for obj in list(self._select(res, ns, selector)):
                    await send("ADDED", obj)
            else:
                cursor = int(since)  # type: ignore[arg-type]
                if cursor < self._compacted:
                    await send(
                        "ERROR", _status(410, "Expired", f"too old resource version: {cursor}")
                    )
                    return stream
            if self._changed is None:
                self._changed = asyncio.Condition()
            while True:
                for rv, r, kind, obj in list(self._history):
                    if rv > cursor:
                        if matches(r, obj):
                            await send(kind, obj)
                        cursor = rv
                left = deadline - loop.time()
                if left <= 0:
                    break
                async with self._changed:
                    try:
                        await asyncio.wait_for(
                            self._changed.wait(), min(left, self.bookmark_interval)
                        )
                    except TimeoutError:
                        if bookmarks:
                            await send(
                                "BOOKMARK",
                                {
                                    "kind": KINDS[res],
                                    "apiVersion": f"{res[0]}/{res[1]}" if res[0] else res[1],
                                    "metadata": {"resourceVersion": str(cursor)},
                                },
                            )
            await stream.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            if transport is not None:
                self._streams.discard(transport)
        return stream

    @staticmethod
    def _error(code: int, reason: str, message: str) -> aiohttp.web.Response:
        return aiohttp.web.json_response(_status(code, reason, message), status=code)
