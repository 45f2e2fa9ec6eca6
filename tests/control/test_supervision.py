"""``slipway up`` and ``slipway serve control`` stop (exit 1, a line naming the task) when any
component's background task dies: the router's, the agent's, the link between them, the
control plane's, not only the agent's as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent.conftest import write_app
from tests.conftest import free_port
from tests.faults import slipway_with_fault

#: Review apps on: the control plane then runs its stale review apps' scheduler.
REVIEW_ENV = {
    "SLIPWAY_GITHUB_WEBHOOK_SECRET": "whsec-supervision",
    "SLIPWAY_REVIEW_DOMAIN": "review.test",
}


def up_args(tmp_path: Path) -> list[str]:
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "hello"))
    return [
        "up",
        str(apps),
        "--host=127.0.0.1",
        *(
            f"--{name}={free_port()}"
            for name in ("port", "ops-port", "agent-port", "logs-port", "forward-port")
        ),
        f"--control-port={free_port()}",
        f"--state-dir={tmp_path / 'state'}",
    ]


@pytest.mark.parametrize(
    ("target", "task", "started"),
    [
        ("router.proxy:Proxy.sweep", "router-sweeper", "router listening"),
        ("agent.machine:AppMachine.tick", "agent-tick", "agent started"),
        ("control.up:LocalLink.report", "local-link", "router listening"),
        ("control.review.stale:StaleReviewApps.run", "review-stale", "control API listening"),
    ],
)
async def test_slipway_up_exits_1_naming_any_components_dead_task(
    tmp_path: Path, target: str, task: str, started: str
) -> None:
    died = await slipway_with_fault(
        target,
        *up_args(tmp_path),
        env={**REVIEW_ENV, "SLIPWAY_TOKEN": "up-admin-token"},
        started=started,
    )
    assert died.code == 1, died.stderr
    assert died.names(task), died.stderr
    assert 'msg="stopped: a background task failed" task=' + task in died.stderr


async def test_serve_control_exits_1_when_its_review_scheduler_dies(tmp_path: Path) -> None:
    env = {
        **REVIEW_ENV,
        "SLIPWAY_ADMIN_TOKEN": "control-admin-token",
        "SLIPWAY_DB_URL": f"sqlite+aiosqlite:///{tmp_path}/state.db",
        "SLIPWAY_CONTROL_PORT": str(free_port()),
        "SLIPWAY_BUILD_ROOT": str(tmp_path / "builds"),
    }
    assert "SLIPWAY_AGENT_URL" not in os.environ
    died = await slipway_with_fault(
        "control.review.stale:StaleReviewApps.run",
        "serve",
        "control",
        env=env,
        started="control API listening",
    )
    assert died.code == 1, died.stderr
    assert died.names("review-stale"), died.stderr
