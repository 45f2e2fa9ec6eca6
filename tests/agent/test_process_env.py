"""Every process an app runs gets Heroku's platform variables and its config vars, nothing else.

Each test starts a real process that dumps its whole environment (a file it
writes, or its output) and asserts the exact key set: web (PORT, DYNO
``web.1``), workers (DYNO ``worker.1``, no PORT), the release phase (DYNO
``release.1``) through the agent's runtime and through the control plane's
own runner, and the Kubernetes manifests that carry the same variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.kubernetes import manifests
from agent.local import LocalRuntime
from agent.runtime import ProcessSpec
from agent.settings import LocalSettings
from control.releasing import SLUG_META, run_release_command, slug_layout
from kit.spawn import DEFAULT_PATH, Jail, app_env, detect, spawn
from tests.agent.conftest import ListSink
from tests.helpers import eventually

#: Dumps its environment as JSON into the file named by its first argument (not an env var:
#: the dump must hold only what the platform gave). Written aside and renamed, so the file
#: exists only whole: a reader that waited a fixed moment after it appeared could, on a
#: loaded machine, still read half of it.
DUMP = (
    "import json, os, sys\n"
    "env = dict(os.environ)\n"
    "with open(sys.argv[1] + '.part', 'w') as f: json.dump(env, f)\n"
    "os.replace(sys.argv[1] + '.part', sys.argv[1])\n"
    "import time; time.sleep(60)\n"
)
#: What every app process has besides its config vars (sh adds PWD; Python nothing).
BASE = {"PATH", "LANG", "TMPDIR", "HOME", "DYNO", "PWD"}


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalRuntime]:
    # What slipway's own environment holds must not reach any app process.
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_must_not_leak")
    monkeypatch.setenv("DATABASE_URL", "postgres://operator:secret@db/admin")
    local = LocalRuntime(settings=LocalSettings(stop_grace=0.5), sink=ListSink())
    yield local
    await local.close()


def spec(tmp_path: Path, process: str, out: Path) -> ProcessSpec:
    (tmp_path / "dump.py").write_text(DUMP)
    command = f"exec {sys.executable} -S dump.py {out}"
    return ProcessSpec(
        "envy", process, command, env={"GREETING": "hi", "DYNO": "spoofed"}, cwd=str(tmp_path)
    )


async def dumped(path: Path) -> dict[str, str]:
    await eventually(path.exists, what=f"{path.name} written")  # whole: DUMP renames it
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


async def test_a_web_process_gets_port_dyno_and_its_config_only(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    out = tmp_path / "web.json"
    await runtime.apply(spec(tmp_path, "web", out))
    await runtime.scale("envy", "web", 1)
    env = await dumped(out)
    assert set(env) == BASE | {"PORT", "GREETING"}
    assert env["DYNO"] == "web.1"  # the platform's own wins over a config var
    assert env["PORT"].isdigit()
    assert (env["HOME"], env["PATH"], env["GREETING"]) == (str(tmp_path), DEFAULT_PATH, "hi")


async def test_a_worker_gets_its_own_dyno_name_and_no_port(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    out = tmp_path / "worker.json"
    await runtime.apply(spec(tmp_path, "worker", out))
    await runtime.scale("envy", "worker", 1)
    env = await dumped(out)
    assert set(env) == BASE | {"GREETING"}
    assert env["DYNO"] == "worker.1"


async def test_the_release_phase_is_release_1(runtime: LocalRuntime, tmp_path: Path) -> None:
    result = await runtime.run_once(
        spec(tmp_path, "release", tmp_path / "unused.json"), "env", timeout=10
    )
    assert result.ok, result.output
    env = dict(line.split("=", 1) for line in result.output.splitlines())
    assert set(env) == BASE | {"GREETING"}
    assert env["DYNO"] == "release.1"


async def test_the_control_planes_own_release_runner_is_release_1_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_must_not_leak")
    result = await run_release_command(
        "echo $DYNO; echo [$SLIPWAY_TOKEN]", cwd=str(tmp_path), env={}, timeout=10
    )
    assert result.ok
    assert result.output == "release.1\n[]\n"


def test_a_slugs_path_puts_its_tools_before_the_systems_never_slipways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/opt/slipway/venv/bin:/usr/bin")
    (tmp_path / SLUG_META).write_text("{}")
    (tmp_path / "app").mkdir()
    (tmp_path / ".venv").mkdir()
    cwd, env = slug_layout(str(tmp_path))
    assert cwd == str(tmp_path / "app")
    assert env == {
        "VIRTUAL_ENV": str(tmp_path / ".venv"),
        "PATH": f"{tmp_path / '.venv' / 'bin'}:{DEFAULT_PATH}",
    }


class TestKubernetesCarriesTheSameVariables:
    spec = ProcessSpec("envy", "worker", "rq worker", env={"DYNO": "spoofed"}, image="img:1")

    def test_a_deployment_sets_port_and_dyno_over_the_secret(self) -> None:
        manifest = manifests.deployment(self.spec, port=5000, replicas=1)
        [container] = manifest["spec"]["template"]["spec"]["containers"]
        assert container["env"] == [
            {"name": "PORT", "value": "5000"},
            {"name": "DYNO", "value": "worker.1"},
        ]

    def test_a_release_job_is_release_1(self) -> None:
        job = manifests.once_job(self.spec, "migrate", name="envy-run-v1-abc", timeout=60)
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["env"] == [{"name": "DYNO", "value": "release.1"}]


async def test_a_confined_process_has_a_tmp_of_its_own_it_can_write(tmp_path: Path) -> None:
    """Heroku apps write to /tmp (gunicorn's heartbeat files, tempfile): the sandbox's /tmp
    is writable by the app's own uid, and private: the host's /tmp is not there."""
    confiner = detect()
    assert confiner.confined, confiner.reason
    host_file = Path("/tmp") / f"heroenv-host-{secrets.token_hex(4)}"
    host_file.write_text("the host's")
    script = (
        "import os, tempfile; fd, name = tempfile.mkstemp(); os.write(fd, b'x'); "
        f"print(os.path.dirname(name), os.getuid() != 0, os.path.exists({str(host_file)!r}))"
    )
    try:
        child = await spawn(
            [sys.executable, "-S", "-c", script],
            cwd=str(tmp_path),
            env=app_env({}, home=str(tmp_path)),
            confiner=confiner,
            jail=Jail(app="tmpwriter", read_only=(str(tmp_path),)),
            merge_stderr=True,
        )
        try:
            async with asyncio.timeout(15):
                out = await child.stdout.read()
                assert await child.wait() == 0, out
        finally:
            child.close()
    finally:
        host_file.unlink()
    running_as_root = os.geteuid() == 0  # then the app gets a uid of its own
    assert out.decode().split() == ["/tmp", str(running_as_root), "False"]
