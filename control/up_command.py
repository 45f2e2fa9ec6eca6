"""The ``slipway up`` command: its flags and environment to ``UpSettings``, then ``Up`` run.

Kept apart from ``control/up.py`` (what runs: the components wired in one
process) as the other entry points keep their flags apart from what they run:
this module decides where state, secrets and ports are, and what the first
log lines tell the person who started it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from pathlib import Path

import click

from agent.dynowatch import DynoSettings
from agent.errors import ConfigError
from agent.settings import AgentSettings, LocalSettings
from control.backups.settings import backup_settings_from_env
from control.dashboard import cli as dashboard
from control.errors import ControlError
from control.settings import (
    AddonServers,
    BuildServerSettings,
    ControlSettings,
    limits_from_env,
    review_settings_from_env,
)
from control.statedir import local_secret, private_state_dir
from control.up import Up, UpSettings
from kit import logfmt
from kit.durations import duration_option
from kit.runner import run
from kit.spawn import detect
from kit.tasks import TaskSet
from logs.settings import LogsSettings
from router.settings import RouterSettings

log = logging.getLogger(__name__)


@click.command("up")
@click.argument(
    "apps_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=False,
    envvar="SLIPWAY_APPS",
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="SLIPWAY_HOST")
@click.option("--port", default=8080, show_default=True, envvar="SLIPWAY_PORT")
@click.option("--ops-port", default=9080, show_default=True, envvar="SLIPWAY_OPS_PORT")
@click.option(
    "--agent-port",
    default=9081,
    show_default=True,
    envvar="SLIPWAY_AGENT_PORT",
    help="The agent's API, for routers in other processes.",
)
@click.option(
    "--idle-after",
    callback=duration_option,
    envvar="SLIPWAY_IDLE_AFTER",
    help="Sleep every app after this long without requests (e.g. 10s), whatever the file says.",
)
@click.option(
    "--dyno-interval",
    callback=duration_option,
    envvar="SLIPWAY_DYNO_INTERVAL",
    help="Seconds between samples of every process (memory, CPU, R14/R15) [20s].",
)
@click.option(
    "--logs-port",
    default=8082,
    show_default=True,
    envvar="SLIPWAY_LOGS_PORT",
    help="The logs service's HTTP API (`slipway logs`, SSE).",
)
@click.option(
    "--forward-port",
    default=24224,
    show_default=True,
    envvar="SLIPWAY_LOGS_FORWARD_PORT",
    help="Fluent forward protocol, for log shippers on this machine.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".slipway",
    show_default=True,
    envvar="SLIPWAY_STATE_DIR",
    help="Where the log spool and the generated token live.",
)
@click.option(
    "--control-port",
    default=8000,
    show_default=True,
    envvar="SLIPWAY_CONTROL_PORT",
    help="The control plane's API (the `slipway` CLI: apps, deploys, config, releases).",
)
@click.option(
    "--app-domain",
    default="localhost",
    show_default=True,
    envvar="SLIPWAY_APP_DOMAIN",
    help="Apps of the control plane answer at APP.DOMAIN.",
)
@click.option(
    "--postgres-admin-dsn",
    envvar="SLIPWAY_ADDON_POSTGRES_DSN",
    default=None,
    help="A PostgreSQL for postgres add-ons (superuser DSN); none: no postgres add-ons.",
)
@click.option(
    "--redis-admin-url",
    envvar="SLIPWAY_ADDON_REDIS_URL",
    default=None,
    help="A Redis for redis add-ons (a user allowed ACL SETUSER); none: no redis add-ons.",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SLIPWAY_LOG_LEVEL")
def up(
    apps_file: Path,
    host: str,
    port: int,
    ops_port: int,
    agent_port: int,
    idle_after: float | None,
    dyno_interval: float | None,
    logs_port: int,
    forward_port: int,
    state_dir: Path,
    control_port: int,
    app_domain: str,
    postgres_admin_dsn: str | None,
    redis_admin_url: str | None,
    log_level: str,
) -> None:
    """Run the router, the agent, the logs service and the control plane.

    Apps come from the control plane (`slipway apps:create`, `slipway deploy`)
    and from APPS_FILE (TOML), if given.
    """
    logfmt.configure(log_level)
    try:
        dynos = DynoSettings() if dyno_interval is None else DynoSettings(interval=dyno_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--dyno-interval") from exc
    # slipway's own files (state, spool, uploads) are its alone; app processes and
    # build steps get a umask of their own (kit/spawn.py CHILD_UMASK).
    os.umask(0o077)
    confiner = detect()
    if confiner.confined:
        log.info("app processes confined", extra=confiner.fields())
    else:
        log.warning("app processes NOT confined; app tokens are refused", extra=confiner.fields())
    private_state_dir(state_dir)
    confiner.hidden = tuple(
        str((state_dir / name).resolve())
        for name in (
            "token",
            "forward-key",
            "slipway.db",
            "slipway.db-wal",
            "slipway.db-shm",
            "logs",
            "rollup.json",
        )
    )
    token_file = state_dir / "token"
    token = local_secret(token_file)
    settings = UpSettings(
        apps_file=apps_file,
        router=RouterSettings(host=host, port=port, ops_host=host, ops_port=ops_port),
        # Routers in other processes join with SLIPWAY_AGENT_TOKEN=$(cat .slipway/token).
        agent=AgentSettings(host=host, port=agent_port, token=token),
        local=LocalSettings(),
        idle_after=idle_after,
        dynos=dynos,
        logs=LogsSettings(
            http_host=host,
            http_port=logs_port,
            forward_host=host,
            forward_port=forward_port,
            # Always keyed: any local process could otherwise write into any app's stream.
            shared_key=local_secret(
                state_dir / "forward-key", env="SLIPWAY_LOGS_SHARED_KEY", prefix=""
            ),
            admin_token=token,
            spool_dir=state_dir / "logs",
        ),
        control=ControlSettings(
            db_url=f"sqlite+aiosqlite:///{(state_dir / 'slipway.db').absolute()}",
            host=host,
            port=control_port,
            bootstrap_admin_token=token,
            addons=AddonServers(
                postgres_admin_dsn=postgres_admin_dsn, redis_admin_url=redis_admin_url
            ),
            app_domain=app_domain,
            # Builds by default, under the state directory; review apps when configured.
            builds=BuildServerSettings(
                root=os.environ.get("SLIPWAY_BUILD_ROOT") or str(state_dir / "builds"),
                logs_url=f"http://{host}:{logs_port}",
            ),
            review=review_settings_from_env(os.environ),
            limits=limits_from_env(os.environ),
            # With SLIPWAY_BACKUP_BUCKET: the backup key is kept beside the admin token.
            backups=backup_settings_from_env(
                os.environ,
                secret=local_secret(
                    state_dir / "backup.key", env="SLIPWAY_BACKUP_KEY", prefix="slwbk_"
                )
                if os.environ.get("SLIPWAY_BACKUP_BUCKET")
                else None,
            ),
            app_tokens_refused=None if confiner.confined else confiner.reason,
        ),
        rollup_file=state_dir / "rollup.json",
    )
    log.info(
        "the CLI and logs need a token: export SLIPWAY_TOKEN=$(cat FILE)",
        extra={
            "file": str(token_file),
            "api_url": f"http://{host}:{control_port}",
            "logs_url": f"http://{host}:{logs_port}",
        },
    )
    tasks = TaskSet()
    try:
        slipway = Up(settings, tasks=tasks, confiner=confiner)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(run(functools.partial(_main, slipway, token_file), tasks=tasks))


async def _main(slipway: Up, token_file: Path, tasks: TaskSet, stop: asyncio.Event) -> int:
    try:
        await slipway.start()
    except OSError as exc:
        log.error("cannot listen; is another slipway running?", extra={"error": str(exc)})
        await slipway.stop()
        return 1
    except ControlError as exc:
        log.error("the control plane cannot start", extra={"error": str(exc)})
        await slipway.stop()
        return 1
    log.info("slipway up", extra=slipway.whereabouts(token_file))
    if slipway.control is not None and slipway.settings.control is not None:
        dashboard.banner(
            f"http://{slipway.settings.control.host}:{slipway.control.port}",
            slipway.control.first_admin_password,
        )
    await stop.wait()  # a signal, or any component's task failed (kit.runner)
    log.info("stopping")
    await slipway.stop()
    return 0
