"""The dyno monitor's source over LocalRuntime: its child processes, read from /proc or cgroups.

The hard limit is enforced here: past it (R15) the instance is killed with
SIGKILL and LocalRuntime restarts it as a crash. A kernel-enforced limit (a
delegated, writable cgroup v2 ``memory.max`` per instance) would act between
two samples; slipway does not create cgroups yet, so the enforcement is as fast
as the sampling interval (``DynoSettings.interval``).
"""

from __future__ import annotations

import asyncio
import os

from agent.dyno import Sample, runtime_metrics_enabled
from agent.dynoproc import cgroups_of, sample_pid
from agent.dynosize import parse_size
from agent.dynowatch import Target
from agent.errors import ConfigError
from agent.local import LocalRuntime


class LocalSource:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self._own_groups = cgroups_of(os.getpid()) or {}
        #: pid -> its cgroups, for the processes of the last round.
        self._groups: dict[int, dict[str, str]] = {}

    async def sample(self) -> list[tuple[Target, Sample]]:
        targets: list[Target] = []
        for spec, name, pid in self.runtime.running():
            try:
                size = parse_size(spec.size)
            except ConfigError:  # checked when defined; an old spec keeps the default
                size = parse_size(None)
            targets.append(
                Target(
                    app=spec.app,
                    process=spec.process,
                    dyno=name,
                    size=size,
                    runtime_metrics=runtime_metrics_enabled(dict(spec.env)),
                    handle=pid,
                )
            )
        if not targets:
            return []
        return await asyncio.to_thread(self._read, targets)

    def _read(self, targets: list[Target]) -> list[tuple[Target, Sample]]:
        found = []
        # A process keeps its cgroups while it runs: read once per pid, not per sample.
        known, self._groups = self._groups, {}
        for target in targets:
            pid = target.handle
            groups = known.get(pid) or cgroups_of(pid)
            if groups is None:
                continue  # gone since the listing
            self._groups[pid] = groups
            sample = sample_pid(pid, own_groups=self._own_groups, groups=groups)
            if sample is not None:
                found.append((target, sample))
        return found

    async def kill(self, target: Target, reason: str) -> bool:
        return self.runtime.kill(target.app, target.dyno, target.handle, reason=reason)

    def killed(self) -> list[Target]:
        return []  # the monitor is what kills here (``kill``)
