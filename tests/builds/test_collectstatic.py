"""Django's collectstatic at build time, as Heroku's Python build runs it.

The builder's part is tested here with a stand-in ``django`` wheel (no index
in these tests) and a manage.py that records how it was run; a real Django
app goes through it end to end in tests/heroku/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.builds.errors import BuildFailed
from control.builds.local import LocalBuilder
from control.builds.model import Source
from tests.builds.apps import RecordingSink, commit, wheel

#: Writes what it was asked and saw into STATIC_ROOT, as collectstatic fills it.
MANAGE = """\
import json, os, sys
if os.environ.get("FAIL_COLLECTSTATIC"):
    print("ValueError: Missing staticfiles manifest entry for 'app.css'")
    sys.exit(1)
if sys.argv[1:] == ["collectstatic", "--noinput"]:
    os.makedirs("staticfiles", exist_ok=True)
    with open("staticfiles/ran.json", "w") as out:
        json.dump({"argv": sys.argv[1:], "secret": os.environ.get("SECRET_KEY"),
                   "dyno": os.environ.get("DYNO"), "source": os.environ.get("SOURCE_VERSION"),
                   "venv": os.environ.get("VIRTUAL_ENV", "")}, out)
    print("1 static file copied to 'staticfiles'.")
"""


def django_app() -> dict[str, str | bytes]:
    name, data = wheel("django", "5.1", "VERSION = (5, 1)\n")
    return {
        "Procfile": "web: python manage.py runserver\n",
        "requirements.txt": f"./vendor/{name}\n",
        f"vendor/{name}": data,
        "manage.py": MANAGE,
    }


async def test_collectstatic_runs_with_the_apps_config_and_its_files_are_in_the_slug(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", django_app())
    source = Source.git(str(tmp_path / "repo"), sha, config={"SECRET_KEY": "s3cret"})

    artifact = await builder.build("django", source)

    assert artifact.slug is not None
    ran = json.loads((artifact.slug / "app" / "staticfiles" / "ran.json").read_text())
    assert ran["argv"] == ["collectstatic", "--noinput"]
    # The config vars as Heroku gives them to its build; no DYNO at build time.
    assert (ran["secret"], ran["dyno"], ran["source"]) == ("s3cret", None, sha)
    assert ran["venv"].endswith("/.venv")
    texts = sink.texts()
    assert "-----> $ python manage.py collectstatic --noinput" in texts
    assert "       1 static file copied to 'staticfiles'." in texts
    assert not any("s3cret" in text for text in texts)


async def test_disable_collectstatic_skips_it_and_says_so(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    sha = commit(tmp_path / "repo", django_app())
    source = Source.git(str(tmp_path / "repo"), sha, config={"DISABLE_COLLECTSTATIC": "1"})

    artifact = await builder.build("django", source)

    assert artifact.slug is not None
    assert not (artifact.slug / "app" / "staticfiles").exists()
    assert "-----> Skipping Django collectstatic (DISABLE_COLLECTSTATIC is set)" in sink.texts()


async def test_a_failing_collectstatic_fails_the_build_with_its_output(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    sha = commit(tmp_path / "repo", django_app())
    source = Source.git(str(tmp_path / "repo"), sha, config={"FAIL_COLLECTSTATIC": "1"})

    with pytest.raises(BuildFailed, match="Django's collectstatic failed") as caught:
        await builder.build("django", source)
    assert "Missing staticfiles manifest entry for 'app.css'" in "\n".join(caught.value.tail)
    assert "DISABLE_COLLECTSTATIC=1" in caught.value.message


async def test_without_django_installed_manage_py_is_left_alone(
    tmp_path: Path, builder: LocalBuilder, sink: RecordingSink
) -> None:
    files = {**django_app(), "requirements.txt": "# none\n"}
    sha = commit(tmp_path / "repo", files)

    artifact = await builder.build("plain", Source.git(str(tmp_path / "repo"), sha))

    assert artifact.slug is not None
    assert not (artifact.slug / "app" / "staticfiles").exists()
    assert not any("collectstatic" in text for text in sink.texts())
