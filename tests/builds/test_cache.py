"""The dependency cache: an unchanged app's second build installs nothing."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from control.builds.local import LocalBuilder
from control.builds.model import Source
from control.builds.settings import BuildSettings
from tests.builds.apps import RecordingSink, commit, python_app


async def test_a_warm_build_reuses_the_cached_virtualenv_and_is_faster_than_the_cold_one(
    tmp_path: Path,
    builder: LocalBuilder,
    sink: RecordingSink,
    registry: CollectorRegistry,
) -> None:
    repo = tmp_path / "repo"
    first = commit(repo, python_app())
    # A code change that leaves requirements.txt alone: the common push.
    second = commit(repo, {"app.py": "import tinydep\nprint('v2', tinydep.VERSION)\n"})

    cold = await builder.build("demo", Source.git(str(repo), first))
    lines_before = len(sink.lines)
    warm = await builder.build("demo", Source.git(str(repo), second))
    warm_lines = sink.texts()[lines_before:]

    assert cold.cache_hit is False
    assert warm.cache_hit is True
    assert (warm.slug / ".venv").resolve() == (cold.slug / ".venv").resolve()
    assert "-----> Reusing cached dependencies (requirements.txt unchanged)" in warm_lines
    assert not any("pip" in line.lower() or "Installing" in line for line in warm_lines)
    print(f"cold {cold.duration:.3f}s warm {warm.duration:.3f}s")
    assert warm.duration < cold.duration
    assert registry.get_sample_value("slipway_build_cache_total", {"outcome": "hit"}) == 1.0
    assert registry.get_sample_value("slipway_build_cache_total", {"outcome": "miss"}) == 1.0
    assert (
        registry.get_sample_value("slipway_build_duration_seconds_count", {"result": "succeeded"})
        == 2.0
    )


async def test_a_changed_requirement_installs_a_new_dependency_set_beside_the_old_one(
    tmp_path: Path, builder: LocalBuilder
) -> None:
    repo = tmp_path / "repo"
    old = await builder.build("demo", Source.git(str(repo), commit(repo, python_app("1.0"))))
    new = await builder.build("demo", Source.git(str(repo), commit(repo, python_app("2.0"))))

    assert new.cache_hit is False
    assert (new.slug / ".venv").resolve() != (old.slug / ".venv").resolve()
    # The old release keeps running on its own, untouched dependency set.
    assert (old.slug / ".venv" / "bin" / "python").exists()
    versions = {
        p.name for p in (old.slug / ".venv").resolve().glob("lib/python*/site-packages/*.dist-info")
    }
    assert versions == {"tinydep-1.0.dist-info"}


async def test_caches_are_per_app_so_another_app_with_the_same_requirements_installs_its_own(
    tmp_path: Path, builder: LocalBuilder, settings: BuildSettings, sink: RecordingSink
) -> None:
    repo = tmp_path / "repo"
    sha = commit(repo, python_app(deps=False))

    one = await builder.build("one", Source.git(str(repo), sha))
    two = await builder.build("two", Source.git(str(repo), sha))

    assert (one.cache_hit, two.cache_hit) == (False, False)
    assert (one.slug / ".venv").resolve().is_relative_to(settings.cache_dir / "one")
    assert (two.slug / ".venv").resolve().is_relative_to(settings.cache_dir / "two")
    # Nothing to install: the venv is made, pip never starts.
    assert "       requirements.txt lists no dependencies" in sink.texts("one")
    assert not any("pip" in text for text in sink.texts())
