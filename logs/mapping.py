"""Which app, source and process a forwarded record belongs to, and its text.

Kubernetes (Fluent Bit tail + kubernetes filter): the pod's labels
``slipway.dev/app`` and ``slipway.dev/process`` name the app and process; the
dyno is ``{process}.{last part of the pod name}`` (``web.x7k2q``), the nearest
thing to Heroku's ``web.1`` a Deployment has. An optional ``slipway.dev/source``
label (``build`` for build pods) sets the source; a build pod's ``slipway.dev/build``
label makes its process ``build.<id>``, as the control plane names one build's lines.

Anything else is named by its tag: ``slipway.{app}.{process}[.{n}]``
(``slipway.shop.web.1`` -> app ``shop``, ``web.1``).

Who may claim a platform source. Everything here arrives on the forward port,
whose senders (with the shared key) are log shippers: they carry what app and
build containers print. The router's lines enter in process, never through the
port. So a forwarded record is an app line, or a build or release line when its
pod carries the platform's ``slipway.dev/source=build`` or ``=release`` label
(the platform labels its build and release-phase Jobs; tenants create no pods);
a tag ``slipway.shop.router`` or a ``router`` label is relabelled to an
app line of process ``router`` (``app[router]``, never ``slipway[router]``) and
counted. Relabelled, not refused: the line is real output of something the
shipper saw (a Procfile may even have a ``router`` type), and dropping it would
lose it; only the platform's name is taken away. ``Target.claimed`` keeps what
was claimed, for the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from logs.model import Source, valid_app

APP_LABEL = "slipway.dev/app"
PROCESS_LABEL = "slipway.dev/process"
SOURCE_LABEL = "slipway.dev/source"
BUILD_LABEL = "slipway.dev/build"
TAG_PREFIX = "slipway."
_SOURCES = {s.value: s for s in Source}
#: Record keys that hold the line itself: Fluent Bit's tail/cri (``log``), docker and
#: fluent-logger users (``message``, ``msg``).
_TEXT_KEYS = ("log", "message", "msg")


#: Sources a forwarded record may carry: from pod labels the platform sets on its own
#: pods (build Jobs, and release-phase Jobs on Kubernetes); router lines come only in
#: process, so a record claiming them is relabelled.
FORWARDED_SOURCES = frozenset({Source.APP, Source.BUILD, Source.RELEASE})


@dataclass(frozen=True, slots=True)
class Target:
    app: str
    source: Source
    process: str
    #: A platform source the sender claimed and was not given (relabelled to app).
    claimed: Source | None = None


def target_from_tag(tag: str) -> Target | None:
    if not tag.startswith(TAG_PREFIX):
        return None
    parts = tag[len(TAG_PREFIX) :].split(".", 1)
    if len(parts) != 2 or not valid_app(parts[0]) or not parts[1]:
        return None
    app, rest = parts
    claimed = _SOURCES.get(rest)
    # A tag is the shipper's own setting: it names an app's process, never a source.
    return Target(app, Source.APP, rest, claimed if claimed not in (None, Source.APP) else None)


def target_from_kubernetes(record: dict[Any, Any]) -> Target | None:
    kube = record.get("kubernetes")
    if not isinstance(kube, dict):
        return None
    labels = kube.get("labels")
    if not isinstance(labels, dict):
        return None
    app = labels.get(APP_LABEL)
    if not isinstance(app, str) or not valid_app(app):
        return None
    process = labels.get(PROCESS_LABEL)
    process = process if isinstance(process, str) and process else "app"
    source = _SOURCES.get(str(labels.get(SOURCE_LABEL, "app")), Source.APP)
    if source not in FORWARDED_SOURCES:
        # No platform pod is labelled router: relabel as the app's own.
        return Target(app, Source.APP, process, claimed=source)
    build = labels.get(BUILD_LABEL)
    if source is Source.BUILD and isinstance(build, str) and build:
        return Target(app, source, f"build.{build}")
    pod = kube.get("pod_name")
    if source is Source.APP and isinstance(pod, str) and "-" in pod:
        process = f"{process}.{pod.rsplit('-', 1)[1]}"
    return Target(app, source, process if source is Source.APP else source.value)


def resolve(tag: str, record: dict[Any, Any], cache: dict[str, Target | None]) -> Target | None:
    """Kubernetes metadata first, then the tag (looked up once per tag through ``cache``)."""
    if "kubernetes" in record:
        found = target_from_kubernetes(record)
        if found is not None:
            return found
    if tag not in cache:
        if len(cache) > 10_000:
            cache.clear()
        cache[tag] = target_from_tag(tag)
    return cache[tag]


def text_of(record: dict[Any, Any]) -> str:
    """``log``/``message``/``msg`` without its trailing newline; else the record as JSON."""
    for key in _TEXT_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            return value.rstrip("\n")
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace").rstrip("\n")
    rest = {k: v for k, v in record.items() if k != "kubernetes"}
    return json.dumps(rest, default=str, ensure_ascii=False, sort_keys=True)
