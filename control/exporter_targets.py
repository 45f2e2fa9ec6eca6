"""The exporters' targets files, written from the add-on registry.

One file per service (``postgres-targets.toml``, ``redis-targets.toml``) in
the exporters' format::

    [[targets]]
    name = "postgres-1a2b3c4d"
    dsn_file = "/var/lib/slipway/exporters/dsn/postgres-1a2b3c4d"
    labels = { app = "shop", plan = "mini", addon = "postgres-1a2b3c4d" }

Credentials go by file reference (one 0600 file per add-on under ``dsn/``),
never inline, so the targets file can be read, diffed and logged freely.
Files are replaced atomically (write, then rename) so an exporter reloading
mid-write never reads half a file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from pathlib import Path

from control.models import Addon

SERVICES = ("postgres", "redis")


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(value)


def render(addons: Iterable[Addon], *, service: str, dsn_dir: Path) -> str:
    """The targets file for one service (pure)."""
    blocks = ["# Written by the slipway control plane; changes here are overwritten.\n"]
    for addon in sorted(addons, key=lambda a: a.name):
        if addon.service != service:
            continue
        labels = ", ".join(
            f"{key} = {_toml_string(value)}"
            for key, value in (("app", addon.app), ("plan", addon.plan), ("addon", addon.name))
        )
        blocks.append(
            "[[targets]]\n"
            f"name = {_toml_string(addon.name)}\n"
            f"dsn_file = {_toml_string(str(dsn_dir / addon.name))}\n"
            f"labels = {{ {labels} }}\n"
        )
    return "\n".join(blocks)


def _replace(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_sync(directory: Path, addons: list[Addon]) -> None:
    dsn_dir = directory / "dsn"
    dsn_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = {addon.name for addon in addons}
    for addon in addons:
        _replace(dsn_dir / addon.name, addon.url, 0o600)
    for stale in dsn_dir.iterdir():
        if stale.name not in wanted and not stale.name.startswith("."):
            stale.unlink()
    for service in SERVICES:
        text = render(addons, service=service, dsn_dir=dsn_dir)
        _replace(directory / f"{service}-targets.toml", text, 0o644)


async def write(directory: Path, addons: list[Addon]) -> None:
    await asyncio.to_thread(write_sync, directory, addons)
