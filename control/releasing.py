"""How a release reaches whatever runs the app: the ``ReleaseTarget`` seam.

The control plane decides *what* runs (a release: artifact, Procfile, env,
formation); a target makes it so. Locally that is the agent's runtime
restarting child processes (``control/runtime_target.py``); on Kubernetes the
agent patches Deployments, each release's env in its own immutable Secret
``APP-env-vN`` so an old ReplicaSet never loses its config.

The release phase comes first: a Procfile ``release:`` command runs once with
the new release's env, and a failure stops the release there, leaving the
previous one running (Heroku's release phase).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agent.once import RELEASE_DYNO, run_shell
from control.models import Formation
from kit.spawn import DEFAULT_PATH

#: The Procfile entry that is a release phase, not a process type.
RELEASE_COMMAND = "release"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One release as the target needs it."""

    app: str
    version: int
    #: A directory locally, an image digest on Kubernetes; None before the first deploy.
    artifact: str | None
    #: Process type -> command, without the ``release`` entry.
    processes: Mapping[str, str]
    #: Config vars plus add-on URLs.
    env: Mapping[str, str]
    formation: Sequence[Formation] = field(default_factory=tuple)
    #: Host names the router sends to the app: APP.{app domain} and its custom domains.
    hosts: Sequence[str] = ()
    #: The router answers H80 (a maintenance page) instead of sending requests to the app.
    maintenance: bool = False


@dataclass(frozen=True, slots=True)
class PhaseResult:
    ok: bool
    #: The tail of the command's stdout and stderr, or why it did not run.
    output: str


class DynoState(StrEnum):
    ASLEEP = "asleep"
    WAKING = "waking"
    UP = "up"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class Dyno:
    name: str
    type: str
    state: DynoState
    release: int
    reason: str = ""
    size: str = "standard-1x"
    #: The agent's last sample of it (agent/dynowatch.py's ``usage``); None: not sampled.
    usage: Mapping[str, Any] | None = None
    #: When its process started (epoch seconds), if the runtime says.
    started_at: float | None = None


class ReleaseTarget(Protocol):
    async def release_phase(self, deployment: Deployment, command: str) -> PhaseResult:
        """Run the release command once with the new env; report, never raise on failure."""

    async def deploy(self, deployment: Deployment) -> None:
        """Run the release: every process type on its new command and env, at its quantity."""

    async def scale(self, app: str, item: Formation) -> None:
        """Apply one process type's quantity and idle policy."""

    async def restart(self, app: str, process: str | None) -> None:
        """Restart one process type, or all of the app's when None."""

    async def autoscale(self, app: str) -> dict[str, Any] | None:
        """The app's autoscaling state and recent decisions where it runs; None: not running."""

    async def dynos(self, app: str) -> list[Dyno]:
        """What runs now, with the runtime's view of its state."""

    async def forget(self, app: str) -> None:
        """Stop everything of a deleted app."""


#: A builder's slug carries this file (control/builds/local.py writes it).
SLUG_META = "slipway.json"


def slug_layout(artifact: str | None) -> tuple[str | None, dict[str, str]]:
    """Where a release's commands run, and what its artifact adds to their env.

    A plain directory runs as it is. A built slug (``slipway.json`` beside
    ``app/``) runs in ``app/`` with its virtualenv or ``node_modules/.bin``
    first on PATH, as Heroku puts a slug's tools on PATH.
    """
    if artifact is None or not os.path.isfile(os.path.join(artifact, SLUG_META)):
        return artifact, {}
    cwd = os.path.join(artifact, "app")
    env: dict[str, str] = {}
    paths = []
    venv = os.path.join(artifact, ".venv")
    if os.path.isdir(venv):
        env["VIRTUAL_ENV"] = venv
        paths.append(os.path.join(venv, "bin"))
    node_bin = os.path.join(cwd, "node_modules", ".bin")
    if os.path.isdir(node_bin):
        paths.append(node_bin)
    if paths:
        # The system's directories after the slug's, never slipway's own PATH (its venv).
        env["PATH"] = os.pathsep.join([*paths, DEFAULT_PATH])
    return cwd, env


def split_procfile(procfile: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The process types, and the release command if there is one."""
    processes = {name: cmd for name, cmd in procfile.items() if name != RELEASE_COMMAND}
    return processes, procfile.get(RELEASE_COMMAND)


async def run_release_command(
    command: str, *, cwd: str | None, env: Mapping[str, str], timeout: float
) -> PhaseResult:
    """Run ``command`` here, in a shell (DetachedTarget: no agent to run it)."""
    result = await run_shell(command, cwd=cwd, env=env, timeout=timeout, dyno=RELEASE_DYNO)
    return PhaseResult(ok=result.ok, output=result.output)
