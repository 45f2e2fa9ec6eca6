"""``addons:info``, ``addons:plans``, ``addons:upgrade`` and ``pg:psql``, Heroku's way."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import click

from control.client import Client, CliError
from control.cliformat import ago, columns, parse_iso
from control.commands import app_option, emit, json_option, need_app, quote


def find_addon(addons: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The add-on named ``ref``: its name (postgres-1a2b) or attachment (DATABASE)."""
    for addon in addons:
        if ref in (addon["name"], addon["attachment"]["name"], addon["config_vars"][0]):
            return addon
    names = ", ".join(a["name"] for a in addons) or "none"
    raise CliError(f"no add-on {ref!r} on this app (add-ons: {names})")


@click.command("addons:info")
@click.argument("addon")
@app_option
@json_option
def addons_info(addon: str, app: str | None, as_json: bool) -> None:
    """One add-on (by name or attachment, e.g. DATABASE): plan, attachment, since when."""
    name = need_app(app)
    found = find_addon(Client.from_env().call("GET", f"/apps/{quote(name)}/addons").body, addon)
    if as_json:
        emit(found)
        return
    rows = [
        ["Plan:", found["plan"]["name"]],
        ["Attachment:", f"{name}::{found['attachment']['name']}"],
        ["Config vars:", ", ".join(found["config_vars"])],
        ["Installed at:", ago(parse_iso(found.get("created_at")), time.time())],
    ]
    click.echo(f"=== {found['name']}")
    for line in columns(rows):
        click.echo(line)


@click.command("addons:plans")
@click.argument("service")
@json_option
def addons_plans(service: str, as_json: bool) -> None:
    """The plans of SERVICE (postgres, redis; Heroku's names too) and their limits."""
    plans = Client.from_env().call("GET", f"/addon-services/{quote(service)}/plans").body
    if as_json:
        emit(plans)
        return
    rows = [["", "PLAN", "LIMITS"]]
    for plan in plans:
        limits = ", ".join(f"{k}={v}" for k, v in sorted(plan["limits"].items()))
        rows.append(["default" if plan["default"] else "", plan["name"], limits or "-"])
    for line in columns(rows):
        click.echo(line)


def _change_plan(addon: str, plan: str, app: str | None, as_json: bool) -> None:
    name = need_app(app)
    path = f"/apps/{quote(name)}/addons/{quote(addon)}"
    moved = Client.from_env().call("PATCH", path, {"plan": plan}).body
    if as_json:
        emit(moved)
        return
    release = moved.get("release")
    tail = f", v{release['version']}" if release else ""
    click.echo(f"Changing {moved['name']} on {name} to {moved['plan']['name']}... done{tail}")
    if moved.get("message"):
        click.echo(moved["message"])
    if release and release["status"] != "succeeded":
        raise CliError(f"the release v{release['version']} {release['status']}")


@click.command("addons:upgrade")
@click.argument("addon")
@click.argument("plan")
@app_option
@json_option
def addons_upgrade(addon: str, plan: str, app: str | None, as_json: bool) -> None:
    """Move ADDON (name or attachment) to PLAN (basic, postgres:basic) in place, data kept."""
    _change_plan(addon, plan, app, as_json)


@click.command("addons:downgrade")
@click.argument("addon")
@click.argument("plan")
@app_option
@json_option
def addons_downgrade(addon: str, plan: str, app: str | None, as_json: bool) -> None:
    """As addons:upgrade; refused below what the add-on holds (its data, its volume)."""
    _change_plan(addon, plan, app, as_json)


@click.command("pg:psql", context_settings={"ignore_unknown_options": True})
@click.argument("database", required=False, default="DATABASE")
@app_option
@click.option("-c", "--command", "sql", help="Run this SQL and exit, as psql -c.")
@click.option("--psql", "psql", default="psql", show_default=True, help="The psql program.")
def pg_psql(database: str, app: str | None, sql: str | None, psql: str) -> None:
    """psql connected to the app's Postgres add-on (DATABASE, or another attachment)."""
    name = need_app(app)
    client = Client.from_env()
    addon = find_addon(client.call("GET", f"/apps/{quote(name)}/addons").body, database)
    if addon["service"] != "postgres":
        raise CliError(f"{addon['name']} is a {addon['service']} add-on, not Postgres")
    url = client.call("GET", f"/apps/{quote(name)}/config-vars").body.get(addon["config_vars"][0])
    if not url:
        raise CliError(f"{name} has no {addon['config_vars'][0]}; is the add-on attached?")
    program = shutil.which(psql)
    if program is None:
        raise CliError(
            f"{psql!r} is not installed here: install PostgreSQL's client "
            "(apt-get install postgresql-client), or give --psql PATH"
        )
    argv = [program, url, *(["-c", sql] if sql is not None else [])]
    click.echo(f"--> Connecting to {addon['name']}", err=True)
    # exec: psql owns the terminal, its exit code is the command's.
    os.execv(program, argv)
