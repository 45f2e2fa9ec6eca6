"""What a slug is made of, on disk: its dependency links, its size, its digest.

Blocking file work the local builder runs off the loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from control.builds.errors import SourceError
from control.builds.model import Stack


def link(stack: Stack, deps: Path, src: Path) -> None:
    if stack is Stack.PYTHON:
        (src.parent / ".venv").symlink_to(deps / "venv", target_is_directory=True)
    else:
        (src / "node_modules").symlink_to(deps / "node_modules", target_is_directory=True)


def copy_manifests(src: Path, deps: Path) -> bool:
    """package.json (and its lockfile, if any) where npm installs; whether there is a lockfile."""
    deps.mkdir(parents=True)
    shutil.copy2(src / "package.json", deps / "package.json")
    for name in ("package-lock.json", "npm-shrinkwrap.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, deps / name)
            return True
    return False


def place_node(binary: Path, bin_dir: Path) -> None:
    """The app's node beside its dependencies' commands: a hard link to the cached one.

    Hard-linked, never copied twice (a Node is ~100 MB): the confiner leaves files with
    other links to their owner, so the app's uid can run it but never change the cache.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "node"
    target.unlink(missing_ok=True)
    try:
        os.link(binary, target)
    except OSError:
        shutil.copy2(binary, target)


def size(slug: Path) -> int:
    """Bytes of the slug's files and of the dependency set it links to."""
    total = 0
    roots = [
        slug,
        *(
            link.resolve()
            for link in (slug / ".venv", slug / "app" / "node_modules")
            if link.is_symlink()
        ),
    ]
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                if not os.path.islink(path):
                    total += os.lstat(path).st_size
    return total


def has_django(venv: Path) -> bool:
    return any(venv.glob("lib/python3*/site-packages/django/__init__.py"))


def unpack(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"cannot unpack source archive {archive.name}: {exc}") from exc
    entries = list(dest.iterdir())
    # GitHub-style archives wrap everything in one top directory: build from inside it.
    if len(entries) == 1 and entries[0].is_dir() and not (dest / "Procfile").exists():
        inner = entries[0]
        for child in list(inner.iterdir()):
            child.rename(dest / child.name)
        inner.rmdir()


def digest(src: Path, dependency_key: str) -> str:
    digest = hashlib.sha256(b"slipway-slug-v1\0" + dependency_key.encode() + b"\0")
    for path in sorted(src.rglob("*")):
        rel = str(path.relative_to(src)).encode()
        if path.is_symlink():
            digest.update(b"L" + rel + b"\0" + os.readlink(path).encode() + b"\0")
        elif path.is_file():
            digest.update(b"F" + rel + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 16), b""):
                    digest.update(block)
            digest.update(b"\0")
    return "sha256:" + digest.hexdigest()
