"""A ReleaseTarget for API tests: runs the release phase for real, records the rest.

The API tests are about the control plane's decisions and wire format; what
a runtime does with a deployment is tested end to end in test_release_e2e.py
with real app processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.models import Formation
from control.releasing import (
    Deployment,
    Dyno,
    DynoState,
    PhaseResult,
    run_release_command,
)


@dataclass
class RecordingTarget:
    deployments: list[Deployment] = field(default_factory=list)
    scaled: list[tuple[str, Formation]] = field(default_factory=list)
    restarts: list[tuple[str, str | None]] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)

    async def release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        return await run_release_command(
            command, cwd=deployment.artifact, env=deployment.env, timeout=10
        )

    async def deploy(self, deployment: Deployment) -> None:
        self.deployments.append(deployment)

    async def scale(self, app: str, item: Formation) -> None:
        self.scaled.append((app, item))

    async def restart(self, app: str, process: str | None) -> None:
        self.restarts.append((app, process))

    async def dynos(self, app: str) -> list[Dyno]:
        running = [d for d in self.deployments if d.app == app]
        if not running:
            return []
        last = running[-1]
        return [
            Dyno(name=f"{f.type}.{i}", type=f.type, state=DynoState.UP, release=last.version)
            for f in last.formation
            for i in range(1, f.quantity + 1)
        ]

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        return None  # nothing runs: the control plane answers from the formation

    async def forget(self, app: str) -> None:
        self.forgotten.append(app)
