"""Apps written as Heroku's samples are deploy unchanged, and work through the router.

Each test reproduces traps a Heroku user fell into:

- Django: the Python its ``.python-version`` names; ``collectstatic`` at build
  time (ManifestStaticFilesStorage answers 500 without its manifest); a release
  phase ``migrate`` on the add-on's database, chosen by ``DYNO`` in settings;
  ``ssl_require=True`` against the add-on's PostgreSQL.
- Express: no lockfile (``npm install``) and an ``engines.node`` other than the
  machine's, which both the build and the web process run on.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from tests.heroku.conftest import Platform, source_files

#: Bound on the first request to a freshly released app (a cold gunicorn boots in ~1 s).
FIRST_REQUEST = 60.0


def _lines(output: str) -> list[str]:
    return output.splitlines()


async def test_a_django_app_builds_migrates_over_tls_and_serves_its_static_files(
    platform: Platform, tmp_path: Path
) -> None:
    app = "django-hello"
    assert (await platform.cli("apps:create", app)).exit_code == 0
    status, addon = await platform.call("POST", f"/apps/{app}/addons", {"plan": "postgres"})
    assert status == 201, addon
    assert "provision_message" not in addon  # the suite's PostgreSQL speaks TLS
    assert (await platform.cli("config:set", "SECRET_KEY=not-so-secret", "-a", app)).exit_code == 0
    platform.share_caches(app)

    started = time.monotonic()
    result = await platform.deploy(app, "django", tmp_path)
    took = time.monotonic() - started

    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    asked = source_files("django")[".python-version"]
    assert isinstance(asked, bytes)
    using = [line for line in lines if line.startswith("-----> Using Python ")]
    assert len(using) == 1, result.output
    assert re.fullmatch(
        rf"-----> Using Python {re.escape(asked.decode().strip())}\.\d+ \(from \.python-version\)",
        using[0],
    )
    order = [
        "-----> Python app detected",
        "-----> Installing requirements with pip",
        "-----> $ python manage.py collectstatic --noinput",
        "-----> Discovering process types",
        "       Procfile declares types -> release, web",
        "-----> Running release command: python manage.py migrate --noinput",
        "         Applying hello.0001_initial... OK",
        "-----> Released v4",
    ]
    found = [lines.index(wanted) for wanted in order if wanted in lines]
    assert len(found) == len(order), result.output
    assert found == sorted(found), result.output
    assert any(re.search(r"\d+ static files? copied to", line) for line in lines)
    # The release record keeps the release phase's output too.
    status, release = await platform.call("GET", f"/apps/{app}/releases/4")
    assert status == 200
    assert "Applying hello.0001_initial... OK" in release["output"]

    status, page = await platform.get(app)
    assert status == 200, page
    assert "visits=1 vendor=postgresql ssl=True" in page
    status, page = await platform.get(app)
    assert "visits=2 vendor=postgresql ssl=True" in page
    css = re.search(r'href="(/static/hello/app\.[0-9a-f]{12}\.css)"', page)
    assert css is not None, page  # the manifest's hashed name: collectstatic ran
    status, body = await platform.get(app, css[1])
    assert status == 200
    assert "font-family" in body
    print(f"\ndjango-hello: deployed in {took:.1f}s")  # the figure docs/builds.md reports


async def test_an_express_app_without_a_lockfile_runs_on_the_node_its_engines_ask_for(
    platform: Platform, tmp_path: Path
) -> None:
    app = "express-hello"
    machine = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    assert not machine.stdout.startswith("v22."), "the test needs another Node than 22 here"
    assert (await platform.cli("apps:create", app)).exit_code == 0
    platform.share_caches(app)

    started = time.monotonic()
    result = await platform.deploy(app, "express", tmp_path)
    took = time.monotonic() - started

    assert result.exit_code == 0, result.output
    lines = _lines(result.output)
    assert "-----> Node app detected" in lines
    assert any(
        re.fullmatch(
            r"-----> Using Node v22\.\d+\.\d+ \((downloaded|cached), for engines.node '22.x'\)",
            line,
        )
        for line in lines
    ), result.output
    assert "-----> Installing dependencies with npm install (no package-lock.json)" in lines
    assert "       Procfile declares types -> web" in lines

    status, page = await platform.get(app)
    assert status == 200, page
    assert re.fullmatch(r"node v22\.\d+\.\d+ dyno web\.\d+\n", page), page
    print(f"\nexpress-hello: deployed in {took:.1f}s")
