"""Long because: one short function per CLI command (about 40, Heroku's set).
The ``slipway`` commands people type, with Heroku's habits.

``-a/--app`` names the app (or ``SLIPWAY_APP``); ``--json`` prints what the
API returned; every failure is one ``Error: ...`` line and exit code 1.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from control.client import Client, CliError, find_token, login_file
from control.cliformat import ago, columns, parse_iso, span
from control.dashboard.cli import sign_in
from kit.redact import mask_text, mask_url
from kit.sse import Parser

F = TypeVar("F", bound=Callable[..., Any])


def app_option(func: F) -> F:
    return click.option(
        "-a", "--app", "app", envvar="SLIPWAY_APP", help="The app (or SLIPWAY_APP)."
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")(func)


def need_app(app: str | None) -> str:
    if not app:
        raise CliError("no app given: use --app NAME (or set SLIPWAY_APP)")
    return app


def quote(app: str) -> str:
    return urllib.parse.quote(app, safe="")


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# -- apps ---------------------------------------------------------------------------


@click.command("apps")
@json_option
def apps(as_json: bool) -> None:
    """List apps."""
    found = Client.from_env().get_all("/apps", "name")
    if as_json:
        emit(found)
        return
    click.echo("=== Apps")
    for app in found:
        click.echo(app["name"])


@click.command("apps:create")
@click.argument("name", required=False)
@json_option
def apps_create(name: str | None, as_json: bool) -> None:
    """Create an app (NAME, or a made-up one such as calm-river-4821)."""
    body = {} if name is None else {"name": name}
    app = Client.from_env().call("POST", "/apps", body).body
    if as_json:
        emit(app)
    else:
        click.echo(f"Creating {app['name']}... done")


@click.command("apps:rename")
@click.argument("new_name")
@app_option
@json_option
def apps_rename(new_name: str, app: str | None, as_json: bool) -> None:
    """Rename an app."""
    name = need_app(app)
    renamed = Client.from_env().call("PATCH", f"/apps/{quote(name)}", {"name": new_name}).body
    if as_json:
        emit(renamed)
    else:
        click.echo(f"Renaming {name} to {renamed['name']}... done")


@click.command("apps:destroy")
@click.argument("target", metavar="[APP]", required=False)
@app_option
@click.option("--confirm", help="The app's name again, to confirm.")
def apps_destroy(target: str | None, app: str | None, confirm: str | None) -> None:
    """Delete an app with its processes and add-ons (their data too)."""
    name = need_app(target or app)  # the argument over SLIPWAY_APP
    if confirm != name:
        raise CliError(f"this deletes {name} and its add-ons' data; confirm with --confirm {name}")
    Client.from_env().call("DELETE", f"/apps/{quote(name)}")
    click.echo(f"Destroying {name} (including all add-ons)... done")


# -- config -------------------------------------------------------------------------


def _show_config(config: dict[str, str], app: str, as_json: bool) -> None:
    if as_json:
        emit(config)
        return
    click.echo(f"=== {app} Config Vars")
    width = max((len(k) for k in config), default=0) + 1
    for key in sorted(config):
        click.echo(f"{key + ':':<{width}} {config[key]}")


@click.command("config")
@app_option
@json_option
def config(app: str | None, as_json: bool) -> None:
    """Show config vars (add-on URLs included)."""
    name = need_app(app)
    _show_config(
        Client.from_env().call("GET", f"/apps/{quote(name)}/config-vars").body, name, as_json
    )


@click.command("config:get")
@click.argument("key")
@app_option
def config_get(key: str, app: str | None) -> None:
    """Print one config var's value."""
    name = need_app(app)
    values = Client.from_env().call("GET", f"/apps/{quote(name)}/config-vars").body
    if key not in values:
        raise CliError(f"{name} has no config var {key}")
    click.echo(values[key])


@click.command("config:set")
@click.argument("pairs", nargs=-1, required=True)
@app_option
@json_option
def config_set(pairs: tuple[str, ...], app: str | None, as_json: bool) -> None:
    """Set config vars (KEY=VALUE ...) and restart the app with them."""
    name = need_app(app)
    changes: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{pair!r} is not KEY=VALUE")
        changes[key] = value
    response = Client.from_env().call("PATCH", f"/apps/{quote(name)}/config-vars", changes)
    if as_json:
        emit(response.body)
        return
    version = response.headers.get("Release-Version", "?")
    click.echo(f"Setting {', '.join(changes)} and restarting {name}... done, v{version}")


@click.command("config:unset")
@click.argument("keys", nargs=-1, required=True)
@app_option
@json_option
def config_unset(keys: tuple[str, ...], app: str | None, as_json: bool) -> None:
    """Unset config vars and restart the app without them."""
    name = need_app(app)
    response = Client.from_env().call(
        "PATCH", f"/apps/{quote(name)}/config-vars", dict.fromkeys(keys)
    )
    if as_json:
        emit(response.body)
        return
    version = response.headers.get("Release-Version", "?")
    click.echo(f"Unsetting {', '.join(keys)} and restarting {name}... done, v{version}")


# -- releases -----------------------------------------------------------------------


@click.command("releases")
@app_option
@json_option
def releases(app: str | None, as_json: bool) -> None:
    """List releases, newest first."""
    name = need_app(app)
    found = Client.from_env().get_all(f"/apps/{quote(name)}/releases", "version")
    found.reverse()
    if as_json:
        emit(found)
        return
    click.echo(f"=== {name} Releases")
    for release in found:
        marker = " (current)" if release["current"] else ""
        status = "" if release["status"] == "succeeded" else f" [{release['status']}]"
        click.echo(
            f"v{release['version']:<4} {release['description']}{status}{marker}"
            f"  {release['user']['actor']}  {release['created_at']}"
        )


@click.command("releases:rollback")
@click.argument("version")
@app_option
@json_option
def releases_rollback(version: str, app: str | None, as_json: bool) -> None:
    """Roll back to VERSION (v3 or 3): a new release with its code and config."""
    name = need_app(app)
    match = re.fullmatch(r"v?(\d+)", version)
    if match is None:
        raise CliError(f"{version!r} is not a release version (like v3)")
    release = (
        Client.from_env()
        .call("POST", f"/apps/{quote(name)}/releases", {"release": int(match.group(1))})
        .body
    )
    if as_json:
        emit(release)
    else:
        click.echo(f"Rolling back {name} to {version}... done, v{release['version']}")


def read_procfile(path: Path) -> dict[str, str]:
    """``type: command`` lines; blank lines and # comments skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    procfile: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise CliError(f"{path}:{number}: expected 'type: command'")
        procfile[name.strip()] = command.strip()
    return procfile


@click.command("deploy")
@click.argument(
    "directory", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@app_option
@json_option
def deploy(directory: Path, app: str | None, as_json: bool) -> None:
    """Release the code in DIRECTORY (its Procfile says what runs)."""
    name = need_app(app)
    directory = directory.resolve()
    body = {"artifact": str(directory), "procfile": read_procfile(directory / "Procfile")}
    release = Client.from_env().call("POST", f"/apps/{quote(name)}/releases", body).body
    if as_json:
        emit(release)
    else:
        click.echo(f"Releasing {directory} to {name}... done, v{release['version']}")


# -- processes ----------------------------------------------------------------------


def _sleep_policy(item: dict[str, Any]) -> str:
    return "never sleeps" if item["never_sleep"] else f"sleeps after {span(item['idle_after'])}"


def ps_lines(
    formation: list[dict[str, Any]],
    dynos: list[dict[str, Any]],
    now: float,
    autoscale: dict[str, Any] | None = None,
) -> list[str]:
    """Each process type that runs or should, with its dynos: state, release and since when.

    A type scaled to zero with nothing running is named once at the end, not shown as an
    empty header. An autoscaled type shows its settings and, from ``autoscale`` (``GET
    /apps/{app}/autoscale``), what it wants now and the last decision.
    """
    lines: list[str] = []
    idle: list[str] = []
    for item in formation:
        mine = [d for d in dynos if d["type"] == item["type"]]
        queue = f", queue {queue_label(item['queue'])}" if item.get("queue") else ""
        if item["quantity"] == 0 and not mine:
            idle.append(item["type"] + (f" ({queue.removeprefix(', ')})" if queue else ""))
            continue
        # The size only when it is not the default (standard-1x).
        size = item.get("size", "standard-1x")
        sized = "" if size == "standard-1x" else f"{size}, "
        policy = _sleep_policy(item)
        lines.append(f"=== {item['type']} ({item['quantity']}, {sized}{policy}{queue})")
        if item.get("autoscale"):
            view = autoscale if autoscale and autoscale.get("process") == item["type"] else None
            lines += autoscale_lines(item, view, now)
        rows = []
        for dyno in mine:
            state = dyno["state"] + (f" ({dyno['reason']})" if dyno.get("reason") else "")
            since = parse_iso(dyno.get("created_at"))
            rows.append(
                [
                    f"{dyno['name']}:",
                    state,
                    f"v{dyno['release']['version']}",
                    ago(since, now),
                    _usage(dyno),
                ]
            )
        lines += columns(rows) if rows else ["(none running)"]
    if idle:
        lines.append(f"Scaled to 0: {', '.join(idle)} (ps:scale TYPE=1 runs one)")
    return lines


def queue_label(queue: dict[str, Any]) -> str:
    """``rq:default,high``, ``postgres on $JOBS_DB``: a formation's queue as ps:queue takes it."""
    label = str(queue["kind"])
    if queue.get("names"):
        label += ":" + ",".join(queue["names"])
    default_var = "DATABASE_URL" if queue["kind"] == "postgres" else "REDIS_URL"
    if queue.get("url_var", default_var) != default_var:
        label += f" on ${queue['url_var']}"
    if queue.get("per_worker"):
        label += f", {queue['per_worker']} jobs per worker up to {queue.get('max_scale', 1)}"
    return label


def autoscale_lines(item: dict[str, Any], view: dict[str, Any] | None, now: float) -> list[str]:
    """``autoscale: 10 in flight per process, 1-5 processes, wants 3 (avg 24.1)`` and the
    last decision, when the agent has made one."""
    settings = item["autoscale"]
    line = (
        f"autoscale: {settings['target']:g} in flight per process, "
        f"{item['min_scale']}-{item['max_scale']} processes"
    )
    if view is None or not view.get("running"):
        return [line + " (no agent runs it here)"]
    line += f", wants {view['desired']}"
    if view.get("avg_concurrency") is not None:
        line += f" (avg {view['avg_concurrency']:g} in flight)"
    if view.get("panicking"):
        line += ", panicking"
    decisions = view.get("decisions") or []
    if not decisions:
        return [line, "last decision: none yet"]
    last = decisions[0]
    return [
        line,
        f"last decision: {last['from']} -> {last['to']} ({last['reason']}) {ago(last['at'], now)}",
    ]


def _usage(dyno: dict[str, Any]) -> str:
    """``mem=120MB/512MB (23%) load=0.05`` from the dyno's last sample; empty without one."""
    memory, cpu = dyno.get("memory"), dyno.get("cpu")
    if not memory:
        return ""
    used = memory["rss"] + memory["swap"]
    mb = 1024 * 1024
    quota = memory["quota"]
    line = f"mem={used / mb:.0f}MB/{quota / mb:.0f}MB ({100 * used / quota:.0f}%)"
    return line + (f" load={cpu['load']:.2f}" if cpu else "")


@click.command("ps")
@app_option
@json_option
def ps(app: str | None, as_json: bool) -> None:
    """Processes and their state (asleep, waking, up, crashed), release and since when."""
    name = need_app(app)
    client = Client.from_env()
    dynos = client.call("GET", f"/apps/{quote(name)}/dynos").body
    formation = client.call("GET", f"/apps/{quote(name)}/formation").body
    # Asked only when a type autoscales: one call fewer for every other app.
    autoscale = (
        client.call("GET", f"/apps/{quote(name)}/autoscale").body
        if any(item.get("autoscale") for item in formation)
        else None
    )
    if as_json:
        emit({"dynos": dynos, "formation": formation, "autoscale": autoscale})
        return
    for line in ps_lines(formation, dynos, time.time(), autoscale):
        click.echo(line)


@click.command("ps:scale")
@click.argument("pairs", nargs=-1, required=True)
@app_option
@json_option
def ps_scale(pairs: tuple[str, ...], app: str | None, as_json: bool) -> None:
    """Scale process types: web=2 worker=1, and size them: web=2:standard-2x."""
    name = need_app(app)
    updates = []
    for pair in pairs:
        # Heroku's web=2:standard-2x names the size too (agent/dynosize.py has the table).
        match = re.fullmatch(r"([a-z][a-z0-9_-]*)=(\d+)(?::([A-Za-z0-9.,-]+))?", pair)
        if match is None:
            raise CliError(
                f"{pair!r} is not TYPE=QUANTITY[:SIZE] (like web=2 or web=2:standard-2x)"
            )
        update: dict[str, Any] = {"type": match.group(1), "quantity": int(match.group(2))}
        if match.group(3):
            update["size"] = match.group(3)
        updates.append(update)
    formation = (
        Client.from_env().call("PATCH", f"/apps/{quote(name)}/formation", {"updates": updates}).body
    )
    if as_json:
        emit(formation)
        return
    scaled = ", ".join(f"{f['type']}={f['quantity']}" for f in formation)
    click.echo(f"Scaling {name}... done, now running {scaled}")


@click.command("ps:restart")
@click.argument("process", required=False)
@app_option
def ps_restart(process: str | None, app: str | None) -> None:
    """Restart every process, or one process type."""
    name = need_app(app)
    path = f"/apps/{quote(name)}/dynos" + ("" if process is None else f"/{quote(process)}")
    Client.from_env().call("DELETE", path)
    click.echo(f"Restarting {process or 'all'} processes of {name}... done")


# -- add-ons ------------------------------------------------------------------------


@click.command("addons")
@app_option
@json_option
def addons(app: str | None, as_json: bool) -> None:
    """List add-ons."""
    name = need_app(app)
    found = Client.from_env().call("GET", f"/apps/{quote(name)}/addons").body
    if as_json:
        emit(found)
        return
    click.echo(f"=== {name} Add-ons")
    for addon in found:
        click.echo(f"{addon['name']}  {addon['plan']['name']}  as {addon['attachment']['name']}")


@click.command("addons:create")
@click.argument("plan")
@click.option("--as", "attachment", help="Attachment name: sets NAME_URL (default DATABASE/REDIS).")
@app_option
@json_option
def addons_create(plan: str, attachment: str | None, app: str | None, as_json: bool) -> None:
    """Create an add-on: postgres, postgres:basic, redis, ..."""
    name = need_app(app)
    body: dict[str, Any] = {"plan": plan}
    if attachment is not None:
        body["attachment"] = {"name": attachment}
    addon = Client.from_env().call("POST", f"/apps/{quote(name)}/addons", body).body
    if as_json:
        emit(addon)
        return
    click.echo(
        f"Creating {addon['plan']['name']} on {name}... done: {addon['name']}, "
        f"{', '.join(addon['config_vars'])} set, v{addon['release']['version']}"
    )
    if addon.get("provision_message"):
        # Said once, at creation (Heroku's provision_message): what the app must know
        # about its add-on (e.g. that its server offers no TLS).
        click.echo(addon["provision_message"])
    if addon["release"]["status"] != "succeeded":
        raise CliError(f"the release v{addon['release']['version']} {addon['release']['status']}")


@click.command("addons:destroy")
@click.argument("addon")
@app_option
@click.option("--confirm", help="The app's name, to confirm (the data is deleted).")
def addons_destroy(addon: str, app: str | None, confirm: str | None) -> None:
    """Destroy an add-on and its data."""
    name = need_app(app)
    if confirm != name:
        raise CliError(f"this deletes {addon}'s data; confirm with --confirm {name}")
    Client.from_env().call("DELETE", f"/apps/{quote(name)}/addons/{quote(addon)}")
    click.echo(f"Destroying {addon} on {name}... done")


# -- domains ------------------------------------------------------------------------


@click.command("domains")
@app_option
@json_option
def domains(app: str | None, as_json: bool) -> None:
    """Host names the router sends to the app."""
    name = need_app(app)
    found = Client.from_env().call("GET", f"/apps/{quote(name)}/domains").body
    if as_json:
        emit(found)
        return
    click.echo(f"=== {name} Domains")
    for domain in found:
        click.echo(f"{domain['hostname']}  ({domain['kind']})")


@click.command("domains:add")
@click.argument("hostname")
@app_option
def domains_add(hostname: str, app: str | None) -> None:
    """Route HOSTNAME to the app too (point its DNS at the router or ingress)."""
    name = need_app(app)
    added = (
        Client.from_env().call("POST", f"/apps/{quote(name)}/domains", {"hostname": hostname}).body
    )
    click.echo(f"Adding {added['hostname']} to {name}... done")


@click.command("domains:remove")
@click.argument("hostname")
@app_option
def domains_remove(hostname: str, app: str | None) -> None:
    """Stop routing HOSTNAME to the app."""
    name = need_app(app)
    Client.from_env().call("DELETE", f"/apps/{quote(name)}/domains/{quote(hostname)}")
    click.echo(f"Removing {hostname} from {name}... done")


# -- the rest -----------------------------------------------------------------------


@click.command("open")
@app_option
@click.option("--url-only", is_flag=True, help="Print the URL instead of opening a browser.")
def open_app(app: str | None, url_only: bool) -> None:
    """Open the app's first domain in a browser (SLIPWAY_APPS_DOMAIN if it has none)."""
    name = need_app(app)
    found = Client.from_env().call("GET", f"/apps/{quote(name)}/domains").body
    domain = os.environ.get("SLIPWAY_APPS_DOMAIN", "localhost")
    url = f"http://{found[0]['hostname']}/" if found else f"http://{name}.{domain}/"
    if url_only or click.launch(url) != 0:
        click.echo(url)


@click.command("login")
@click.option("--token", default=None, help="A token from `slipway tokens:create` (asked for).")
@click.option("--user", default=None, help="A dashboard user's name: as `slipway login:password`.")
@click.option(
    "--password",
    default=None,
    help="With --user; asked for when not given (better than on a command line).",
)
def login(token: str | None, user: str | None, password: str | None) -> None:
    """Save a token in the login file (~/.config/slipway/token): one given, or a dashboard
    user's, signed in with --user and their password."""
    if user is not None:
        if token is not None:
            raise click.UsageError("give --token or --user, not both")
        if password is None:
            password = click.prompt("Password", hide_input=True)
        sign_in(user, password)
        return
    if password is not None:
        raise click.UsageError("--password goes with --user")
    if token is None:
        token = click.prompt("Token", hide_input=True)
    token = token.strip()
    url = os.environ.get("SLIPWAY_API_URL") or "http://127.0.0.1:8000"
    described = Client(base_url=url, token=token).call("GET", "/auth/verify").body
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    click.echo(f"Logged in with token {described['token']['name']!r}; saved to {path}")


@click.command("tokens:create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="A token for everything.")
@app_option
@json_option
def tokens_create(name: str, admin: bool, app: str | None, as_json: bool) -> None:
    """Mint a token for one app (-a) or an admin token (--admin); shown once."""
    body: dict[str, Any] = {"name": name, "admin": admin}
    if app:
        body["app"] = app
    token = Client.from_env().call("POST", "/tokens", body).body
    if as_json:
        emit(token)
    else:
        click.echo(token["token"])


# -- builds -------------------------------------------------------------------------

#: Seconds between looks at a build in progress (`builds:create --wait`).
BUILD_POLL = 1.0
#: Directories never sent with a source tarball: history and local environments.
SKIPPED_DIRS = frozenset({".git", ".hg", ".venv", "venv", "node_modules", "__pycache__"})
_SHA = re.compile(r"^[0-9a-f]{40}$")


def source_tarball(directory: Path) -> bytes:
    """``directory`` as a gzip tarball, without VCS history and local environments."""
    buffer = io.BytesIO()

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(part in SKIPPED_DIRS for part in parts) else info

    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=child.name, filter=keep)
    return buffer.getvalue()


def resolve_ref(url: str, ref: str) -> str:
    """A commit sha for ``ref`` (a sha already, or a branch or tag the remote has)."""
    if _SHA.match(ref):
        return ref
    try:
        out = subprocess.run(
            # "--": the URL is never taken for an option, whatever it says.
            ["git", "ls-remote", "--", url, ref],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        ).stdout
    except subprocess.CalledProcessError as exc:
        # git's own words ("Could not resolve host: ...", "Repository not found"), not
        # "returned non-zero exit status 128".
        said = " / ".join(line for line in (exc.stderr or "").splitlines() if line.strip())
        raise CliError(
            f"cannot resolve {ref!r} at {mask_url(url)}: {mask_text(said[-500:] or str(exc))}"
        ) from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise CliError(f"cannot resolve {ref!r} at {mask_url(url)}: {mask_text(str(exc))}") from exc
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
            return sha
    raise CliError(f"{mask_url(url)} has no branch or tag {ref!r}")


#: Lines of a build's history asked for (the logs service's most).
BUILD_LINES = 1500
#: Seconds a silent output stream is waited on (the logs service sends keep-alives far sooner).
STREAM_TIMEOUT = 60.0


class BuildOutput:
    """Prints one build's lines from its ``output_stream_url`` (SSE) as they come.

    The stream starts with the build's history, so nothing is lost to the
    race between creating the build and connecting. ``finish`` stops it and
    prints what it had not shown yet, from the same history, once.
    """

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token
        self._lock = threading.Lock()
        self._printed = 0
        self._stopped = False
        self._stream: http.client.HTTPConnection | None = None
        #: Lines shown in all (streamed, then caught up by ``finish``).
        self.shown = 0
        self._thread = threading.Thread(target=self._follow, name="build-output", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _get(self, tail: bool) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(self._url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update(tail="1" if tail else "0", lines=str(BUILD_LINES))
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        conn = kind(parts.netloc, timeout=STREAM_TIMEOUT)
        conn.request(
            "GET",
            f"{parts.path}?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {self._token}", "Accept": "text/event-stream"},
        )
        response = conn.getresponse()
        if response.status != 200:
            conn.close()
            raise OSError(f"the logs service answered {response.status}")
        return conn, response

    @staticmethod
    def _texts(response: http.client.HTTPResponse) -> Iterator[str]:
        parser = Parser()
        for raw in response:
            event = parser.feed(raw)
            if event is None or event.event != "message":
                continue  # a "dropped"/"missed" notice, not a line
            try:
                text = json.loads(event.data)["text"]
            except (ValueError, KeyError, TypeError):
                continue
            yield str(text)

    def _follow(self) -> None:
        try:
            conn, response = self._get(tail=True)
            with contextlib.closing(conn):
                with self._lock:
                    if self._stopped:
                        return
                    self._stream = conn
                for text in self._texts(response):
                    if not self._show(text):
                        return
        except (OSError, ValueError, http.client.HTTPException):
            # No logs service, it went away, or finish() shut the stream: finish() prints
            # the rest.
            return

    def _show(self, text: str) -> bool:
        """Print one streamed line, unless ``finish`` took over; False once it has."""
        with self._lock:
            if self._stopped:
                return False
            click.echo(text)
            self._printed += 1
            return True

    def finish(self) -> None:
        with self._lock:
            self._stopped = True
            printed = self._printed
            stream, self._stream = self._stream, None
        if stream is not None and stream.sock is not None:
            # Ends the server's side now, rather than when this process exits.
            with contextlib.suppress(OSError):
                stream.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        try:
            conn, response = self._get(tail=False)
            try:
                texts = list(self._texts(response))
            finally:
                conn.close()
        except (OSError, ValueError, http.client.HTTPException):
            self.shown = printed
            return
        for text in texts[printed:]:
            click.echo(text)
        self.shown = max(printed, len(texts))


def _describe(build: dict[str, Any]) -> str:
    release = build.get("release")
    where = f", v{release['version']} {release['status']}" if release else ""
    return f"{build['id']}  {build['status']}{where}  {build.get('commit') or ''}".rstrip()


@click.command("builds:create")
@click.argument(
    "directory",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--git", "git_url", help="Build from this git URL instead of a directory.")
@click.option("--ref", help="With --git: the commit sha, branch or tag to build.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the result.")
@app_option
@json_option
def builds_create(
    directory: Path | None,
    git_url: str | None,
    ref: str | None,
    wait: bool,
    app: str | None,
    as_json: bool,
) -> None:
    """Build DIRECTORY (uploaded) or --git URL --ref REF, then release it."""
    name = need_app(app)
    client = Client.from_env()
    path = f"/apps/{quote(name)}/builds"
    if (directory is None) == (git_url is None):
        raise CliError("give a DIRECTORY to upload, or --git URL --ref REF")
    if git_url is not None:
        if not ref:
            raise CliError("--git needs --ref (a commit sha, branch or tag)")
        blob = {"url": git_url, "version": resolve_ref(git_url, ref)}
        build = client.call("POST", path, {"source_blob": blob}).body
    else:
        assert directory is not None
        build = client.upload(path, source_tarball(directory.resolve()), "application/gzip").body
    output: BuildOutput | None = None
    if not as_json:
        click.echo(f"Building {name} ({build['id']})...")
        if wait and build.get("output_stream_url"):
            output = BuildOutput(build["output_stream_url"], find_token())
            output.start()
    while wait and build["status"] == "pending":
        time.sleep(BUILD_POLL)
        build = client.call("GET", f"{path}/{quote(build['id'])}").body
    if output is not None:
        output.finish()
    if as_json:
        emit(build)
    else:
        click.echo(_describe(build))
        if build["status"] == "failed" and (output is None or not output.shown):
            click.echo(build.get("output", ""), err=True)
    release = build.get("release")
    if build["status"] == "failed" or (release and release["status"] == "failed"):
        raise SystemExit(1)


def build_rows(found: list[dict[str, Any]], now: float) -> list[str]:
    """One line per build: id, status (and its release's), commit, created, duration."""
    rows = [["ID", "STATUS", "RELEASE", "COMMIT", "CREATED", "DURATION"]]
    for build in found:
        created = parse_iso(build.get("created_at"))
        finished = parse_iso(build.get("updated_at"))
        if build["status"] == "pending":
            took = f"{span(now - created)} so far" if created is not None else "-"
        elif created is not None and finished is not None:
            took = span(finished - created)
        else:
            took = "-"
        release = build.get("release")
        rows.append(
            [
                build["id"],
                build["status"],
                f"v{release['version']} {release['status']}" if release else "-",
                build.get("commit") or "-",
                ago(created, now),
                took,
            ]
        )
    return columns(rows)


@click.command("builds")
@app_option
@json_option
def builds(app: str | None, as_json: bool) -> None:
    """The app's newest builds, oldest first: status, commit, when and how long."""
    name = need_app(app)
    found = Client.from_env().call("GET", f"/apps/{quote(name)}/builds").body
    if as_json:
        emit(found)
        return
    click.echo(f"=== {name} Builds")
    for line in build_rows(found, time.time()):
        click.echo(line)
