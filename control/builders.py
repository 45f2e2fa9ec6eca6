"""Which builder a control-plane process runs, from its settings: local or CNB Jobs.

``slipway up`` and ``slipway serve control`` compose the same way (control/server.py);
this is the builds part of that composition.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry

from control.building import Builder, Builds
from control.builds import pythons
from control.builds.kube import KubernetesBuilder
from control.builds.local import LocalBuilder
from control.builds.metrics import BuildMetrics
from control.builds.model import LogSink, NoSink
from control.builds.settings import BuildSettings
from control.service import Control
from control.settings import ControlSettings
from kit.spawn import Confiner

log = logging.getLogger(__name__)


class LoggedLines:
    """Build lines into this process's own log, where no logs service runs beside it."""

    def publish(self, app: str, source: str, process: str, text: str, time: float) -> None:
        log.info("build output", extra={"app": app, "line": text})


def build_builds(
    control: Control,
    settings: ControlSettings,
    *,
    sink: LogSink | None,
    registry: CollectorRegistry,
    confiner: Confiner | None = None,
) -> Builds | None:
    """The builder behind POST /apps/{app}/builds: local with a build root, or CNB Jobs."""
    if settings.builds is None:
        return None
    root = Path(settings.builds.root).resolve() if settings.builds.root else None
    sink = sink or NoSink()
    builder: Builder
    egress = settings.builds.egress
    if settings.builds.cnb is not None:
        builder = KubernetesBuilder(
            dataclasses.replace(settings.builds.cnb, egress=egress),
            sink=sink,
            metrics=BuildMetrics(registry),
            timeout=settings.builds.timeout,
            buildpacks=lambda app: buildpacks_of(control, app),
        )
    else:
        assert root is not None, "the local builder needs a build root"
        if confiner is not None:
            # Apps' virtualenvs link into whichever Python they asked for: every sandbox
            # sees the machine's interpreters (read-only), as it sees /usr, so a slug built
            # before a restart still runs.
            found = pythons.prefixes(os.environ.get("PATH", ""))
            confiner.runtime_dirs = tuple(sorted({*confiner.runtime_dirs, *found}))
        builder = LocalBuilder(
            BuildSettings(
                root=root,
                concurrency=settings.builds.concurrency,
                timeout=settings.builds.timeout,
                egress=egress,
            ),
            sink=sink,
            metrics=BuildMetrics(registry),
            confiner=confiner,
        )
    return Builds(
        control,
        builder=builder,
        sink=sink,
        logs_url=settings.builds.logs_url,
        egress=egress,
        # Uploads are unpacked by the local builder; a Job fetches its source with git.
        uploads=root / "uploads" if root is not None and settings.builds.cnb is None else None,
    )


#: The app's config var naming its buildpacks, in order (``id`` or ``id@version``, separated
#: by commas or spaces); unset, the builder image's own detection chooses.
BUILDPACKS_VAR = "BUILDPACKS"


async def buildpacks_of(control: Control, app: str) -> tuple[str, ...]:
    config = await control.config(app)
    return tuple(config.get(BUILDPACKS_VAR, "").replace(",", " ").split())
