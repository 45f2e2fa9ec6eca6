"""What the agent runs: apps, their Procfile processes and policy, from a TOML file.

The file (``examples/apps.toml`` is one)::

    [defaults]                   # optional; any policy key
    idle_after = "5m"

    [apps.hello]
    directory = "hello"          # relative to the file
    procfile = "Procfile"        # relative to directory; the default
    hosts = ["hello.localhost"]
    idle_after = "10s"           # policy: idle_after min_scale max_scale never_sleep
                                 #         boot_timeout max_held
    health_path = "/"            # HTTP readiness probe; a TCP connect when absent
    formation = { web = 1 }      # replicas per process type while awake; 1 each by default
    sizes = { web = "standard-2x" }  # memory and CPU per process type (agent/dynosize.py)
    env = { GREETING = "hi" }
    always_on = ["clock"]        # process types that do not sleep with web
    queues = { worker = { kind = "rq", names = ["default"] } }  # jobs wake the worker;
                                 # usual worker lines (rq worker, celery, sidekiq) need none

    [apps.hello.autoscale.web]   # optional: web replicas follow requests in flight, within
    target = 10                  # [min_scale, max_scale]; also stable_window, panic_window,
                                 # panic_threshold, scale_down_delay (agent/autoscale.py)

Parsing is pure and strict: an unknown key is an error naming the key, so a
typo does not silently fall back to a default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.autoscale import Autoscale, parse_autoscale
from agent.dynosize import check_size
from agent.errors import ConfigError
from agent.policy import Policy
from agent.queues import QueueSource, detect, parse_source
from agent.runtime import ProcessSpec
from kit.durations import parse_duration

WEB = "web"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PROCESS = re.compile(r"^[A-Za-z0-9_-]+$")
_POLICY_KEYS = frozenset(f.name for f in fields(Policy))
_DURATIONS = frozenset({"idle_after", "boot_timeout"})
_APP_KEYS = _POLICY_KEYS | {
    "directory",
    "procfile",
    "hosts",
    "health_path",
    "formation",
    "env",
    "always_on",
    "autoscale",
    "queues",
    "sizes",
}


@dataclass(frozen=True, slots=True)
class AppConfig:
    name: str
    hosts: tuple[str, ...]
    #: process type -> how to run it (``web`` gets $PORT and is routed to).
    processes: Mapping[str, ProcessSpec]
    policy: Policy = field(default_factory=Policy)
    #: process type -> replicas while awake (web is clamped by the policy).
    formation: Mapping[str, int] = field(default_factory=dict)
    #: Process types that keep running while the app sleeps.
    always_on: frozenset[str] = frozenset()
    #: process type -> autoscaling by concurrency (web only); absent: the formation's replicas.
    autoscale: Mapping[str, Autoscale] = field(default_factory=dict)
    #: process type -> the queue whose jobs wake it (agent/queues.py).
    queues: Mapping[str, QueueSource] = field(default_factory=dict)
    #: Routers answer H80 (a maintenance page) instead of sending requests to the app.
    maintenance: bool = False

    def replicas(self, process: str) -> int:
        wanted = self.formation.get(process, 1)
        return self.policy.web_replicas(wanted) if process == WEB else wanted

    def sleeps_with_web(self, process: str) -> bool:
        return process == WEB or process not in self.always_on


def check_name(name: str, where: str, *, process: bool = False) -> None:
    """App names are DNS labels; process types are Procfile names."""
    if process:
        if not _PROCESS.fullmatch(name):
            raise ConfigError(f"{where}: process types are letters, digits, '-' and '_'")
    elif not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: app names are lower-case letters, digits and dashes")


def parse_procfile(text: str, *, source: str = "Procfile") -> dict[str, str]:
    """``name: command`` lines; blank lines and ``#`` comments are skipped."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not _PROCESS.fullmatch(name) or not command:
            raise ConfigError(f"{source}:{number}: expected 'name: command', got {raw!r}")
        if name in processes:
            raise ConfigError(f"{source}:{number}: process type {name!r} appears twice")
        processes[name] = command
    if not processes:
        raise ConfigError(f"{source}: no processes")
    return processes


def load_apps(path: Path, *, idle_after: float | None = None) -> list[AppConfig]:
    """Every app in the TOML file at ``path``; ``idle_after`` overrides each app's."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read apps file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_apps(data, base=path.parent, source=str(path), idle_after=idle_after)


def parse_apps(
    data: Mapping[str, Any], *, base: Path, source: str, idle_after: float | None = None
) -> list[AppConfig]:
    unknown = set(data) - {"defaults", "apps"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)} (use [apps.NAME])")
    defaults = _table(data.get("defaults", {}), f"{source}: [defaults]")
    bad = set(defaults) - _POLICY_KEYS
    if bad:
        raise ConfigError(f"{source}: [defaults] takes policy keys only, not {sorted(bad)}")
    apps = _table(data.get("apps", {}), f"{source}: [apps]")
    if not apps:
        raise ConfigError(f"{source}: no apps (add an [apps.NAME] table)")
    configs = [
        _app(name, _table(entry, f"{source}: [apps.{name}]"), defaults, base, source)
        for name, entry in apps.items()
    ]
    if idle_after is not None:
        configs = [replace(c, policy=replace(c.policy, idle_after=idle_after)) for c in configs]
    seen: dict[str, str] = {}
    for config in configs:
        for host in config.hosts:
            if host in seen:
                raise ConfigError(
                    f"{source}: host {host!r} is claimed by apps {seen[host]!r} and {config.name!r}"
                )
            seen[host] = config.name
    return configs


def _app(
    name: str, entry: Mapping[str, Any], defaults: Mapping[str, Any], base: Path, source: str
) -> AppConfig:
    where = f"{source}: [apps.{name}]"
    check_name(name, where)
    unknown = set(entry) - _APP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    directory = (base / _str(entry.get("directory", name), f"{where} directory")).resolve()
    procfile = directory / _str(entry.get("procfile", "Procfile"), f"{where} procfile")
    try:
        commands = parse_procfile(procfile.read_text(), source=str(procfile))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {procfile}: {exc.strerror or exc}") from exc
    hosts = entry.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError(f"{where}: hosts must be a list of host names")
    if hosts and WEB not in commands:
        raise ConfigError(f"{where}: has hosts but {procfile} has no web process")
    env = _table(entry.get("env", {}), f"{where} env")
    if not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where}: env values must be strings")
    health = entry.get("health_path")
    if health is not None and (not isinstance(health, str) or not health.startswith("/")):
        raise ConfigError(f"{where}: health_path must be a path starting with '/'")
    formation = _table(entry.get("formation", {}), f"{where} formation")
    for process, count in formation.items():
        if process not in commands:
            raise ConfigError(f"{where}: formation names {process!r}, not in {procfile}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigError(f"{where}: formation.{process} must be a whole number >= 0")
    always_on = entry.get("always_on", [])
    if not isinstance(always_on, list) or not all(p in commands for p in always_on):
        raise ConfigError(f"{where}: always_on must list process types from {procfile}")
    sizes = _table(entry.get("sizes", {}), f"{where} sizes")
    for process, size in sizes.items():
        if process not in commands:
            raise ConfigError(f"{where}: sizes names {process!r}, not in {procfile}")
        sizes[process] = check_size(size, f"{where} sizes.{process}")
    if WEB in always_on:
        raise ConfigError(f"{where}: web cannot be always_on; use never_sleep = true")
    policy = _policy({**defaults, **{k: v for k, v in entry.items() if k in _POLICY_KEYS}}, where)
    processes = {
        process: ProcessSpec(
            app=name,
            process=process,
            command=command,
            env=dict(env),
            cwd=str(directory),
            health_path=health if process == WEB else None,
            size=sizes.get(process),
        )
        for process, command in commands.items()
    }
    queues = _table(entry.get("queues", {}), f"{where} queues")
    for process in queues:
        if process not in commands or process == WEB:
            raise ConfigError(f"{where}: queues.{process} must name a worker in {procfile}")
    found = {p: detect(c, env) for p, c in commands.items() if p != WEB and p not in queues}
    return AppConfig(
        name=name,
        hosts=tuple(h.lower() for h in hosts),
        processes=processes,
        policy=policy,
        formation=dict(formation),
        always_on=frozenset(always_on),
        autoscale=parse_autoscale(entry.get("autoscale", {}), commands, where),
        queues={
            **{p: source for p, source in found.items() if source is not None},
            **{p: parse_source(raw, f"{where} queues.{p}") for p, raw in queues.items()},
        },
    )


def _policy(values: Mapping[str, Any], where: str) -> Policy:
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in _DURATIONS:
            kwargs[key] = _duration(value, f"{where} {key}")
        elif key == "never_sleep":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: never_sleep must be true or false")
            kwargs[key] = value
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where}: {key} must be a whole number")
            kwargs[key] = value
    try:
        return Policy(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _duration(value: object, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: expected a duration like 300, '10s' or '5m'")


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a string")
    return value
