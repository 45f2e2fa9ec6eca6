"""An app's activity feed: the audit log (releases, builds, config, scale, add-ons,
domains, restarts) and the routers' view (crashes, sleeps, wakes with their wake time),
merged newest first.

The audit entries say who; sleeps, wakes and crashes are the platform's own doing
(a wake is a visitor's request, a sleep the idle timer), so they say so. Wake and
sleep events come from the request source (control/rollup: ``TableWatcher`` records
the route table's state changes), which keeps 7 days; deploys and restarts it also
returns are left out, the audit entries say those with their author.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from control.dashboard.html import ROOT, Html, ago, h
from control.models import AuditEntry
from control.rollup.source import RequestSource
from control.rollup.store import COARSE, EventJson
from kit.redact import mask_data

#: What the platform's own events read as, and who did them.
_PLATFORM = {
    "sleep": ("app.sleep", "the idle timer"),
    "wake": ("app.wake", "a request"),
    "crash": ("app.crash", "the app's process"),
}


@dataclass(frozen=True, slots=True)
class Item:
    at: float
    action: str
    summary: str
    actor: str
    #: A page about this item (a build's), if any.
    link: str | None = None


def from_audit(entry: AuditEntry) -> Item:
    detail = mask_data(dict(entry.detail))
    summary = ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}"
        for k, v in sorted(detail.items())
        if v not in (None, "", [])
    )
    build = detail.get("build")
    link = (
        f"{ROOT}/apps/{entry.app}/builds/{build}"
        if entry.action.startswith("build.") and isinstance(build, str) and build.isalnum()
        else None
    )
    ref, version = detail.get("ref"), detail.get("version")
    if entry.action == "build.create" and isinstance(ref, str) and isinstance(version, str):
        summary = f"deployed {ref} (commit {version[:7]})"  # "Deploy a branch" (deploy.py)
    return Item(entry.at, entry.action, summary[:200], entry.actor, link)


def from_event(event: EventJson) -> Item | None:
    kind = event.get("kind", "")
    if kind not in _PLATFORM:
        return None  # deploys and restarts: the audit entries say them, with who
    action, actor = _PLATFORM[kind]
    if kind == "wake" and "seconds" in event:
        summary = f"woke in {event['seconds']:.2f} s"
    else:
        summary = event.get("detail", "")
    return Item(event.get("t", 0.0), action, summary[:200], actor)


def merge(entries: list[AuditEntry], events: list[EventJson], *, limit: int) -> list[Item]:
    """Both, newest first, at most ``limit``."""
    items = [from_audit(e) for e in entries]
    items.extend(i for i in map(from_event, events) if i is not None)
    items.sort(key=lambda i: i.at, reverse=True)
    return items[:limit]


async def platform_events(source: RequestSource | None, app: str, *, now: float) -> list[EventJson]:
    """The source's sleeps, wakes and crashes of the days it keeps (none without one)."""
    if source is None:
        return []
    return await source.events(app, since=now - COARSE[1], until=now)


def render(item: Item, now: float) -> Html:
    action = h('<a href="{}">{}</a>', item.link, item.action) if item.link else item.action
    return h(
        '<li data-action="{}"><span class="action">{}</span> <span class="detail">{}</span> '
        '<span class="meta">by {} · {}</span></li>',
        item.action,
        action,
        item.summary,
        item.actor,
        ago(item.at, now),
    )
