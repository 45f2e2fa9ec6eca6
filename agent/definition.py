"""An app's definition on the wire: how the control plane tells an agent what to run.

The apps file defines apps at start; the control plane defines them while
the agent runs, in process (``slipway up``) or over HTTP
(``PUT /v1/apps/{app}``), with the same JSON, so both paths go through
``parse_definition``::

    {
      "hosts": ["shop.localhost"],
      "release": 3,
      "env": {"GREETING": "hi"},
      "processes": {"web": {"command": "python app.py", "cwd": "/srv/shop/v3",
                            "image": null, "health_path": null,
                            "size": "standard-1x", "restart_on_change": true}},
      "formation": {"web": 1, "worker": 0},
      "policy": {"idle_after": 300, "min_scale": 0, "max_scale": 10,
                 "never_sleep": false, "boot_timeout": 60, "max_held": 100},
      "always_on": [],
      "autoscale": {"web": {"target": 10, "stable_window": 60, "panic_window": 6,
                            "panic_threshold": 2, "scale_down_delay": 60}},
      "queues": {"worker": {"kind": "rq", "names": ["default"], "url_var": "REDIS_URL"}},
      "maintenance": false
    }

Parsing is pure and strict, like the apps file: an unknown key is an error
naming it. Only ``processes`` is required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from agent.apps import WEB, AppConfig, check_name
from agent.autoscale import autoscale_json, parse_autoscale
from agent.dynosize import check_size
from agent.errors import ConfigError
from agent.policy import Policy
from agent.queues import parse_source
from agent.runtime import ProcessSpec

#: A host name the router matches (``*.domain`` for a wildcard), checked whole: the route
#: table is keyed by it, so "a.test\n" must not pass for a second, distinct "a.test".
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_KEYS = frozenset(
    {
        "hosts",
        "release",
        "env",
        "processes",
        "formation",
        "policy",
        "always_on",
        "autoscale",
        "queues",
        "maintenance",
    }
)
_PROCESS_KEYS = frozenset({"command", "cwd", "image", "health_path", "size", "restart_on_change"})
_POLICY_TYPES: dict[str, tuple[type, ...]] = {
    "idle_after": (int, float),
    "boot_timeout": (int, float),
    "min_scale": (int,),
    "max_scale": (int,),
    "max_held": (int,),
    "never_sleep": (bool,),
}


def definition_json(config: AppConfig) -> dict[str, Any]:
    """The wire form of ``config`` (every process shares the app's env and release)."""
    specs = list(config.processes.values())
    first = specs[0] if specs else None
    return {
        "hosts": list(config.hosts),
        "release": first.release if first else 0,
        "env": dict(first.env) if first else {},
        "processes": {
            name: {
                "command": spec.command,
                "cwd": spec.cwd,
                "image": spec.image,
                "health_path": spec.health_path,
                **({"size": spec.size} if spec.size is not None else {}),
                **({} if spec.restart_on_change else {"restart_on_change": False}),
            }
            for name, spec in config.processes.items()
        },
        "formation": dict(config.formation),
        "policy": asdict(config.policy),
        "always_on": sorted(config.always_on),
        "autoscale": autoscale_json(config.autoscale),
        "queues": {process: source.wire() for process, source in sorted(config.queues.items())},
        "maintenance": config.maintenance,
    }


def parse_definition(name: str, data: object) -> AppConfig:
    """The app ``name`` as ``data`` defines it; ConfigError says what is wrong."""
    where = f"app {name!r}"
    check_name(name, where)
    entry = _object(data, where)
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    hosts = entry.get("hosts", [])
    if not isinstance(hosts, list) or not all(
        isinstance(h, str) and _HOST.fullmatch(h.lower()) for h in hosts
    ):
        raise ConfigError(f"{where}: hosts must be a list of host names (or *.domain)")
    release = entry.get("release", 0)
    if not isinstance(release, int) or isinstance(release, bool) or release < 0:
        raise ConfigError(f"{where}: release must be a whole number >= 0")
    env = _strings(entry.get("env", {}), f"{where} env")
    processes = _object(entry.get("processes"), f"{where} processes")
    if not processes:
        raise ConfigError(f"{where}: no processes")
    if hosts and WEB not in processes:
        raise ConfigError(f"{where}: has hosts but no web process")
    specs = {process: _spec(name, process, raw, env, release) for process, raw in processes.items()}
    formation = _object(entry.get("formation", {}), f"{where} formation")
    for process, count in formation.items():
        if process not in specs:
            raise ConfigError(f"{where}: formation names {process!r}, not a process type")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ConfigError(f"{where}: formation.{process} must be a whole number >= 0")
    always_on = entry.get("always_on", [])
    if not isinstance(always_on, list) or not all(p in specs for p in always_on):
        raise ConfigError(f"{where}: always_on must list process types of the app")
    if WEB in always_on:
        raise ConfigError(f"{where}: web cannot be always_on; use never_sleep")
    queues = _object(entry.get("queues", {}), f"{where} queues")
    for process in queues:
        if process not in specs or process == WEB:
            raise ConfigError(f"{where}: queues.{process} must name a worker process type")
    maintenance = entry.get("maintenance", False)
    if not isinstance(maintenance, bool):
        raise ConfigError(f"{where}: maintenance must be true or false")
    return AppConfig(
        name=name,
        hosts=tuple(h.lower() for h in hosts),
        processes=specs,
        policy=_policy(entry.get("policy", {}), where),
        formation=dict(formation),
        always_on=frozenset(always_on),
        autoscale=parse_autoscale(entry.get("autoscale", {}), specs, where),
        queues={p: parse_source(raw, f"{where} queues.{p}") for p, raw in queues.items()},
        maintenance=maintenance,
    )


def _spec(app: str, process: str, raw: object, env: Mapping[str, str], release: int) -> ProcessSpec:
    where = f"app {app!r} process {process!r}"
    check_name(process, where, process=True)
    entry = _object(raw, where)
    unknown = set(entry) - _PROCESS_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"{where}: command must be a non-empty string")
    optional = {key: entry.get(key) for key in ("cwd", "image", "health_path")}
    for key, value in optional.items():
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: {key} must be a non-empty string or null")
    restart_on_change = entry.get("restart_on_change", True)
    if not isinstance(restart_on_change, bool):
        raise ConfigError(f"{where}: restart_on_change must be true or false")
    health = optional["health_path"]
    if health is not None and not health.startswith("/"):
        raise ConfigError(f"{where}: health_path must start with '/'")
    return ProcessSpec(
        app=app,
        process=process,
        command=command,
        env=dict(env),
        cwd=optional["cwd"],
        image=optional["image"],
        release=release,
        health_path=health if process == WEB else None,
        size=check_size(entry.get("size"), where),
        restart_on_change=restart_on_change,
    )


def _policy(raw: object, where: str) -> Policy:
    entry = _object(raw, f"{where} policy")
    kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        types = _POLICY_TYPES.get(key)
        if types is None:
            raise ConfigError(f"{where}: unknown policy key {key!r}")
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise ConfigError(f"{where}: policy.{key} has the wrong type")
        kwargs[key] = float(value) if isinstance(value, int | float) and float in types else value
    try:
        return Policy(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object")
    return value


def _strings(value: object, where: str) -> dict[str, str]:
    entry = _object(value, where)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        raise ConfigError(f"{where}: values must be strings")
    return entry
