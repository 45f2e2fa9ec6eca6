"""The local builder on real git repositories: what a successful build leaves behind."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from prometheus_client import CollectorRegistry

from control.builds.local import SLUG_META, LocalBuilder
from control.builds.model import Source, Stack
from control.builds.settings import BuildSettings
from tests.builds.apps import RecordingSink, commit, python_app


async def test_a_python_app_builds_into_a_slug_with_its_dependencies_and_process_types(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings
) -> None:
    repo = tmp_path / "repo"
    sha = commit(repo, python_app())

    artifact = await builder.build("demo", Source.git(str(repo), sha))

    assert artifact.app == "demo"
    assert artifact.commit == sha
    assert artifact.stack is Stack.PYTHON
    assert dict(artifact.process_types) == {"web": "python app.py", "worker": "python worker.py"}
    assert artifact.cache_hit is False
    assert artifact.digest.startswith("sha256:")
    assert len(artifact.digest) == len("sha256:") + 64
    assert artifact.slug == settings.slugs_dir / "demo" / artifact.build_id
    assert not (artifact.slug / "app" / ".git").exists()
    ran = subprocess.run(
        [str(artifact.slug / ".venv" / "bin" / "python"), "app.py"],
        cwd=artifact.slug / "app",
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout == "tinydep 1.0\n"
    meta = json.loads((artifact.slug / SLUG_META).read_text())
    assert meta["commit"] == sha
    assert meta["digest"] == artifact.digest
    assert meta["process_types"] == {"web": "python app.py", "worker": "python worker.py"}
    assert list(settings.work_dir.iterdir()) == []


async def test_build_output_streams_to_the_sink_line_by_line_as_build_source(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", python_app())

    artifact = await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))

    # One "process" per build, so the logs service can stream one build's lines.
    assert {(app, source, process) for app, source, process, _, _ in sink.lines} == {
        ("demo", "build", f"build.{artifact.build_id}")
    }
    texts = sink.texts()
    assert all("\n" not in text for text in texts)
    assert "-----> Python app detected" in texts
    # What a Heroku user reads from Heroku's Python build, in the same order.
    assert "-----> Installing requirements with pip" in texts
    assert any(t.startswith("-----> Using Python 3.") for t in texts)
    assert texts.index("-----> Discovering process types") + 1 == texts.index(
        "       Procfile declares types -> web, worker"
    )
    assert any("Successfully installed tinydep-1.0" in text for text in texts)
    assert texts[-1].startswith(f"-----> Build {artifact.build_id} succeeded")
    assert {line[4] for line in sink.lines} == {1000.0}


async def test_the_same_commit_gives_the_same_digest_and_a_change_gives_another(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    repo = tmp_path / "repo"
    first = commit(repo, python_app(deps=False))
    second = commit(repo, {"app.py": "print('changed')\n"})

    one = await builder.build("demo", Source.git(str(repo), first))
    again = await builder.build("demo", Source.git(str(repo), first))
    changed = await builder.build("demo", Source.git(str(repo), second))

    assert one.build_id != again.build_id
    assert one.digest == again.digest
    assert changed.digest != one.digest
    assert changed.commit == second


async def test_a_tarball_with_one_top_directory_builds_from_inside_it(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    tree = tmp_path / "tree" / "demo-main"
    for name, content in python_app(deps=False).items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="demo-main")

    artifact = await builder.build("demo", Source.archive(archive))

    assert artifact.commit is None
    assert (artifact.slug / "app" / "Procfile").is_file()
    assert set(artifact.process_types) == {"web", "worker"}


async def test_a_pyproject_app_installs_its_listed_dependencies(
    tmp_path: Path, builder: LocalBuilder, registry: CollectorRegistry
) -> None:
    files = python_app()
    wheel_name = next(name for name in files if name.endswith(".whl"))
    del files["requirements.txt"]
    files["pyproject.toml"] = (
        '[project]\nname = "demo"\nversion = "0"\n'
        f'dependencies = ["tinydep @ file://{tmp_path}/repo/{wheel_name}"]\n'
    )
    sha = commit(tmp_path / "repo", files)

    artifact = await builder.build("demo", Source.git(str(tmp_path / "repo"), sha))

    ran = subprocess.run(
        [str(artifact.slug / ".venv" / "bin" / "python"), "app.py"],
        cwd=artifact.slug / "app",
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout == "tinydep 1.0\n"
    assert (
        registry.get_sample_value(
            "slipway_builds_total", {"stack": "python", "result": "succeeded"}
        )
        == 1.0
    )
