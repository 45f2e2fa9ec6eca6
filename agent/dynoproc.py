"""Reading one local process's usage: its own cgroup when it has one, else its /proc tree.

Blocking file reads (a few per process): the monitor calls ``sample_pid`` for
every instance of a round in one worker thread, never on the loop.

- cgroup v2 (``0::/path``) or v1 (the ``memory`` and ``cpuacct`` controllers):
  used only when the process's group is not the agent's own, since a shared group
  would count every app together. ``memory.stat``'s ``anon``/``rss`` is RSS,
  ``file``/``cache`` the page cache; swap and CPU from their own files.
- otherwise the tree under the pid (``/proc/PID/task/TID/children``, or a scan
  of /proc where the kernel lacks that file): RSS is RssAnon + RssShmem summed
  over the tree, cache RssFile, swap VmSwap, CPU utime + stime of every member.
  A sandboxed process (bwrap, kit/spawn.py) is a tree too: bwrap, then the app.
"""

from __future__ import annotations

import os
import re

from agent.dyno import Sample

PROC = "/proc"
CGROUP_ROOT = "/sys/fs/cgroup"
_TICK = os.sysconf("SC_CLK_TCK")
#: A fork bomb must not turn one sample into a walk of the whole machine.
MAX_TREE = 512
_STATUS_FIELDS = re.compile(r"^(RssAnon|RssFile|RssShmem|VmSwap):\s+(\d+)", re.MULTILINE)


def sample_pid(
    pid: int, *, own_groups: dict[str, str] | None = None, groups: dict[str, str] | None = None
) -> Sample | None:
    """The usage of ``pid`` and everything under it; None once it is gone.

    ``groups``: the process's cgroups if the caller knows them (they do not change while it
    runs, so the monitor reads them once per process); ``own_groups``: the agent's own.
    """
    if groups is None:
        groups = cgroups_of(pid)
        if groups is None:
            return None
    mine = own_groups if own_groups is not None else (cgroups_of(os.getpid()) or {})
    sample = _from_cgroup(pid, groups, mine)
    if sample is not None:
        return sample
    return sample_tree(pid)


def sample_tree(pid: int) -> Sample | None:
    rss = cache = swap = 0
    ticks = 0
    start = ""
    parents = None if os.path.exists(f"{PROC}/{pid}/task/{pid}/children") else _parents()
    queue = [pid]
    index = 0
    while index < len(queue):
        member = queue[index]
        index += 1
        stat = _read(f"{PROC}/{member}/stat")
        status = _read(f"{PROC}/{member}/status")
        if stat is None or status is None:
            if member == pid:
                return None
            continue  # exited between the listing and the read
        fields = stat.rsplit(")", 1)[-1].split()
        # After the comm, state is fields[0]: utime (field 14) is [11], stime [12],
        # num_threads (20) [17], starttime (22) [19].
        ticks += int(fields[11]) + int(fields[12])
        if member == pid:
            start = fields[19]
        values = _status_kb(status)
        rss += values.get("RssAnon", 0) + values.get("RssShmem", 0)
        cache += values.get("RssFile", 0)
        swap += values.get("VmSwap", 0)
        if len(queue) < MAX_TREE:
            queue.extend(_children(member, int(fields[17]), parents))
    return Sample(
        rss=rss * 1024,
        cache=cache * 1024,
        swap=swap * 1024,
        cpu_seconds=ticks / _TICK,
        incarnation=f"{pid}-{start}",
    )


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (breadth first, at most MAX_TREE)."""
    parents = None if os.path.exists(f"{PROC}/{pid}/task/{pid}/children") else _parents()
    found = [pid]
    index = 0
    while index < len(found) and len(found) < MAX_TREE:
        found.extend(_children(found[index], 0, parents))
        index += 1
    return found[:MAX_TREE]


def _children(pid: int, threads: int, parents: dict[int, int] | None) -> list[int]:
    """The children of ``pid``: from its threads' ``children`` files (only the main
    thread's when it has one thread, which saves listing its tasks), or ``parents``."""
    if parents is not None:
        return [p for p, parent in parents.items() if parent == pid]
    if threads == 1:
        tasks = [str(pid)]
    else:
        try:
            tasks = os.listdir(f"{PROC}/{pid}/task")
        except OSError:
            return []
    found: list[int] = []
    for task in tasks:
        text = _read(f"{PROC}/{pid}/task/{task}/children")
        if text:
            found.extend(int(c) for c in text.split())
    return found


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (the slow way, for kernels without children)."""
    out: dict[int, int] = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            stat = _read(f"{PROC}/{name}/stat")
            if stat is not None:
                out[int(name)] = int(stat.rsplit(")", 1)[-1].split()[1])
    return out


def cgroups_of(pid: int) -> dict[str, str] | None:
    """controller (``""`` for v2) -> group path, from /proc/PID/cgroup; None if gone."""
    text = _read(f"{PROC}/{pid}/cgroup")
    if text is None:
        return None
    groups: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                groups[controller] = parts[2]
    return groups


def _from_cgroup(pid: int, groups: dict[str, str], mine: dict[str, str]) -> Sample | None:
    memory, cpu = groups.get("memory"), groups.get("cpuacct")
    if memory is not None and memory != mine.get("memory") and memory != "/":
        return read_v1(f"{CGROUP_ROOT}/memory{memory}", cpu and f"{CGROUP_ROOT}/cpuacct{cpu}", pid)
    unified = groups.get("")
    if unified is not None and unified != mine.get("") and unified != "/":
        for base in (CGROUP_ROOT, f"{CGROUP_ROOT}/unified"):
            if os.path.exists(f"{base}{unified}/memory.stat"):
                return read_v2(f"{base}{unified}", pid)
    return None


def read_v2(path: str, pid: int) -> Sample | None:
    stat = _keyed(_read(f"{path}/memory.stat"))
    cpu = _keyed(_read(f"{path}/cpu.stat"))
    if stat is None:
        return None
    swap = _read(f"{path}/memory.swap.current")
    return Sample(
        rss=stat.get("anon", 0) + stat.get("shmem", 0),
        cache=stat.get("file", 0) - stat.get("shmem", 0),
        swap=int(swap) if swap and swap.strip().isdigit() else 0,
        cpu_seconds=(cpu or {}).get("usage_usec", 0) / 1e6,
        incarnation=f"{pid}-{path.rsplit('/', 1)[-1]}",
    )


def read_v1(memory: str, cpuacct: str | None, pid: int) -> Sample | None:
    stat = _keyed(_read(f"{memory}/memory.stat"))
    if stat is None:
        return None
    usage = _read(f"{cpuacct}/cpuacct.usage") if cpuacct else None
    return Sample(
        rss=stat.get("total_rss", stat.get("rss", 0)) + stat.get("total_shmem", 0),
        cache=stat.get("total_cache", stat.get("cache", 0)),
        swap=stat.get("total_swap", stat.get("swap", 0)),
        cpu_seconds=int(usage) / 1e9 if usage and usage.strip().isdigit() else 0.0,
        pgpgin=stat.get("total_pgpgin", stat.get("pgpgin", 0)),
        pgpgout=stat.get("total_pgpgout", stat.get("pgpgout", 0)),
        incarnation=f"{pid}-{memory.rsplit('/', 1)[-1]}",
    )


def _keyed(text: str | None) -> dict[str, int] | None:
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _status_kb(text: str) -> dict[str, int]:
    """The kB fields of /proc/PID/status the sample needs (one regex pass, not 55 splits)."""
    return {key: int(value) for key, value in _STATUS_FIELDS.findall(text)}


def _read(path: str) -> str | None:
    """The whole file, or None; raw reads: a text file object costs more than the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 8192):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
