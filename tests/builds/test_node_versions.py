"""engines.node honoured: the machine's Node when it fits, else one from the npm registry;
``npm install`` when the app has no lockfile, as on Heroku."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from control.builds import nodes
from control.builds.errors import DetectError
from control.builds.local import LocalBuilder
from control.builds.model import Source
from control.releasing import slug_layout
from tests.builds.apps import RecordingSink, commit

NO_LOCK_APP = {
    "Procfile": "web: node index.js\n",
    "index.js": "console.log(process.version)\n",
}


def _package(engines: str | None = None) -> str:
    manifest: dict[str, object] = {"name": "demo", "version": "1.0.0", "private": True}
    if engines is not None:
        manifest["engines"] = {"node": engines}
    return json.dumps(manifest)


def _machine_node() -> nodes.Version:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    version = nodes.parse_version(out.stdout)
    assert version is not None
    return version


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("22", [(22, 0, 0), (22, 23, 5)], [(21, 9, 9), (23, 0, 0)]),
        ("22.x", [(22, 1, 0)], [(20, 1, 0), (23, 0, 0)]),
        ("22.3", [(22, 3, 9)], [(22, 4, 0)]),
        ("^22.3.1", [(22, 3, 1), (22, 20, 0)], [(22, 3, 0), (23, 0, 0)]),
        ("~22.3.1", [(22, 3, 5)], [(22, 4, 0)]),
        (">=18 <21", [(18, 0, 0), (20, 20, 2)], [(17, 9, 0), (21, 0, 0)]),
        (">= 18", [(26, 0, 0)], [(16, 0, 0)]),
        (">20", [(21, 0, 0)], [(20, 99, 0)]),
        ("<=20", [(20, 99, 0)], [(21, 0, 0)]),
        ("18 - 20", [(18, 0, 0), (20, 9, 0)], [(21, 0, 0)]),
        ("18 || 22.x", [(18, 2, 0), (22, 0, 0)], [(20, 0, 0)]),
        ("v22.12.0", [(22, 12, 0)], [(22, 12, 1)]),
        ("*", [(0, 10, 0), (26, 0, 0)], []),
    ],
)
def test_engines_ranges_mean_what_npm_means(
    text: str, inside: list[nodes.Version], outside: list[nodes.Version]
) -> None:
    request = nodes.parse_range(text)
    assert all(request.allows(v) for v in inside)
    assert not any(request.allows(v) for v in outside)


@pytest.mark.parametrize("text", ["latest-lts", "22.a", "node 22", ">=x.y.z!"])
def test_an_engines_range_npm_would_not_read_fails_naming_it(text: str) -> None:
    with pytest.raises(DetectError, match=r"engines\.node .* is not a version range npm"):
        nodes.parse_range(text)


def test_the_registry_s_answer_is_read_whether_one_version_or_many() -> None:
    assert nodes.registry_versions('"22.1.0"') == [(22, 1, 0)]
    assert nodes.registry_versions('["22.2.0", "22.10.1", "bad"]') == [(22, 2, 0), (22, 10, 1)]
    assert nodes.registry_versions("") == []


async def test_without_a_lockfile_npm_install_installs_as_on_heroku(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", {**NO_LOCK_APP, "package.json": _package()})

    artifact = await builder.build("nolock", Source.git(str(tmp_path / "repo"), sha))

    assert artifact.slug is not None
    assert (artifact.slug / "app" / "node_modules").resolve().is_dir()
    texts = sink.texts()
    assert "-----> Installing dependencies with npm install (no package-lock.json)" in texts
    machine = nodes.label(_machine_node())
    assert f"-----> Using Node {machine} (the machine's; package.json names no engines.node)" in (
        texts
    )


async def test_an_engines_node_the_machine_lacks_is_fetched_cached_and_run_by_the_release(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    machine = _machine_node()
    asked = f"{machine[0] + 2}.x"  # another major than the machine's (v20 here: 22.x)
    repo = tmp_path / "repo"
    first = commit(repo, {**NO_LOCK_APP, "package.json": _package(asked)})
    second = commit(repo, {"index.js": "console.log('again', process.version)\n"})

    cold = await builder.build("engines", Source.git(str(repo), first))
    warm = await builder.build("engines", Source.git(str(repo), second))

    assert cold.slug is not None
    assert warm.slug is not None
    # The release's PATH (releasing.slug_layout) is what runs the app's processes.
    cwd, env = slug_layout(str(cold.slug))
    ran = subprocess.run(
        ["node", "index.js"],
        cwd=cwd,
        env={"PATH": env["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    version = nodes.parse_version(ran.stdout.strip())
    assert version is not None
    assert version[0] == machine[0] + 2
    texts = sink.texts()
    assert f"-----> Using Node {nodes.label(version)} (downloaded, for engines.node '{asked}')" in (
        texts
    )
    assert f"-----> Using Node {nodes.label(version)} (cached, for engines.node '{asked}')" in texts
    assert warm.cache_hit


async def test_an_engines_node_nobody_has_fails_in_one_line_naming_asked_and_available(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", {**NO_LOCK_APP, "package.json": _package("99.x")})

    with pytest.raises(DetectError) as caught:
        await builder.build("future", Source.git(str(tmp_path / "repo"), sha))

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Node 99.x was asked for (package.json engines.node) but this")
    assert nodes.label(_machine_node()) in message
    assert not any("npm install" in text for text in sink.texts())


def test_npm_s_warnings_beside_its_json_do_not_hide_the_versions() -> None:
    noisy = 'npm warn config production Use `--omit=dev` instead.\n[\n  "22.1.0",\n  "22.3.0"\n]\n'
    assert nodes.registry_versions(noisy) == [(22, 1, 0), (22, 3, 0)]
    cut = 'npm warn something\n[\n  "22.1.0",\n  "22.3.0"\nnpm warn late\n'
    assert nodes.registry_versions(cut) == [(22, 1, 0), (22, 3, 0)]
