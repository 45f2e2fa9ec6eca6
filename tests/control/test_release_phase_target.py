"""AgentTarget's release phase goes to the agent with the NEW release's definition.

The agent runs it where it runs the app (a child process under ``slipway up``,
a Job of the image on Kubernetes); the control plane runs nothing itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from control.agent_target import AgentTarget
from control.releasing import SLUG_META, Deployment, PhaseResult


class RecordingLink:
    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any], str, float]] = []

    async def define(self, app: str, definition: dict[str, Any]) -> None:
        raise AssertionError("the release phase defines nothing")

    async def forget(self, app: str) -> None:
        raise AssertionError("the release phase forgets nothing")

    async def restart(self, app: str, process: str | None) -> None:
        raise AssertionError("the release phase restarts nothing")

    async def status(self, app: str) -> dict[str, Any] | None:
        return None

    async def run_once(
        self, app: str, definition: dict[str, Any], command: str, timeout: float
    ) -> PhaseResult:
        self.runs.append((app, definition, command, timeout))
        return PhaseResult(ok=False, output="migration failed")


def deployment(artifact: str) -> Deployment:
    return Deployment(
        app="shop",
        version=5,
        artifact=artifact,
        processes={"web": "gunicorn app:app"},
        env={"DATABASE_URL": "postgres://shop@db/shop"},
        hosts=("shop.test",),
    )


async def test_an_image_release_runs_in_its_image_through_the_agent() -> None:
    link = RecordingLink()
    target = AgentTarget(link, release_timeout=90)
    image = "registry.test/shop@sha256:" + "ab" * 32
    result = await target.release_phase(deployment(image), "python manage.py migrate")
    assert result == PhaseResult(ok=False, output="migration failed")
    ((app, definition, command, timeout),) = link.runs
    assert (app, command, timeout) == ("shop", "python manage.py migrate", 90)
    assert definition["release"] == 5
    assert definition["env"] == {"DATABASE_URL": "postgres://shop@db/shop"}
    assert definition["hosts"] == []
    assert definition["processes"] == {
        "release": {"command": "python manage.py migrate", "cwd": None, "image": image}
    }


async def test_a_built_slug_runs_in_its_app_directory_with_its_tools_on_path(
    tmp_path: Path,
) -> None:
    (tmp_path / SLUG_META).write_text(json.dumps({}))
    (tmp_path / "app").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    link = RecordingLink()
    await AgentTarget(link, release_timeout=30).release_phase(
        deployment(str(tmp_path)), "./migrate"
    )
    ((_, definition, _, _),) = link.runs
    assert definition["processes"]["release"]["cwd"] == str(tmp_path / "app")
    assert definition["processes"]["release"]["image"] is None
    assert definition["env"]["VIRTUAL_ENV"] == str(tmp_path / ".venv")
    assert definition["env"]["PATH"].startswith(str(tmp_path / ".venv" / "bin"))
    assert definition["env"]["DATABASE_URL"] == "postgres://shop@db/shop"
