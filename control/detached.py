"""A ReleaseTarget with no runtime behind it: ``slipway serve control`` on its own.

The control plane then keeps the desired state (releases, formation) and runs
the release phase itself, but starts nothing: on a cluster the agent applies
releases; under ``slipway up`` a RuntimeTarget replaces this one. Dynos are
reported as none, truthfully.

With no agent to ask, the release phase (and review apps' postdeploy and
pr-predestroy) runs here, as a subprocess of the control plane in the
artifact's directory: only right where the artifacts are local directories.
``AgentTarget`` hands it to the agent instead (``POST /v1/apps/{app}/run``).
"""

from __future__ import annotations

import logging
from typing import Any

from control.models import Formation
from control.releasing import Deployment, Dyno, PhaseResult, run_release_command

log = logging.getLogger(__name__)


class DetachedTarget:
    def __init__(self, *, release_timeout: float) -> None:
        self._release_timeout = release_timeout

    async def release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        return await run_release_command(
            command, cwd=deployment.artifact, env=deployment.env, timeout=self._release_timeout
        )

    async def deploy(self, deployment: Deployment) -> None:
        log.info(
            "release recorded; no runtime attached",
            extra={"app": deployment.app, "release": deployment.version},
        )

    async def scale(self, app: str, item: Formation) -> None:
        log.info(
            "formation recorded; no runtime attached", extra={"app": app, "process_type": item.type}
        )

    async def restart(self, app: str, process: str | None) -> None:
        log.info("restart asked; no runtime attached", extra={"app": app, "process_type": process})

    async def dynos(self, app: str) -> list[Dyno]:
        return []

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        return None

    async def forget(self, app: str) -> None:
        return None
