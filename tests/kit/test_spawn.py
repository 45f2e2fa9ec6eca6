"""The one spawner: the environment it builds, the sandbox line, stops and deaths."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit.spawn import DEFAULT_PATH, Confiner, Jail, Mode, app_env, detect, spawn


@pytest.fixture(scope="module")
def confiner() -> Confiner:
    found = detect()
    assert found.confined, f"these tests need bubblewrap, as CI installs it: {found.reason}"
    return found


def app(tmp_path: Path) -> tuple[str, Jail]:
    directory = tmp_path / "app"
    directory.mkdir()
    return str(directory), Jail(app="one", read_only=(str(directory),))


class TestTheEnvironmentIsBuiltNotInherited:
    def test_defaults_then_config_then_the_platforms_own(self) -> None:
        env = app_env(
            {"PATH": "/slug/.venv/bin:/usr/bin", "DYNO": "spoofed", "X": "1"},
            home="/srv/app",
            platform={"DYNO": "web.1", "PORT": "5000"},
        )
        assert env == {
            "PATH": "/slug/.venv/bin:/usr/bin",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "HOME": "/srv/app",
            "X": "1",
            "DYNO": "web.1",
            "PORT": "5000",
        }

    def test_nothing_of_this_processs_environment_gets_in(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SLIPWAY_TOKEN", "slw_secret")
        env = app_env({}, home=None)
        assert "SLIPWAY_TOKEN" not in env
        assert env["PATH"] == DEFAULT_PATH


class TestTheSandboxLine:
    def test_no_confinement_wraps_only_a_parent_death_signal(self) -> None:
        none = Confiner(Mode.NONE, reason="test", setpriv="/usr/bin/setpriv")
        argv = none.wrap(["sh", "-c", "x"], jail=Jail(app="a"), cwd="/srv")
        assert argv == ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "sh", "-c", "x"]

    def test_bwrap_mounts_the_jail_and_never_the_whole_root(self) -> None:
        boxed = Confiner(Mode.BWRAP, per_app_uid=True, bwrap="bwrap", setpriv="setpriv")
        argv = boxed.wrap(
            ["sh"], jail=Jail(app="a", read_only=("/srv/a",), read_write=("/w/a",)), cwd="/srv/a"
        )
        pairs = list(zip(argv, argv[1:], argv[2:], strict=False))
        assert ("--ro-bind", "/srv/a", "/srv/a") in pairs
        assert ("--bind", "/w/a", "/w/a") in pairs
        assert ("--ro-bind", "/", "/") not in pairs
        for flag in ("--unshare-pid", "--die-with-parent", "--new-session"):
            assert flag in argv
        assert "--unshare-net" not in argv  # a web process binds $PORT for the router
        assert argv[argv.index("--") + 1] == "setpriv"

    def test_each_app_gets_its_own_uid_and_keeps_it(self) -> None:
        boxed = Confiner(Mode.BWRAP, per_app_uid=True)
        assert boxed.uid_of("a") != boxed.uid_of("b")
        assert boxed.uid_of("a") == boxed.uid_of("a")
        assert boxed.uid_of("a") != 0

    def test_a_jail_holding_a_hidden_path_is_refused(self, tmp_path: Path) -> None:
        secret = tmp_path / "state" / "token"
        boxed = Confiner(Mode.BWRAP, hidden=(str(secret),))
        for path in (secret.parent, tmp_path, Path("/")):
            with pytest.raises(PermissionError, match="holds slipway's own state"):
                boxed.wrap(["sh"], jail=Jail(app="a", read_only=(str(path),)), cwd=None)
        assert boxed.wrap(["sh"], jail=Jail(app="a", read_only=(str(tmp_path / "app"),)), cwd=None)


class TestStopping:
    async def test_sigterm_reaches_the_command_in_a_sandbox_which_gets_its_grace(
        self, tmp_path: Path, confiner: Confiner
    ) -> None:
        """bwrap itself dies at once on SIGTERM (and its sandbox with it): the signal
        has to reach the command's own group instead."""
        cwd, jail = app(tmp_path)
        line = "trap 'sleep 0.2; echo graceful; exit 0' TERM; echo up; while :; do sleep 0.02; done"
        child = await spawn(
            ["/bin/sh", "-c", line],
            cwd=cwd,
            env=app_env({}, home=cwd),
            confiner=confiner,
            jail=jail,
        )
        try:
            assert await asyncio.wait_for(child.stdout.readline(), 10) == b"up\n"
            child.terminate()
            assert await asyncio.wait_for(child.wait(), 10) == 0
            assert b"graceful" in await asyncio.wait_for(child.stdout.read(), 10)
        finally:
            child.kill()
            child.close()

    async def test_kill_ends_everything_in_the_sandbox_even_a_new_session(
        self, tmp_path: Path, confiner: Confiner
    ) -> None:
        cwd, jail = app(tmp_path)
        marker = f"kill-test-{os.getpid()}-{time.monotonic_ns()}"
        child = await spawn(
            ["/bin/sh", "-c", "setsid sleep 300 & echo up; wait"],
            cwd=cwd,
            env=app_env({"MARKER": marker}, home=cwd),
            confiner=confiner,
            jail=jail,
        )
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"up\n"
        child.kill()
        assert await asyncio.wait_for(child.wait(), 10) == -signal.SIGKILL
        child.close()
        deadline = time.monotonic() + 5
        while _with_marker(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not _with_marker(marker)


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class TestDyingWithSlipway:
    def test_an_unconfined_child_dies_when_its_spawner_is_killed(self, tmp_path: Path) -> None:
        """Without a sandbox the direct child still gets a parent-death signal: a
        SIGKILL of the process that spawned it does not leave it running."""
        marker = f"pdeathsig-{os.getpid()}-{time.monotonic_ns()}"
        script = (
            "import asyncio, sys\n"
            "from kit.spawn import app_env, spawn\n"
            "async def main():\n"
            f"    env = app_env({{'M': '{marker}'}}, home='/')\n"
            "    child = await spawn(['sleep', '300'], cwd='/', env=env)\n"
            "    print('up', flush=True)\n"
            "    await asyncio.sleep(300)\n"
            "asyncio.run(main())\n"
        )
        parent = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": DEFAULT_PATH},
        )
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline() == b"up\n"
            assert _with_marker(marker)
        finally:
            parent.kill()
            parent.wait(10)
            if parent.stdout is not None:
                parent.stdout.close()
        deadline = time.monotonic() + 5
        while _with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _with_marker(marker)
