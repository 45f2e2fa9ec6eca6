"""Builds the router's hot modules with mypyc at ``pip install`` time; pure Python otherwise.

Everything else about the distribution is in pyproject.toml. The modules below
are the request path (parse, forward, answer, log); compiled, they carry a
request in roughly half the interpreter's time (bench/router.py). The same
.py files stay the source of truth: mypy, ruff and the tests read them, and
where no compiled module is present Python imports them as they are.

Pure Python instead when SLIPWAY_PURE_PYTHON=1, when mypyc cannot be imported,
or when no C compiler is found; mypyc refusing the code, or a compile that
fails part way, also leaves the pure modules in place (the extensions are
optional). tests/router/test_build.py compiles them, so CI sees a refusal. At run time the same
variable makes router/__init__.py import the .py files over compiled ones.

An editable install (``pip install -e .``, what the Makefile does) builds the
compiled modules in place, beside their sources; ``make test`` rebuilds them
whenever a router module changes, so a compiled module never hides a newer .py.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import sysconfig

from setuptools import Extension, setup

# The request path, in the order a request meets it. Modules off it (the route
# feed, settings, the server) stay interpreted: they run once per poll or
# start, and compiling them would buy nothing. The counters each request bumps
# are compiled (counters.py); their collector (metrics.py) stays interpreted:
# compiled, RouterStats (a prometheus Collector, an ABC) crashed the garbage
# collector in tests/router. activity.py stays interpreted for now.
HOT_MODULES = (
    "router/client.py",
    "router/exchange.py",
    "router/upstream.py",
    "router/proxy.py",
    "router/routes.py",
    "router/accesslog.py",
    "router/pages.py",
    "router/holder.py",
    "router/counters.py",
)


def _why_pure() -> str | None:
    """Why the hot modules stay interpreted, or None to compile them."""
    if os.environ.get("SLIPWAY_PURE_PYTHON") == "1":
        return "SLIPWAY_PURE_PYTHON=1"
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]})"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "no Python headers (Python.h)"
    return None


def hot_extensions() -> list[Extension]:
    why = _why_pure()
    if why is not None:
        print(f"slipway: router modules stay pure Python: {why}", file=sys.stderr)
        return []
    mypycify = importlib.import_module("mypyc.build").mypycify
    # The build environment has only the build requirements: the libraries the hot
    # modules import are unknown there (typed Any, which compiles to plain Python
    # calls), and the project's strict settings are for the type check, not the build.
    options = ["--config-file", "", "--ignore-missing-imports", "--follow-imports=silent"]
    try:
        # One shared library for the group, named so it reads as ours beside the packages.
        extensions = mypycify(
            [*options, *HOT_MODULES], opt_level="3", debug_level="0", group_name="slipway_router"
        )
    except (Exception, SystemExit) as exc:  # mypyc refused the code: install it interpreted
        print(f"slipway: router modules stay pure Python: mypyc failed: {exc!r}", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # a failed compile leaves the .py modules in place
    return extensions


if __name__ == "__main__":  # as setuptools runs it; tests import the functions above
    setup(ext_modules=hot_extensions())
