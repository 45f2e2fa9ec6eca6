"""``ps:stop``, ``ps:idle``, ``ps:queue``, ``run`` and ``ps:autoscale``: processes, their
sleep and wake, one-off runs, and autoscaling."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from control.client import Client, CliError
from control.cliformat import span
from control.commands import app_option, emit, json_option, need_app, queue_label, quote
from control.tty_client import NoTerminal, run_tty
from kit.durations import parse_duration

#: A dyno (web.1) or a process type (web): ps:stop takes either, as Heroku's does.
_DYNO = re.compile(r"([a-z][a-z0-9_-]*)(\.\d+)?")


@click.command("ps:stop")
@click.argument("dyno")
@app_option
def ps_stop(dyno: str, app: str | None) -> None:
    """Stop a process type (web, worker) until `ps:scale TYPE=N` starts it again.

    Heroku restarts a stopped formation dyno by itself; here the type is scaled
    to 0, so what is stopped stays stopped (web.1 names its type, web).
    """
    name = need_app(app)
    match = _DYNO.fullmatch(dyno)
    if match is None:
        raise CliError(f"{dyno!r} is not a process type or dyno (like web or web.1)")
    process = match.group(1)
    Client.from_env().call(
        "PATCH", f"/apps/{quote(name)}/formation", {"updates": [{"type": process, "quantity": 0}]}
    )
    click.echo(f"Stopping {process} processes of {name}... done (ps:scale {process}=1 to start)")


@click.command("ps:idle")
@click.argument("duration", required=False)
@click.option("--type", "process", default="web", show_default=True, help="The process type.")
@click.option("--never", is_flag=True, help="Never sleep (the type keeps running).")
@app_option
@json_option
def ps_idle(
    duration: str | None, process: str, never: bool, app: str | None, as_json: bool
) -> None:
    """Show or set how long the app may go without requests before it sleeps: 15s, 5m, 1h.

    The web type's setting is the app's (the app sleeps and wakes as a whole).
    """
    name = need_app(app)
    client = Client.from_env()
    body: dict[str, Any] = {}
    if never:
        if duration is not None:
            raise CliError("give a DURATION or --never, not both")
        body = {"never_sleep": True}
    elif duration is not None:
        try:
            parse_duration(duration)  # a typo is refused here, with the forms taken
        except ValueError as exc:
            raise CliError(str(exc)) from None
        # The string goes as typed: the API reads durations too, and bounds them.
        body = {"idle_after": duration.strip(), "never_sleep": False}
    path = f"/apps/{quote(name)}/formation"
    if body:
        item = client.call("PATCH", f"{path}/{quote(process)}", body).body
    else:
        found = client.call("GET", path).body
        item = next((f for f in found if f["type"] == process), None)
        if item is None:
            raise CliError(f"{name} has no process type {process!r}")
    if as_json:
        emit(item)
        return
    verb = "now sleeps" if body else "sleeps"
    if item["never_sleep"]:
        click.echo(f"{name} {process} never sleeps")
    else:
        click.echo(f"{name} {process} {verb} after {span(item['idle_after'])} without requests")


@click.command("ps:queue")
@click.argument("process", required=False)
@click.argument("source", required=False)
@click.option("--url-var", help="Config var with the server's URL [REDIS_URL; DATABASE_URL].")
@click.option("--query", help="postgres: one statement returning the jobs waiting and running.")
@click.option("--per-worker", type=int, help="Waiting jobs per worker before another starts.")
@click.option("--max-scale", type=int, help="Workers its jobs may start at most [1].")
@click.option("--off", is_flag=True, help="Remove it (a usual Procfile worker line still counts).")
@app_option
@json_option
def ps_queue(
    process: str | None,
    source: str | None,
    url_var: str | None,
    query: str | None,
    per_worker: int | None,
    max_scale: int | None,
    off: bool,
    app: str | None,
    as_json: bool,
) -> None:
    """Show or set where a worker type's jobs wait: they wake it while the app sleeps.

    SOURCE is KIND[:NAME,...]: rq:default,high, celery, sidekiq:mailers, bull:mail,
    list:jobs, or postgres with --query. `rq worker`, `celery worker` and `sidekiq`
    Procfile lines are found without it; this is for the others.
    """
    name = need_app(app)
    client = Client.from_env()
    path = f"/apps/{quote(name)}/formation"
    tuning = (url_var, query, per_worker, max_scale)
    if process is None or (source is None and not off):
        if any(v is not None for v in tuning):
            raise CliError("give the process type and a SOURCE (like: ps:queue worker rq:default)")
        found = [
            f
            for f in client.call("GET", path).body
            if f["type"] == process or (process is None and f["type"] != "web")  # web: requests
        ]
        if process is not None and not found:
            raise CliError(f"{name} has no process type {process!r}")
        if as_json:
            emit([{"type": f["type"], "queue": f.get("queue")} for f in found])
            return
        for item in found:
            said = queue_label(item["queue"]) if item.get("queue") else "(from its Procfile line)"
            click.echo(f"{item['type']}: {said}")
        return
    if off:
        if source is not None or any(v is not None for v in tuning):
            raise CliError("give a SOURCE or --off, not both")
        body: dict[str, Any] = {"queue": None}
    else:
        assert source is not None
        kind, _, names = source.partition(":")
        queue: dict[str, Any] = {"kind": kind, "names": [n for n in names.split(",") if n]}
        given = {"url_var": url_var, "query": query, "per_worker": per_worker}
        queue.update((k, v) for k, v in {**given, "max_scale": max_scale}.items() if v is not None)
        body = {"queue": queue}
    item = client.call("PATCH", f"{path}/{quote(process)}", body).body
    if as_json:
        emit(item)
        return
    if item.get("queue"):
        click.echo(f"{name} {process} now wakes for jobs in {queue_label(item['queue'])}")
    else:
        click.echo(f"{name} {process} has no queue set (its Procfile line may still show one)")


def trailing_app(command: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """Heroku's habit ``run python manage.py migrate -a shop``: the command, and the app a
    trailing ``-a APP`` (``--app APP``, ``--app=APP``) names, if it does."""
    if len(command) >= 3 and command[-2] in ("-a", "--app"):
        return command[:-2], command[-1]
    if len(command) >= 2 and command[-1].startswith("--app="):
        return command[:-1], command[-1].removeprefix("--app=")
    return command, None


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@app_option
@click.option("-d", "--detach", is_flag=True, help="Run in the background; output to the logs.")
@click.option(
    "-t/-T",
    "--tty/--no-tty",
    default=None,
    help="On a terminal (`run bash`): the default when stdin is one. --no-tty: output only.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(app: str | None, detach: bool, tty: bool | None, command: tuple[str, ...]) -> None:
    """Run COMMAND once on the current release, with its config vars and add-ons.

    Output streams back and the exit code is the command's, as `heroku run`:
    `slipway run -a shop python manage.py migrate`. When stdin is a terminal, COMMAND
    gets one too (`slipway run bash`, under `slipway up`), Ctrl-C included.
    """
    _run(app, detach, command, tty=tty)


def _run(
    app: str | None, detach: bool, command: tuple[str, ...], *, tty: bool | None = False
) -> None:
    """``tty``: True asked for (-t), None as stdin is (falling back to output only where
    the platform gives no terminal), False output only."""
    source = click.get_current_context().get_parameter_source("app")
    if source is not click.core.ParameterSource.COMMANDLINE:
        # Not named before the command: a trailing -a APP is the app's, not the command's.
        command, named = trailing_app(command)
        app = named or app
    name = need_app(app)
    line = " ".join(command)
    client = Client.from_env()
    path = f"/apps/{quote(name)}/dynos"
    if detach:
        started = client.call("POST", path, {"command": line, "attach": False}).body
        click.echo(
            f"Running {line} on {name}... up, {started['name']}\n"
            f"Run `slipway logs -a {name} --dyno {started['name']}` to see its output."
        )
        return
    click.echo(f"Running {line} on {name}...", err=True)
    if tty or (tty is None and sys.stdin.isatty()):
        try:
            raise SystemExit(run_tty(client, name, f"/apps/{quote(name)}/dynos/tty", line))
        except NoTerminal as exc:
            if tty:
                raise
            click.echo(f"{exc.message}: running without one", err=True)
    code: int | None = None
    for event in client.stream(path, {"command": line, "attach": True}):
        if "dyno" in event:
            click.echo(f"up, {event['dyno']}", err=True)
        if "output" in event:
            sys.stdout.write(str(event["output"]))
            sys.stdout.flush()
        if "error" in event:
            click.echo(f"Error: {event['error']}", err=True)
        if "exit_code" in event:
            code = int(event["exit_code"])
    if code is None:
        raise CliError("the run ended without an exit code: the connection broke off")
    raise SystemExit(code)


@click.command(
    "run:detached",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@app_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_detached(app: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND once in the background (Heroku's run:detached); output to the logs."""
    _run(app, True, command)


#: ``ps:autoscale``'s window and delay flags, as the API's autoscale keys.
_AUTOSCALE_DURATIONS = ("stable_window", "panic_window", "scale_down_delay")


@click.command("ps:autoscale")
@click.argument("process", default="web")
@click.option("--target", type=float, help="Requests in flight per process the app is sized for.")
@click.option("--min", "minimum", type=int, help="Fewest processes (0 keeps scale-to-zero).")
@click.option("--max", "maximum", type=int, help="Most processes.")
@click.option("--stable-window", help="The load processes follow: 60s by default.")
@click.option("--panic-window", help="The load that can start a panic: 6s by default.")
@click.option("--panic-threshold", type=float, help="Panic at this times the target: 2.")
@click.option("--scale-down-delay", help="Since load last needed a process, before it goes: 60s.")
@app_option
@json_option
def ps_autoscale(
    process: str,
    target: float | None,
    minimum: int | None,
    maximum: int | None,
    stable_window: str | None,
    panic_window: str | None,
    panic_threshold: float | None,
    scale_down_delay: str | None,
    app: str | None,
    as_json: bool,
) -> None:
    """Show or set autoscaling of web by requests in flight: `ps:autoscale web --target 10
    --min 1 --max 5`. Settings not given keep their current values (or the defaults)."""
    name = need_app(app)
    client = Client.from_env()
    given: dict[str, float] = {}
    for key, raw in zip(
        _AUTOSCALE_DURATIONS, (stable_window, panic_window, scale_down_delay), strict=True
    ):
        if raw is not None:
            try:
                given[key] = parse_duration(raw)
            except ValueError as exc:
                raise CliError(f"--{key.replace('_', '-')}: {exc}") from None
    if target is not None:
        given["target"] = target
    if panic_threshold is not None:
        given["panic_threshold"] = panic_threshold
    path = f"/apps/{quote(name)}/formation"
    found = client.call("GET", path).body
    item = next((f for f in found if f["type"] == process), None)
    if item is None:
        raise CliError(f"{name} has no process type {process!r}")
    body: dict[str, Any] = {}
    if minimum is not None:
        body["min_scale"] = minimum
    if maximum is not None:
        body["max_scale"] = maximum
    if given:
        # The API replaces the settings as a whole: what is not given keeps its value.
        settings = {**(item.get("autoscale") or {}), **given}
        if "target" not in settings:
            raise CliError(f"{process} does not autoscale yet: give --target (requests in flight)")
        body["autoscale"] = settings
    elif body and not item.get("autoscale"):
        raise CliError(f"{process} does not autoscale yet: give --target (requests in flight)")
    if body:
        item = client.call("PATCH", f"{path}/{quote(process)}", body).body
    if as_json:
        emit(item)
        return
    if not item.get("autoscale"):
        click.echo(f"{name} {process} does not autoscale (ps:autoscale {process} --target N)")
        return
    settings = item["autoscale"]
    verb = "now autoscales" if body else "autoscales"
    click.echo(
        f"{name} {process} {verb}: {settings['target']:g} in flight per process, "
        f"{item['min_scale']}-{item['max_scale']} processes "
        f"(windows {span(settings['stable_window'])}/{span(settings['panic_window'])}, "
        f"panic at {settings['panic_threshold']:g}x, "
        f"down after {span(settings['scale_down_delay'])})"
    )


@click.command("ps:autoscale:disable")
@click.argument("process", default="web")
@app_option
def ps_autoscale_disable(process: str, app: str | None) -> None:
    """Turn autoscaling off: the type keeps its formation quantity (ps:scale sets it)."""
    name = need_app(app)
    item = (
        Client.from_env()
        .call("PATCH", f"/apps/{quote(name)}/formation/{quote(process)}", {"autoscale": None})
        .body
    )
    click.echo(
        f"Autoscaling of {name} {process} turned off; "
        f"it runs {item['quantity']} (ps:scale {process}=N to change)"
    )
