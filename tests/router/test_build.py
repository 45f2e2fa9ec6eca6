"""The router's hot modules: compiled with mypyc where the build can, pure Python otherwise.

setup.py decides at install time; SLIPWAY_PURE_PYTHON=1 keeps a build pure and,
at run time, makes the router import its .py files over compiled ones.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTER = ROOT / "router"


def setup_module_() -> ModuleType:
    """setup.py's functions, without running setup() (it runs only as __main__)."""
    spec = importlib.util.spec_from_file_location("slipway_setup", ROOT / "setup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hot_names() -> list[str]:
    return [Path(p).stem for p in setup_module_().HOT_MODULES]


class TestWhenTheBuildStaysPure:
    def test_slipway_pure_python_builds_no_extension_and_says_why(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("SLIPWAY_PURE_PYTHON", "1")
        assert setup_module_().hot_extensions() == []
        assert "router modules stay pure Python: SLIPWAY_PURE_PYTHON=1" in capsys.readouterr().err

    def test_without_a_c_compiler_the_build_falls_back_to_pure_python(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("SLIPWAY_PURE_PYTHON", raising=False)
        monkeypatch.setenv("CC", "/nonexistent/cc -pthread")
        assert setup_module_().hot_extensions() == []
        assert "no C compiler (/nonexistent/cc)" in capsys.readouterr().err

    def test_code_mypyc_refuses_is_installed_interpreted_rather_than_failing_the_install(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("SLIPWAY_PURE_PYTHON", raising=False)
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.chdir(ROOT)
        setup = setup_module_()
        monkeypatch.setattr(setup, "HOT_MODULES", ("router/no_such_module.py",))
        assert setup.hot_extensions() == []
        assert "router modules stay pure Python: mypyc failed" in capsys.readouterr().err

    def test_every_hot_module_is_a_router_module_that_exists(self) -> None:
        assert all((ROUTER / f"{name}.py").is_file() for name in hot_names())


class TestAtRunTime:
    def test_slipway_pure_python_imports_every_hot_module_from_its_py_file(self) -> None:
        names = hot_names()
        script = (
            "import importlib\n"
            f"for name in {names!r}:\n"
            "    print(importlib.import_module('router.' + name).__file__)\n"
        )
        env = {**os.environ, "SLIPWAY_PURE_PYTHON": "1", "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        files = out.stdout.split()
        assert files == [str(ROUTER / f"{name}.py") for name in names]

    def test_no_compiled_module_in_the_tree_is_older_than_its_source(self) -> None:
        # A stale compiled module would run instead of the edited .py: `make test`
        # rebuilds them, and this says so if someone ran pytest on a stale tree.
        # The code is in the group's one library; each module's own .so is a small shim
        # that a rebuild may leave as it was.
        shims = [so.name.split(".")[0] for so in ROUTER.glob("*.so")]
        libraries = list(ROOT.glob("slipway_router__mypyc*.so"))
        assert libraries or not shims, f"compiled {shims} without their library: rebuild"
        built = max((lib.stat().st_mtime for lib in libraries), default=0.0)
        stale = [name for name in shims if (ROUTER / f"{name}.py").stat().st_mtime > built]
        assert stale == [], f"rebuild with `make test` (or `pip install -e .`): {stale} are stale"


@pytest.mark.timeout(600)
def test_the_hot_modules_compile_and_pass_the_router_tests_compiled(tmp_path: Path) -> None:
    """The compiled path, built here from the sources: the routes, exchange and proxying
    tests then run on the compiled modules (a compiled module checks annotations at run
    time, so a bad route file must be refused by name before any typed object exists)."""
    if shutil.which(os.environ.get("CC", "cc").split()[0]) is None:
        pytest.fail("no C compiler: install gcc to test the compiled router")
    copy = tmp_path / "tree"
    for name in ("kit", "router", "agent", "logs", "exporters", "control", "tests"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "setup.py", copy / "setup.py")
    env = {k: v for k, v in os.environ.items() if k != "SLIPWAY_PURE_PYTHON"}
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=copy,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=540,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert sorted(p.name.split(".")[0] for p in (copy / "router").glob("*.so")) == sorted(
        hot_names()
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")  # pytest's settings
    tests = ["tests/router/test_routes.py", "tests/router/test_exchange.py"]
    tests.append("tests/router/test_proxying.py")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env={**env, "PYTHONPATH": str(copy)},
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    check = "import router.client as c; print(c.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", check],
        cwd=copy,
        env={**env, "PYTHONPATH": str(copy)},
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert where.stdout.strip().endswith(".so"), where.stderr
