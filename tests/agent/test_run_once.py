"""One-off processes of a release (the release phase) through the agent.

LocalRuntime runs them as a shell in the release's directory with its env,
in their own process group; the agent's API runs them for the control plane
(``POST /v1/apps/{app}/run``), behind the same token as every ``/v1/`` path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.forward import RUN_MARGIN, run_limit
from agent.kubernetes.manifests import once_job
from agent.local import LocalRuntime
from agent.once import MAX_RUN_TIMEOUT, OUTPUT_TAIL
from agent.runtime import ProcessSpec
from control.agent_target import AgentClient
from kit.oneoff import WATCHER, Watcher
from tests.agent.conftest import local_up_settings, quiet_up

TOKEN = "slw_agent_token_for_run_tests_0123456789"


def spec(tmp_path: Path, **env: str) -> ProcessSpec:
    return ProcessSpec("shop", "release", "unused", env=env, cwd=str(tmp_path), release=7)


async def test_a_command_runs_in_the_release_directory_with_its_env_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_SECRET_OF_THE_AGENT", "leak")
    runtime = LocalRuntime()
    try:
        result = await runtime.run_once(
            spec(tmp_path, GREETING="hi"),
            'echo "$GREETING from $(pwd)"; echo "[$SLIPWAY_SECRET_OF_THE_AGENT]" >&2',
            timeout=10,
        )
    finally:
        await runtime.close()
    assert result.ok
    assert result.output == f"hi from {tmp_path}\n[]\n"


async def test_a_failing_command_reports_its_exit_code_and_the_tail_of_its_output(
    tmp_path: Path,
) -> None:
    runtime = LocalRuntime()
    try:
        result = await runtime.run_once(
            spec(tmp_path),
            f"{sys.executable} -S -c \"print('x' * 10000); print('boom')\"; exit 3",
            timeout=10,
        )
    finally:
        await runtime.close()
    assert not result.ok
    assert result.output.endswith("boom\n\ncommand exited with code 3")
    assert len(result.output) <= OUTPUT_TAIL + 40


async def test_a_timeout_kills_the_whole_process_group_and_says_so(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    runtime = LocalRuntime()
    started = time.monotonic()
    try:
        # A grandchild in the background: the group kill must reach it too. The shell must
        # have written its pid before the timeout: 2 s, as a loaded machine can hold a
        # fork and a write for longer than the 0.5 s this had (the pid file was missing).
        result = await runtime.run_once(
            spec(tmp_path), f"sleep 30 & echo $! > {pid_file}; wait", timeout=2
        )
    finally:
        await runtime.close()
    # Killed at its 2 s timeout, not before, and not after the 30 s the grandchild takes.
    assert 2 <= time.monotonic() - started < 20
    assert not result.ok
    assert result.output == "command timed out after 2s"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 15
    while _alive(child):
        assert time.monotonic() < deadline, "the background child survived the timeout"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped yet, since it is not our child) counts as dead.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def definition(tmp_path: Path) -> dict[str, Any]:
    return {
        "release": 2,
        "env": {"GREETING": "v2"},
        "processes": {"release": {"command": "ignored", "cwd": str(tmp_path)}},
        "formation": {"release": 0},
    }


async def test_the_api_runs_a_release_command_for_the_control_plane_behind_the_token(
    tmp_path: Path,
) -> None:
    up = quiet_up(local_up_settings(None, agent={"token": TOKEN}))
    await up.start()
    api = f"http://127.0.0.1:{up.api_port}"
    body = {"definition": definition(tmp_path), "command": "echo $GREETING", "timeout": 10}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    control = AgentClient(api, token=TOKEN, timeout=5)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{api}/v1/apps/shop/run", json=body) as resp:
                assert resp.status == 401
            async with http.post(f"{api}/v1/apps/shop/run", json=body, headers=auth) as resp:
                assert resp.status == 200
                assert await resp.json() == {"ok": True, "output": "v2\n"}
            bad_cases = [
                ({**body, "definition": {"processes": {}}}, "no processes"),
                ({**body, "command": 3}, "command must be a string"),
                ({**body, "command": "  "}, "non-empty"),
                ({**body, "timeout": "10s"}, "timeout must be a number"),
                ({**body, "timeout": 0}, "timeout must be in"),
                ({**body, "extra": 1}, "the body must be"),
            ]
            for bad, reason in bad_cases:
                async with http.post(f"{api}/v1/apps/shop/run", json=bad, headers=auth) as resp:
                    assert resp.status == 422, bad
                    assert reason in (await resp.json())["error"]
            async with http.post(f"{api}/v1/apps/shop/run", data=b"{", headers=auth) as resp:
                assert resp.status == 400
        # The control plane's client: a failing command is a result, not an error.
        failed = await control.run_once(
            "shop", definition(tmp_path), "echo no database; exit 1", 10
        )
        assert not failed.ok
        assert failed.output == "no database\n\ncommand exited with code 1"
        # Running a release defines nothing: the app is not the agent's until deployed.
        assert "shop" not in up.agent.machines
    finally:
        await control.close()
        await up.stop()


def test_a_follower_waits_for_a_forwarded_run_as_long_as_the_run_may_take() -> None:
    assert run_limit(json.dumps({"timeout": 900}).encode()) == 900 + RUN_MARGIN
    assert run_limit(json.dumps({"timeout": 10**9}).encode()) == MAX_RUN_TIMEOUT + RUN_MARGIN
    assert run_limit(b"{") == 0.0
    assert run_limit(json.dumps({"timeout": True}).encode()) == 0.0
    assert run_limit(json.dumps({}).encode()) > 3600  # the default timeout, an hour


async def test_a_one_off_over_the_api_runs_as_the_dyno_its_caller_named(tmp_path: Path) -> None:
    up = quiet_up(local_up_settings(None, agent={"token": TOKEN}))
    await up.start()
    api = f"http://127.0.0.1:{up.api_port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    control = AgentClient(api, token=TOKEN, timeout=5)
    body = {"definition": definition(tmp_path), "command": "echo $DYNO", "timeout": 10}

    async def as_run(name: str) -> tuple[str, str]:
        # What control/api/runs.py does for `slipway run`: the watcher carries the name.
        watcher = Watcher(on_output=lambda _: None, name=name)
        WATCHER.set(watcher)
        result = await control.run_once("shop", definition(tmp_path), "echo $DYNO", 10)
        return result.output, watcher.dyno

    try:
        # The control plane's client tells the agent the name `slipway run` chose.
        assert await asyncio.create_task(as_run("run.4821")) == ("run.4821\n", "run.4821")
        # The release phase names none: Heroku's release.1.
        released = await control.run_once("shop", definition(tmp_path), "echo $DYNO", 10)
        assert released.output == "release.1\n"
        async with aiohttp.ClientSession() as http:
            for bad in ["web.1", "run.", "run.1; id", 7, "release.1"]:
                async with http.post(
                    f"{api}/v1/apps/shop/run", json={**body, "dyno": bad}, headers=auth
                ) as resp:
                    assert resp.status == 422, bad
                    assert "dyno must be a one-off's name" in (await resp.json())["error"]
    finally:
        await control.close()
        await up.stop()


def test_a_one_off_job_runs_as_the_dyno_named() -> None:
    job_spec = ProcessSpec("shop", "release", "unused", image="img:1", release=3)
    named = once_job(job_spec, "rake db:migrate", name="shop-run", timeout=60, dyno="run.12")
    release = once_job(job_spec, "rake db:migrate", name="shop-run", timeout=60)
    assert named["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "DYNO", "value": "run.12"}
    ]
    assert release["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "DYNO", "value": "release.1"}
    ]
