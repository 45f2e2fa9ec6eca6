"""An agent whose background task dies stops (exit 1, a line naming the task): a dead tick
never puts an app to sleep again, a dead watch freezes every app's state."""

from __future__ import annotations

from pathlib import Path

from tests.agent.conftest import write_app
from tests.conftest import free_port
from tests.faults import slipway_with_fault


def agent_args(tmp_path: Path) -> list[str]:
    apps = tmp_path / "apps.toml"
    apps.write_text(write_app(tmp_path, "hello"))
    return ["serve", "agent", str(apps), "--host=127.0.0.1", f"--port={free_port()}"]


async def test_an_agent_whose_tick_dies_exits_1_naming_it(tmp_path: Path) -> None:
    died = await slipway_with_fault(
        "agent.machine:AppMachine.tick", *agent_args(tmp_path), started="agent started"
    )
    assert died.code == 1, died.stderr
    assert died.names("agent-tick"), died.stderr


async def test_an_agent_whose_runtime_watch_dies_exits_1_naming_it(tmp_path: Path) -> None:
    died = await slipway_with_fault(
        "agent.agent:Agent._observe", *agent_args(tmp_path), started="agent started"
    )
    assert died.code == 1, died.stderr
    assert died.names("agent-watch"), died.stderr
