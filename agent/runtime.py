"""The ``Runtime`` seam: what the agent needs from whatever runs app processes.

Level-triggered, like a Kubernetes controller: the runtime reports the whole
status of one app's process type after every change, and the agent's pure
decisions read those snapshots. LocalRuntime (child processes) and
KubernetesRuntime (Deployments, EndpointSlices) implement it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.apps import AppConfig


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to run one process type of one app (one Procfile line)."""

    app: str
    process: str
    command: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: LocalRuntime: the app's directory. KubernetesRuntime ignores it.
    cwd: str | None = None
    #: KubernetesRuntime: the image (digest). LocalRuntime ignores it.
    image: str | None = None
    #: Release number, so a restart for a new release is visible in status.
    release: int = 0
    #: HTTP path to probe for readiness; None means a TCP connect.
    health_path: str | None = None
    #: Memory and CPU of each instance (agent/dynosize.py); None: the default size.
    size: str | None = None
    #: False: a changed spec is taken at each instance's next start, the running ones are
    #: left alone (a dedicated add-on whose new limits the control plane set on the
    #: running server itself). LocalRuntime honours it; KubernetesRuntime rolls anyway.
    restart_on_change: bool = True


@dataclass(frozen=True, slots=True)
class Instance:
    """One running copy: ``web.1`` locally, a pod on Kubernetes."""

    name: str
    #: Address the router connects to (pod IP or 127.0.0.1); None until known.
    host: str | None
    port: int | None
    ready: bool
    crashed: bool = False
    #: Why it is crashed or not ready: "exited with code 1", "CrashLoopBackOff".
    reason: str = ""
    #: Times this instance was restarted after exiting (a crash loop counts up here).
    restarts: int = 0
    #: When its current process started (epoch seconds; ``ps``'s "since"), if known.
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    app: str
    process: str
    desired: int
    instances: tuple[Instance, ...] = ()

    @property
    def ready(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.ready and i.host and i.port)

    @property
    def crashed(self) -> bool:
        return any(i.crashed for i in self.instances)


@dataclass(frozen=True, slots=True)
class OnceResult:
    """How a one-off process ended: the release phase, postdeploy, pr-predestroy."""

    ok: bool
    #: The tail of its combined stdout and stderr, or why it did not run or finish.
    output: str


class Runtime(Protocol):
    """Where processes run. Every method may raise ``RuntimeFailure`` (agent/errors.py) when
    the runtime cannot do what it is asked; ``ConfigError`` when what it is asked is wrong.

    What differs between runtimes is said here, so the Agent has one body for all: a
    runtime that outlives the agent (Kubernetes) keeps each app's definition and its last
    activity for the next agent, and restarts by rolling.
    """

    #: Seconds between two ``record_activity`` rounds; None where nothing outlives the agent.
    activity_interval: float | None

    def describe(self, config: AppConfig) -> None:
        """The app's whole definition, told before its specs are applied; ConfigError if this
        runtime cannot run it (Kubernetes: every process needs an image)."""

    async def restart(self, app: str, process: str) -> None:
        """Fresh instances of a process type, on the same spec and at the same replicas."""

    def last_activity(self, app: str) -> float | None:
        """When the app was last used (epoch seconds), as persisted by ``record_activity``."""

    async def record_activity(self, app: str, process: str, at: float) -> None:
        """Persist the app's last activity (epoch seconds) for the next agent."""

    async def apply(self, spec: ProcessSpec) -> None:
        """Define or update a process type; running instances restart onto the new spec
        (unless it says ``restart_on_change=False``, where the runtime can keep them)."""

    async def remove(self, app: str, process: str) -> None:
        """Stop and forget a process type."""

    async def scale(self, app: str, process: str, replicas: int) -> None:
        """Set the desired replicas; returns once asked, not once done."""

    async def run_once(self, spec: ProcessSpec, command: str, *, timeout: float) -> OnceResult:
        """Run ``command`` once in ``spec``'s release (its directory or image, its env);
        bounded by ``timeout`` (then killed, and the result says so); never raises for a
        command that fails."""

    def watch(self) -> AsyncIterator[ProcessStatus]:
        """Every change as a whole snapshot; first the current status of everything."""

    async def close(self) -> None:
        """Stop watching; LocalRuntime also stops its children."""
