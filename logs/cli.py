"""``slipway logs APP`` (read) and ``slipway serve logs`` (run the service)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import click

from kit import logfmt, runner
from kit.sse import Event, Parser
from kit.tasks import TaskSet
from logs.component import LogsComponent
from logs.errors import LogsClientError
from logs.model import WireLine, heroku_format
from logs.settings import LogsSettings

log = logging.getLogger(__name__)

_COLOURS = {
    "app": "cyan",
    "router": "magenta",
    "build": "yellow",
    "release": "green",
    "dyno": "red",
}


# --- slipway logs -------------------------------------------------------------------


@click.command()
@click.argument("target", metavar="[APP]", required=False)
@click.option("-a", "--app", "app", envvar="SLIPWAY_APP", help="The app (or SLIPWAY_APP).")
@click.option("-t", "--tail", is_flag=True, help="Keep streaming new lines.")
@click.option("-n", "--num", "lines", type=click.IntRange(0, 1500), default=100, show_default=True)
@click.option("-s", "--source", type=click.Choice(["app", "router", "build", "release", "dyno"]))
@click.option(
    "-p", "-d", "--process", "--dyno", help="Only this process type or dyno (web, web.1, run.1234)."
)
@click.option(
    "--url", envvar="SLIPWAY_LOGS_URL", default="http://127.0.0.1:8082", show_default=True
)
def logs(
    *,
    target: str | None,
    app: str | None,
    tail: bool,
    lines: int,
    source: str | None,
    process: str | None,
    url: str,
) -> None:
    """Show APP's recent log lines (Heroku's format); --tail keeps following.

    The app is named as by every other command (-a APP, or SLIPWAY_APP), or as an argument.
    """
    app = target or app  # the argument over SLIPWAY_APP, as an explicit name should
    if not app:
        raise click.UsageError("no app given: use -a APP (or set SLIPWAY_APP)")
    token = os.environ.get("SLIPWAY_TOKEN", "")
    colour = sys.stdout.isatty()
    params = {"lines": str(lines), "tail": "1" if tail else "0"}
    if source:
        params["source"] = source
    if process:
        params["process"] = process
    try:
        asyncio.run(_follow(url, app, token, params, colour))
    except LogsClientError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


async def _follow(url: str, app: str, token: str, params: dict[str, str], colour: bool) -> None:
    """Read the SSE stream; on a dropped connection resume from the last id (bounded retries)."""
    last_id: str | None = None
    failures = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            try:
                async with session.get(
                    f"{url}/apps/{app}/logs", params=params, headers=headers
                ) as r:
                    if r.status != 200:
                        raise LogsClientError(f"{r.status}: {(await r.text()).strip()}")
                    async for event in _events(r.content):
                        failures = 0
                        if event.id is not None:
                            last_id = event.id
                        _show(event.event, event.data, colour)
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                if params["tail"] != "1" or failures > 5:
                    raise LogsClientError(f"cannot read logs from {url}: {exc}") from exc
                await asyncio.sleep(min(2**failures, 10))


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[Event]:
    parser = Parser()
    async for raw in content:
        event = parser.feed(raw)
        if event is not None:
            yield event


def _show(event: str, data: str, colour: bool) -> None:
    if event == "message":
        wire: WireLine = json.loads(data)
        text = heroku_format(wire)
        if colour:
            head, _, body = text.partition("]: ")
            text = click.style(head + "]:", fg=_COLOURS.get(wire["source"])) + " " + body
        # colour was decided from stdout being a terminal; say so, or click strips it again
        click.echo(text, color=colour)
    else:
        count = json.loads(data).get("count")
        click.echo(f"-- {event} {count if count is not None else 'some'} lines --", err=True)


# --- slipway serve logs ---------------------------------------------------------------


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SLIPWAY_LOGS_{name}", default)


@click.command("logs")
@click.option("--http-port", type=int, default=lambda: int(_env("HTTP_PORT", "8082") or 8082))
@click.option("--http-host", default=lambda: _env("HTTP_HOST", "127.0.0.1"))
@click.option("--forward-port", type=int, default=lambda: int(_env("FORWARD_PORT", "24224") or 0))
@click.option("--forward-host", default=lambda: _env("FORWARD_HOST", "127.0.0.1"))
@click.option("--spool-dir", type=click.Path(path_type=Path), default=lambda: _env("SPOOL_DIR"))
@click.option("--s3-bucket", default=lambda: _env("S3_BUCKET"))
@click.option("--s3-endpoint", default=lambda: _env("S3_ENDPOINT"))
@click.option("--tokens-file", type=click.Path(path_type=Path), default=lambda: _env("TOKENS_FILE"))
@click.option(
    "--control-url",
    default=lambda: _env("CONTROL_URL"),
    help="The control plane's API: its tokens may read logs too (checked at /auth/verify).",
)
@click.option("--flush-age", type=float, default=lambda: float(_env("FLUSH_AGE", "60") or 60))
@click.option("--heartbeat", type=float, default=lambda: float(_env("HEARTBEAT", "15") or 15))
def serve(
    *,
    http_port: int,
    http_host: str,
    forward_port: int,
    forward_host: str,
    spool_dir: Path | None,
    s3_bucket: str | None,
    s3_endpoint: str | None,
    tokens_file: Path | None,
    control_url: str | None,
    flush_age: float,
    heartbeat: float,
) -> None:
    """The logs service: Fluent forward on 24224, SSE/archive HTTP API on 8082.

    Secrets come only from the environment: SLIPWAY_LOGS_ADMIN_TOKEN,
    SLIPWAY_LOGS_PLATFORM_TOKEN and SLIPWAY_LOGS_SHARED_KEY.
    """
    settings = LogsSettings(
        http_host=http_host,
        http_port=http_port,
        forward_host=forward_host,
        forward_port=forward_port,
        shared_key=_env("SHARED_KEY"),
        admin_token=_env("ADMIN_TOKEN"),
        platform_token=_env("PLATFORM_TOKEN"),
        tokens_file=tokens_file,
        control_url=control_url or None,
        spool_dir=spool_dir,
        s3_bucket=s3_bucket,
        s3_endpoint=s3_endpoint,
        flush_age=flush_age,
        heartbeat=heartbeat,
    )
    logfmt.configure(os.environ.get("SLIPWAY_LOG_LEVEL", "INFO"))
    sys.exit(runner.run(functools.partial(run_service, settings)))


async def run_service(settings: LogsSettings, tasks: TaskSet, stop: asyncio.Event) -> int:
    """Everything ``slipway serve logs`` runs, until ``stop`` (a signal, or a failed task)."""
    component = LogsComponent(settings, tasks=tasks)
    await component.start()
    await stop.wait()
    await component.stop()
    return 0
