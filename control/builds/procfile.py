"""Procfile parsing: ``name: command`` per line, as Heroku reads it.

Blank lines and ``#`` comments are skipped. A process name is letters,
digits, ``_`` and ``-`` (it becomes a label value and a ``/cnb/process/<type>``
path, so nothing else is safe). Every other mistake is an error naming the
line, because a silently dropped line is a process that never starts.
"""

from __future__ import annotations

import re

from control.builds.errors import ProcfileError

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Kubernetes label values stop at 63 characters; a process name ends up in one.
_MAX_NAME = 63


def parse_procfile(text: str) -> dict[str, str]:
    """Process type -> command, in file order."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep:
            raise ProcfileError(f"expected 'name: command', got {raw!r}", line=number)
        if not _NAME.match(name):
            raise ProcfileError(
                f"process name {name!r} may hold only letters, digits, '_' and '-'", line=number
            )
        if len(name) > _MAX_NAME:
            raise ProcfileError(
                f"process name {name!r} is over {_MAX_NAME} characters", line=number
            )
        if not command:
            raise ProcfileError(f"process {name!r} has no command", line=number)
        if name in processes:
            raise ProcfileError(f"process {name!r} is defined twice", line=number)
        processes[name] = command
    if not processes:
        raise ProcfileError("defines no process types")
    return processes
