"""``slipway build``: run the local builder once, by hand, and print where the slug is."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from control.builds.errors import BuildError
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import Source
from control.builds.settings import BuildSettings
from kit.durations import parse_duration


class _Print:
    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        click.echo(text, err=True)


@click.command()
@click.argument("app")
@click.option("--git", "git_url", help="Git URL (or path) of the source.")
@click.option("--commit", help="Commit sha to build (with --git).")
@click.option(
    "--tarball",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Source archive.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SLIPWAY_BUILD_ROOT",
    default=Path(".slipway/builds"),
    show_default=True,
    help="Holds work/, slugs/ and the per-app caches.",
)
@click.option("--timeout", envvar="SLIPWAY_BUILD_TIMEOUT", default="15m", show_default=True)
def build(
    app: str,
    git_url: str | None,
    commit: str | None,
    tarball: Path | None,
    root: Path,
    timeout: str,
) -> None:
    """Build APP from --git URL --commit SHA, or from --tarball; print the artifact as JSON."""
    try:
        source = Source(git_url=git_url, commit=commit, tarball=tarball)
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = BuildSettings(root=root.resolve(), timeout=seconds)
    builder = LocalBuilder(settings, sink=_Print(), metrics=BuildMetrics(CollectorRegistry()))
    try:
        artifact = asyncio.run(builder.build(app, source))
    except BuildError as exc:
        click.echo(f"build failed: {exc}", err=True)
        sys.exit(1)
    click.echo(
        json.dumps(
            {
                "build": artifact.build_id,
                "app": artifact.app,
                "commit": artifact.commit,
                "slug": str(artifact.slug),
                "stack": artifact.stack.value,
                "process_types": dict(artifact.process_types),
                "cache_hit": artifact.cache_hit,
                "digest": artifact.digest,
                "seconds": round(artifact.duration, 3),
            },
            indent=2,
        )
    )
