"""``slipway exporter postgres|redis``: one exporter for every add-on of a kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from exporters.service import Exporter
from exporters.settings import DEFAULT_PORTS, ExporterSettings
from exporters.targets import Kind
from kit import logfmt, runner
from kit.durations import parse_duration


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def _options(kind: Kind) -> list[click.Option]:
    env = f"SLIPWAY_EXPORTER_{kind.value.upper()}"
    opts = [
        click.Option(
            ["--targets", "targets_file"],
            envvar=f"{env}_TARGETS",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML targets file (re-read on change and on SIGHUP).",
        ),
        click.Option(
            ["--addon-targets", "addon_targets_file"],
            envvar=f"{env}_ADDON_TARGETS",
            default=None,
            type=click.Path(dir_okay=False, path_type=Path),
            help="A second targets file, written by the control plane (dedicated add-ons on "
            "Kubernetes); missing means none yet. Re-read on change like --targets.",
        ),
        click.Option(["--host"], envvar=f"{env}_HOST", default="127.0.0.1", show_default=True),
        click.Option(
            ["--port"],
            envvar=f"{env}_PORT",
            type=int,
            default=DEFAULT_PORTS[kind],
            show_default=True,
        ),
        click.Option(
            ["--interval"],
            envvar=f"{env}_INTERVAL",
            type=DURATION,
            default="15s",
            show_default=True,
            help="Time between polls of a target.",
        ),
        click.Option(
            ["--timeout"],
            envvar=f"{env}_TIMEOUT",
            type=DURATION,
            default="5s",
            show_default=True,
            help="Time one poll of one target may take.",
        ),
        click.Option(
            ["--concurrency"],
            envvar=f"{env}_CONCURRENCY",
            type=int,
            default=16,
            show_default=True,
            help="Targets polled at once.",
        ),
        click.Option(
            ["--max-backoff"],
            envvar=f"{env}_MAX_BACKOFF",
            type=DURATION,
            default="5m",
            show_default=True,
            help="Longest wait before retrying a failing target.",
        ),
        click.Option(
            ["--log-level"], envvar="SLIPWAY_LOG_LEVEL", default="info", show_default=True
        ),
    ]
    if kind is Kind.POSTGRES:
        opts.append(
            click.Option(
                ["--long-query", "long_query_seconds"],
                envvar=f"{env}_LONG_QUERY",
                type=DURATION,
                default="5m",
                show_default=True,
                help="Active queries older than this count as long-running.",
            )
        )
    else:
        opts.append(
            click.Option(
                ["--command-stats/--no-command-stats"],
                envvar=f"{env}_COMMAND_STATS",
                default=True,
                show_default=True,
                help="Export redis_commands_total{cmd} and durations (redis_exporter's default).",
            )
        )
    return opts


def _make(kind: Kind) -> click.Command:
    def run(targets_file: Path, log_level: str, **kwargs: Any) -> None:
        logfmt.configure(log_level)
        try:
            settings = ExporterSettings(kind=kind, targets_file=targets_file, **kwargs)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        raise SystemExit(runner.run(Exporter(settings).serve))

    return click.Command(
        kind.value,
        callback=run,
        params=list(_options(kind)),
        help=f"Export metrics of every {kind.value} target in the targets file.",
    )


@click.group()
def exporter() -> None:
    """One Prometheus exporter for all Postgres (or Redis) add-ons."""


exporter.add_command(_make(Kind.POSTGRES))
exporter.add_command(_make(Kind.REDIS))
