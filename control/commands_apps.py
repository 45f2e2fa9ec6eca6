"""``apps:info``, ``maintenance[:on|:off]``, ``releases:info`` and ``releases:output``.

Heroku's commands of the same names, over the same API as the rest of the
CLI (control/commands.py holds the shared options and the older commands).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import click

from control.client import Client, CliError
from control.cliformat import ago, columns, parse_iso, span
from control.commands import app_option, emit, json_option, need_app, quote


def web_url(name: str, domains: list[dict[str, Any]]) -> str:
    """Where the app answers: its first domain, else APP.SLIPWAY_APPS_DOMAIN (as ``open``)."""
    if domains:
        return f"http://{domains[0]['hostname']}/"
    return f"http://{name}.{os.environ.get('SLIPWAY_APPS_DOMAIN', 'localhost')}/"


def info_lines(
    app: dict[str, Any],
    *,
    domains: list[dict[str, Any]],
    formation: list[dict[str, Any]],
    addons: list[dict[str, Any]],
    release: dict[str, Any] | None,
    config_count: int,
    now: float,
) -> list[str]:
    name = app["name"]
    web = next((f for f in formation if f["type"] == "web"), None)
    if web is None:
        sleeps = "-"
    elif web["never_sleep"]:
        sleeps = "never"
    else:
        sleeps = f"after {span(web['idle_after'])} without requests"
    rows = [
        ["Web URL:", web_url(name, domains)],
        ["Domains:", ", ".join(d["hostname"] for d in domains) or "-"],
        [
            "Release:",
            "-"
            if release is None
            else f"v{release['version']} {release['description']}, "
            f"{ago(parse_iso(release['created_at']), now)}",
        ],
        ["Dynos:", ", ".join(f"{f['type']}: {f['quantity']}" for f in formation) or "-"],
        ["Sleeps:", sleeps],
        ["Maintenance:", "on (the router answers H80)" if app.get("maintenance") else "off"],
        [
            "Add-ons:",
            ", ".join(
                f"{a['name']} ({a['plan']['name']} as {a['attachment']['name']})" for a in addons
            )
            or "-",
        ],
        ["Config vars:", str(config_count)],
        ["Created:", ago(parse_iso(app["created_at"]), now)],
    ]
    return [f"=== {name}", *columns(rows)]


@click.command("apps:info")
@click.argument("target", metavar="[APP]", required=False)
@app_option
@json_option
def apps_info(target: str | None, app: str | None, as_json: bool) -> None:
    """An app at a glance: URL, release, dynos, sleep, maintenance, add-ons."""
    name = need_app(target or app)
    client = Client.from_env()
    base = f"/apps/{quote(name)}"
    found = client.call("GET", base).body
    domains = client.call("GET", f"{base}/domains").body
    formation = client.call("GET", f"{base}/formation").body
    addons = client.call("GET", f"{base}/addons").body
    config = client.call("GET", f"{base}/config-vars").body
    release = None
    if found["current_release"] is not None:
        release = client.call("GET", f"{base}/releases/{found['current_release']}").body
    if as_json:
        emit(
            {
                "app": found,
                "domains": domains,
                "formation": formation,
                "addons": addons,
                "release": release,
                "web_url": web_url(name, domains),
            }
        )
        return
    for line in info_lines(
        found,
        domains=domains,
        formation=formation,
        addons=addons,
        release=release,
        config_count=len(config),
        now=time.time(),
    ):
        click.echo(line)


# -- maintenance ----------------------------------------------------------------------


def _set_maintenance(name: str, on: bool) -> None:
    Client.from_env().call("PATCH", f"/apps/{quote(name)}", {"maintenance": on})
    state = "Enabling" if on else "Disabling"
    click.echo(f"{state} maintenance mode for {name}... done")


@click.command("maintenance")
@app_option
def maintenance(app: str | None) -> None:
    """Whether the app is in maintenance mode (the router answers H80)."""
    name = need_app(app)
    found = Client.from_env().call("GET", f"/apps/{quote(name)}").body
    click.echo("on" if found.get("maintenance") else "off")


@click.command("maintenance:on")
@app_option
def maintenance_on(app: str | None) -> None:
    """Answer every request with a maintenance page (503, H80); processes keep running."""
    _set_maintenance(need_app(app), True)


@click.command("maintenance:off")
@app_option
def maintenance_off(app: str | None) -> None:
    """Send requests to the app again."""
    _set_maintenance(need_app(app), False)


# -- releases ---------------------------------------------------------------------------


def _release(name: str, version: str | None) -> dict[str, Any]:
    """The release VERSION (v3 or 3), or the current one."""
    client = Client.from_env()
    if version is None:
        current = client.call("GET", f"/apps/{quote(name)}").body["current_release"]
        if current is None:
            raise CliError(f"{name} has no release yet")
        version = str(current)
    match = re.fullmatch(r"v?(\d+)", version)
    if match is None:
        raise CliError(f"{version!r} is not a release version (like v3)")
    body: dict[str, Any] = client.call("GET", f"/apps/{quote(name)}/releases/{match.group(1)}").body
    return body


@click.command("releases:info")
@click.argument("version", required=False)
@app_option
@json_option
def releases_info(version: str | None, app: str | None, as_json: bool) -> None:
    """One release (VERSION, or the current one): what it runs and how it went."""
    name = need_app(app)
    release = _release(name, version)
    if as_json:
        emit(release)
        return
    now = time.time()
    processes = release.get("procfile") or {}
    rows = [
        ["Status:", release["status"] + (" (current)" if release["current"] else "")],
        ["Change:", release["description"]],
        ["By:", release["user"]["actor"]],
        ["When:", ago(parse_iso(release["created_at"]), now)],
        ["Code:", release.get("artifact") or "-"],
        ["Processes:", ", ".join(sorted(processes)) or "-"],
        ["Config vars:", ", ".join(release.get("config_var_names") or []) or "-"],
    ]
    click.echo(f"=== Release v{release['version']} of {name}")
    for line in columns(rows):
        click.echo(line)
    for kind, command in sorted(processes.items()):
        click.echo(f"  {kind}: {command}")


@click.command("releases:output")
@click.argument("version", required=False)
@app_option
def releases_output(version: str | None, app: str | None) -> None:
    """The release phase's output (VERSION, or the current release)."""
    name = need_app(app)
    release = _release(name, version)
    output = release.get("output") or ""
    if not output:
        has_phase = "release" in (release.get("procfile") or {})
        why = "it printed nothing" if has_phase else "its Procfile has no release command"
        click.echo(f"v{release['version']} has no release output: {why}", err=True)
        return
    click.echo(output.rstrip("\n"))
