"""What ``ps``, ``builds`` and ``apps:info`` print, from the API's JSON and a given ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from control.cliformat import ago, columns, parse_iso, span
from control.commands import build_rows, ps_lines

NOW = 1_796_536_800.0  # 2026-12-06T06:00:00Z


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (44.6, "45s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"),
     (86400, "1d"), (97200, "1d3h"), (-5, "0s")],
)  # fmt: skip
def test_spans_read_as_the_cli_takes_durations(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


def test_times_round_trip_and_garbage_is_no_time() -> None:
    assert parse_iso("2026-12-06T06:00:00Z") == NOW
    assert parse_iso("yesterday") is None
    assert parse_iso(None) is None
    assert ago(NOW - 300, NOW) == "2026-12-06 05:55:00Z (5m ago)"
    assert ago(None, NOW) == "-"


def test_columns_align_and_trim() -> None:
    assert columns([["a", "bb", ""], ["ccc", "d", ""]]) == ["a    bb", "ccc  d"]
    assert columns([]) == []


def _formation(kind: str, quantity: int, **extra: object) -> dict[str, object]:
    return {"type": kind, "quantity": quantity, "idle_after": 300.0, "never_sleep": False, **extra}


def _dyno(name: str, state: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "type": name.split(".", maxsplit=1)[0],
        "state": state,
        "release": {"version": 4},
        "reason": "",
        **extra,
    }


def test_ps_shows_state_release_and_since_and_no_empty_header() -> None:
    formation = [
        _formation("web", 2),
        _formation("worker", 0),
        _formation("clock", 1, never_sleep=True),
    ]
    dynos = [
        _dyno("web.1", "up", created_at="2026-12-06T05:50:00Z"),
        _dyno("web.2", "crashed", reason="exited with code 1"),
        _dyno("clock", "asleep"),
    ]
    assert ps_lines(formation, dynos, NOW) == [
        "=== web (2, sleeps after 5m)",
        "web.1:  up                            v4  2026-12-06 05:50:00Z (10m ago)",
        "web.2:  crashed (exited with code 1)  v4  -",
        "=== clock (1, never sleeps)",
        "clock:  asleep  v4  -",
        "Scaled to 0: worker (ps:scale TYPE=1 runs one)",
    ]


AUTOSCALE = {
    "target": 10.0, "stable_window": 60.0, "panic_window": 6.0, "panic_threshold": 2.0,
    "scale_down_delay": 60.0,
}  # fmt: skip


def test_ps_shows_an_autoscaled_type_s_settings_what_it_wants_and_the_last_decision() -> None:
    formation = [_formation("web", 1, min_scale=1, max_scale=5, autoscale=AUTOSCALE)]
    dynos = [_dyno(f"web.{i}", "up") for i in (1, 2, 3)]
    view = {
        "process": "web", "running": True, "desired": 3, "panicking": True,
        "avg_concurrency": 24.5, "panic_concurrency": 31.0,
        "decisions": [
            {"at": NOW - 12, "from": 1, "to": 3, "reason": "panic"},
            {"at": NOW - 300, "from": 2, "to": 1, "reason": "idle"},
        ],
    }  # fmt: skip
    lines = ps_lines(formation, dynos, NOW, view)
    assert lines[:3] == [
        "=== web (1, sleeps after 5m)",
        "autoscale: 10 in flight per process, 1-5 processes, wants 3 (avg 24.5 in flight),"
        " panicking",
        "last decision: 1 -> 3 (panic) 2026-12-06 05:59:48Z (12s ago)",
    ]
    assert len(lines) == 6  # then the three dynos


def test_ps_says_when_no_agent_runs_the_autoscaler_or_it_has_not_decided() -> None:
    formation = [_formation("web", 1, min_scale=0, max_scale=4, autoscale=AUTOSCALE)]
    dynos = [_dyno("web.1", "up")]
    idle = {"process": "web", "running": False, "desired": 0, "decisions": []}
    assert ps_lines(formation, dynos, NOW, idle)[1] == (
        "autoscale: 10 in flight per process, 0-4 processes (no agent runs it here)"
    )
    fresh = {"process": "web", "running": True, "desired": 1, "avg_concurrency": None,
             "decisions": []}  # fmt: skip
    assert ps_lines(formation, dynos, NOW, fresh)[1:3] == [
        "autoscale: 10 in flight per process, 0-4 processes, wants 1",
        "last decision: none yet",
    ]
    # A type without autoscale shows none of it, whatever the view says.
    plain = [_formation("web", 1, min_scale=0, max_scale=4, autoscale=None)]
    assert ps_lines(plain, dynos, NOW, fresh) == [
        "=== web (1, sleeps after 5m)",
        "web.1:  up  v4  -",
    ]


def test_builds_show_status_commit_when_and_how_long() -> None:
    found: list[dict[str, Any]] = [
        {
            "id": "b1",
            "status": "succeeded",
            "release": {"version": 2, "status": "succeeded"},
            "commit": "a" * 40,
            "created_at": "2026-12-06T05:58:00Z",
            "updated_at": "2026-12-06T05:58:42Z",
        },
        {
            "id": "b2",
            "status": "pending",
            "release": None,
            "commit": None,
            "created_at": "2026-12-06T05:59:30Z",
            "updated_at": "2026-12-06T05:59:30Z",
        },
    ]
    rows = build_rows(found, NOW)
    assert rows[0].split() == ["ID", "STATUS", "RELEASE", "COMMIT", "CREATED", "DURATION"]
    assert rows[1].split("  ")[0:1] == ["b1"]
    assert " ".join(rows[1].split()) == (
        f"b1 succeeded v2 succeeded {'a' * 40} 2026-12-06 05:58:00Z (2m ago) 42s"
    )
    assert " ".join(rows[2].split()) == "b2 pending - - 2026-12-06 05:59:30Z (30s ago) 30s so far"
