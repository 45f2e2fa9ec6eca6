"""The Python an app asks for (.python-version, runtime.txt) is the one its virtualenv runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from control.builds import pythons
from control.builds.errors import DetectError
from control.builds.local import LocalBuilder
from control.builds.model import Source
from tests.builds.apps import RecordingSink, commit, python_app


def _interpreter(label: str) -> pythons.Interpreter:
    major, minor, patch = (int(p) for p in label.split("."))
    return pythons.Interpreter((major, minor, patch), f"/opt/py/{label}/bin/python3", "/opt/py")


MACHINE = [_interpreter(v) for v in ("3.10.13", "3.11.2", "3.11.7", "3.12.1")]


@pytest.mark.parametrize(
    ("files", "wanted", "why"),
    [
        ({".python-version": "3.11\n"}, "3.11.7", "from .python-version"),
        ({".python-version": "3.11.2\n"}, "3.11.2", "from .python-version"),
        ({".python-version": "# pinned\n3.10\n"}, "3.10.13", "from .python-version"),
        ({"runtime.txt": "python-3.12.1\n"}, "3.12.1", "from runtime.txt"),
        ({".python-version": "3.10", "runtime.txt": "python-3.12.1"}, "3.10.13", "from .python"),
        ({}, "3.12.1", "the newest here"),
    ],
)
def test_the_version_asked_for_picks_the_newest_matching_interpreter(
    tmp_path: Path, files: dict[str, str], wanted: str, why: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    chosen, reason = pythons.choose(pythons.parse_request(tmp_path), MACHINE)

    assert chosen.label == wanted
    assert reason.startswith(why)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (".python-version", "3.9\n", r"Python 3\.9 was asked for \(\.python-version\) but this "
         r"builder has 3\.10\.13, 3\.11\.2, 3\.11\.7, 3\.12\.1: ask for one of those"),
        ("runtime.txt", "python-3.11.5", r"Python 3\.11\.5 was asked for \(runtime\.txt\)"),
        (".python-version", "system\n", r"\.python-version asks for 'system', which is no"),
        ("runtime.txt", "pypy-3.10", r"runtime\.txt asks for 'pypy-3\.10'.*python-3\.12\.1"),
        (".python-version", "2.7.18", r"'2\.7\.18', which is no Python 3 version"),
    ],
)  # fmt: skip
def test_a_version_the_machine_lacks_is_one_line_naming_asked_and_available(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)

    with pytest.raises(DetectError, match=message) as caught:
        pythons.choose(pythons.parse_request(tmp_path), MACHINE)
    assert "\n" not in str(caught.value)


async def test_this_machine_s_interpreters_are_found_each_once_with_its_version() -> None:
    found = await pythons.discover("/usr/bin:/bin")

    assert found, "the machine runs these tests on a Python 3"
    assert len({i.version for i in found}) == len(found)
    for interpreter in found:
        ran = subprocess.run(
            [interpreter.path, "-c", "import sys; print(*sys.version_info[:3], sys.base_prefix)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert ran.stdout.split() == [*map(str, interpreter.version), interpreter.prefix]


async def _machine_versions() -> list[pythons.Interpreter]:
    return [i for i in await pythons.discover("/usr/bin:/bin") if i.version >= (3, 10)]


async def test_the_app_s_virtualenv_runs_the_python_its_python_version_file_names(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    found = await _machine_versions()
    # The oldest the builder's pip runs under: never the default (the newest), when the
    # machine has two.
    asked = found[0]
    repo = tmp_path / "repo"
    sha = commit(repo, {**python_app(), ".python-version": f"{asked.label}\n"})

    artifact = await builder.build("pinned", Source.git(str(repo), sha))

    assert artifact.slug is not None
    ran = subprocess.run(
        [str(artifact.slug / ".venv/bin/python"), "-c", "import sys, tinydep; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.startswith(asked.label + " ")
    assert f"-----> Using Python {asked.label} (from .python-version)" in sink.texts()


async def test_with_no_version_asked_the_newest_is_used_and_the_output_says_so(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    newest = (await pythons.discover("/usr/bin:/bin"))[-1]
    sha = commit(tmp_path / "repo", python_app(deps=False))

    artifact = await builder.build("unpinned", Source.git(str(tmp_path / "repo"), sha))

    assert artifact.slug is not None
    assert (artifact.slug / ".venv/bin/python").resolve() == Path(newest.path).resolve()
    assert (
        f"-----> Using Python {newest.label} (the newest here; pin one with .python-version)"
        in sink.texts()
    )


async def test_a_version_the_builder_lacks_fails_before_pip_in_one_line(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", {**python_app(), "runtime.txt": "python-3.4.10\n"})

    with pytest.raises(DetectError, match=r"Python 3\.4\.10 was asked for \(runtime\.txt\)"):
        await builder.build("old", Source.git(str(tmp_path / "repo"), sha))
    texts = sink.texts()
    assert not any("pip" in text for text in texts)
    assert texts[-1].startswith(" !     Python 3.4.10 was asked for (runtime.txt) but this")


async def test_a_python_older_than_the_builder_s_pip_installs_with_its_own(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    old = [
        i for i in await pythons.discover("/usr/bin:/bin") if i.version[:2] < pythons.PIP_PYTHON_MIN
    ]
    if not old:
        pytest.skip("this machine has no Python older than 3.10 (CI's pyenv does)")
    sha = commit(tmp_path / "repo", {**python_app(), ".python-version": old[-1].label})

    artifact = await builder.build("legacy", Source.git(str(tmp_path / "repo"), sha))

    assert artifact.slug is not None
    ran = subprocess.run(
        [str(artifact.slug / ".venv/bin/python"), "app.py"],
        cwd=artifact.slug / "app",
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout == "tinydep 1.0\n"
