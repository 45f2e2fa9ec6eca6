"""Process sizes: how much memory and CPU one instance of a process type may use.

Heroku's names, so a team moving over keeps its vocabulary (memory is Heroku's;
CPU is ours, in cores, since "compute units" do not translate to a container):

=============  ========  ===========  =========  ============================
size           memory    CPU request  CPU limit  notes
=============  ========  ===========  =========  ============================
eco            512 MB    0.1          1          shared, like ``basic``
basic          512 MB    0.1          1
standard-1x    512 MB    0.25         1          the default
standard-2x    1 GB      0.5          2
performance-m  2.5 GB    2            2          dedicated: request = limit
performance-l  14 GB     8            8
=============  ========  ===========  =========  ============================

An explicit size is a memory amount with an optional CPU: ``768MB``,
``1.5GB,2cpu`` (the CPU request is then a quarter of the limit, as for the
shared sizes, and at least 0.1).

The memory quota is what Heroku's R14 compares against (RSS plus swap, page cache
left out); the hard limit, where the process is killed and restarted (R15), is twice
the quota, as for Heroku's Cedar dynos (docs: "Memory Behavior", R15 limits per
size). On Kubernetes the quota is the memory request and the hard limit the memory
limit, so the kubelet's OOM kill is the R15.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from agent.errors import ConfigError

MB = 1024 * 1024
#: R15 past this multiple of the quota (Heroku's Cedar dynos: 2x, e.g. 1 GB for 512 MB).
HARD_LIMIT_FACTOR = 2.0
DEFAULT_SIZE = "standard-1x"
#: Below this a process is hardly a process: a typo ("5MB" for "5GB"), refused.
MIN_MEMORY_MB = 64
#: One process past this is not a dyno but a machine; refused so a typo cannot ask it.
MAX_MEMORY_MB = 64 * 1024
MAX_CPU = 32.0


@dataclass(frozen=True, slots=True)
class Size:
    name: str
    memory_mb: int
    cpu_request: float
    cpu_limit: float

    @property
    def quota_bytes(self) -> int:
        return self.memory_mb * MB

    @property
    def hard_limit_bytes(self) -> int:
        return int(self.memory_mb * HARD_LIMIT_FACTOR) * MB


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("eco", 512, 0.1, 1.0),
        Size("basic", 512, 0.1, 1.0),
        Size("standard-1x", 512, 0.25, 1.0),
        Size("standard-2x", 1024, 0.5, 2.0),
        Size("performance-m", 2560, 2.0, 2.0),
        Size("performance-l", 14336, 8.0, 8.0),
    )
}
_EXPLICIT = re.compile(r"(\d+(?:\.\d+)?)(mb|gb)(?:,(\d+(?:\.\d+)?)cpu)?")


def parse_size(text: str | None) -> Size:
    """The size ``text`` names (None: the default); ConfigError says what is accepted."""
    if text is None:
        return SIZES[DEFAULT_SIZE]
    key = text.strip().lower()
    if key in SIZES:
        return SIZES[key]
    match = _EXPLICIT.fullmatch(key.replace(" ", ""))
    if match is None:
        raise ConfigError(
            f"size {text!r} is unknown: use one of {', '.join(SIZES)}, or an amount of "
            "memory with an optional CPU, like '768MB' or '1.5GB,2cpu'"
        )
    amount, unit, cpu_text = match.groups()
    memory = float(amount) * (1024 if unit == "gb" else 1)
    if not MIN_MEMORY_MB <= memory <= MAX_MEMORY_MB:
        raise ConfigError(f"size {text!r}: memory must be {MIN_MEMORY_MB}MB to {MAX_MEMORY_MB}MB")
    cpu = float(cpu_text) if cpu_text is not None else 1.0
    if not 0.1 <= cpu <= MAX_CPU or not math.isfinite(cpu):
        raise ConfigError(f"size {text!r}: cpu must be 0.1 to {MAX_CPU:g} cores")
    # The canonical spelling, whatever was typed ("0001.5GB" is "1536mb"): short enough
    # for the store's column, and equal for equal sizes (a restart only for a real change).
    name = f"{int(memory)}mb" + (f",{cpu:g}cpu" if cpu_text is not None else "")
    return Size(name, int(memory), max(0.1, round(cpu / 4, 3)), cpu)


def check_size(text: object, where: str) -> str | None:
    """A size from the wire (a string or null), checked; its canonical text."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{where}: size must be a string like 'standard-2x' or '768MB'")
    try:
        return parse_size(text).name
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
