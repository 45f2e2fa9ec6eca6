"""A slug on the Python or the Node an app asked for runs in the app's sandbox.

The sandbox (kit/spawn.py) mounts the system's directories, slipway's own
interpreter and the app's slug with its dependency sets; a virtualenv made
with a pyenv Python links into that Python's prefix, and a Node fetched from
the registry lives in the builder's cache. Both must still run there, built
confined and run confined, as ``slipway up`` runs them.
"""

from __future__ import annotations

import asyncio
import json
import tarfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.local import jail_of
from control.builds import pythons
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from control.releasing import slug_layout
from kit.spawn import Confiner, app_env, detect, spawn
from tests.builds.apps import RecordingSink, python_app


@pytest.fixture
def confiner() -> Confiner:
    found = detect()
    if not found.confined:
        pytest.skip(f"no sandbox on this machine: {found.reason}")
    return found


def _upload(tmp_path: Path, files: dict[str, str | bytes]) -> Source:
    """An uploaded tarball: a confined build reads no path of the host (no git repository)."""
    tree = tmp_path / "tree"
    for name, content in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=".")
    return Source.archive(archive)


def _builder(tmp_path: Path, confiner: Confiner) -> LocalBuilder:
    settings = BuildSettings(root=tmp_path / "builds", pip_args=("--no-index",), timeout=120)
    return LocalBuilder(
        settings, sink=RecordingSink(), metrics=BuildMetrics(CollectorRegistry()), confiner=confiner
    )


async def _run_confined(app: str, slug: Path, argv: list[str], confiner: Confiner) -> str:
    """``argv`` as the agent runs a process of the release: its PATH, its jail."""
    cwd, env = slug_layout(str(slug))
    assert cwd is not None
    proc = await spawn(
        argv,
        cwd=cwd,
        env=app_env(env, home=cwd, platform={"DYNO": "web.1"}),
        confiner=confiner,
        jail=jail_of(app, cwd),
        merge_stderr=True,
    )
    try:
        async with asyncio.timeout(30):
            out = await proc.stdout.read()
            code = await proc.wait()
    finally:
        proc.close()
    text = out.decode(errors="replace")
    assert code == 0, text
    return text


async def test_a_slug_on_a_python_other_than_slipway_s_runs_in_its_sandbox(
    tmp_path: Path, confiner: Confiner
) -> None:
    found = await pythons.discover("/usr/bin:/bin")
    others = [i for i in found if i.prefix != "/usr" and i.version[:2] >= (3, 10)]
    if not others:
        pytest.skip("this machine has one Python only")
    asked = others[-1]
    files = {**python_app(), ".python-version": asked.label}
    artifact = await _builder(tmp_path, confiner).build("pinned", _upload(tmp_path, files))

    assert artifact.slug is not None
    out = await _run_confined(
        "pinned",
        artifact.slug,
        ["python", "-c", "import sys, tinydep; print(sys.version.split()[0], tinydep.VERSION)"],
        confiner,
    )
    assert out.split() == [asked.label, "1.0"]


async def test_a_fetched_node_runs_the_app_in_its_sandbox(
    tmp_path: Path, confiner: Confiner
) -> None:
    files = {
        "Procfile": "web: node index.js\n",
        "index.js": "console.log(process.version)\n",
        "package.json": json.dumps({"name": "n", "private": True, "engines": {"node": "22.x"}}),
    }
    artifact = await _builder(tmp_path, confiner).build("engines", _upload(tmp_path, files))

    assert artifact.slug is not None
    out = await _run_confined("engines", artifact.slug, ["node", "index.js"], confiner)
    assert out.startswith("v22.")


async def test_an_app_process_can_make_temporary_files_in_its_private_tmp(
    tmp_path: Path, confiner: Confiner
) -> None:
    """gunicorn's workers each make one at start: a /tmp the app's uid cannot write is an
    app that never boots (seen with tests/heroku/apps/django under `slipway up` as root)."""
    files = {**python_app(deps=False), "web.py": "import tempfile; print(tempfile.mkstemp()[1])\n"}

    artifact = await _builder(tmp_path, confiner).build("tempfiles", _upload(tmp_path, files))

    assert artifact.slug is not None
    out = await _run_confined("tempfiles", artifact.slug, ["python", "web.py"], confiner)
    assert out.startswith("/tmp/tmp")
