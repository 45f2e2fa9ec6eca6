"""The activity feed's merge: the audit log and the platform's sleeps, wakes and crashes,
newest first (control/dashboard/activity.py)."""

from __future__ import annotations

from control.dashboard.activity import merge, render
from control.models import AuditEntry
from control.rollup.store import EventJson


def entry(at: float, action: str, **detail: object) -> AuditEntry:
    return AuditEntry(id=int(at), at=at, actor="user:ann", action=action, app="hello",
                      detail=dict(detail))  # fmt: skip


EVENTS: list[EventJson] = [
    {"t": 150.0, "kind": "wake", "seconds": 1.234},
    {"t": 250.0, "kind": "sleep", "detail": ""},
    {"t": 120.0, "kind": "deploy", "detail": "v2 Deploy"},  # said by the audit entry
    {"t": 300.0, "kind": "crash", "detail": "exited 1"},
]


def test_audit_entries_and_platform_events_are_merged_newest_first() -> None:
    items = merge([entry(100, "release.create", version=2), entry(200, "formation.update")],
                  EVENTS, limit=10)  # fmt: skip
    assert [(i.at, i.action) for i in items] == [
        (300.0, "app.crash"),
        (250.0, "app.sleep"),
        (200.0, "formation.update"),
        (150.0, "app.wake"),
        (100.0, "release.create"),
    ]
    wake = items[3]
    assert (wake.summary, wake.actor) == ("woke in 1.23 s", "a request")
    assert items[0].summary == "exited 1"


def test_the_newest_are_kept_when_there_are_more_than_the_limit() -> None:
    items = merge([entry(10, "app.create")], EVENTS, limit=2)
    assert [i.action for i in items] == ["app.crash", "app.sleep"]


def test_a_build_links_to_its_page_and_secrets_stay_masked() -> None:
    (build,) = merge([entry(1, "build.create", build="0123abcd")], [], limit=5)
    assert build.link == "/dashboard/apps/hello/builds/0123abcd"
    html = render(build, now=61)
    assert 'href="/dashboard/apps/hello/builds/0123abcd"' in html
    assert "1 min ago" in html
    (odd,) = merge([entry(1, "build.create", build="../x")], [], limit=5)
    assert odd.link is None  # only an id makes a link
    (config,) = merge([entry(1, "config.update", DATABASE_URL="postgres://u:hunter2@h/db")],
                      [], limit=5)  # fmt: skip
    assert "hunter2" not in config.summary


def test_tenant_text_is_escaped() -> None:
    (item,) = merge([], [{"t": 1.0, "kind": "crash", "detail": "<script>x</script>"}], limit=1)
    assert "<script>" not in render(item, now=2)
