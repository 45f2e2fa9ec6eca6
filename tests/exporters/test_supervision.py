"""An exporter whose poller dies stops (exit 1, a line naming the task) instead of serving
the last snapshot, ever older, as if it were fresh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.exporters.conftest import RedisServer
from tests.faults import slipway_with_fault


@pytest.mark.parametrize("kind", ["postgres", "redis"])
async def test_an_exporter_whose_poller_dies_exits_1_naming_it(
    tmp_path: Path, redis_servers: Callable[..., RedisServer], kind: str
) -> None:
    dsn = "host=127.0.0.1 user=postgres" if kind == "postgres" else redis_servers().url
    targets = tmp_path / "targets.toml"
    targets.write_text(f'[[targets]]\nname = "one"\ndsn = "{dsn}"\n')
    died = await slipway_with_fault(
        "exporters.poller:Poller.poll_once",
        "exporter",
        kind,
        f"--targets={targets}",
        f"--port={free_port()}",
        "--interval=1s",
        "--timeout=0.5s",
        started="exporter listening",
    )
    assert died.code == 1, died.stderr
    assert died.names(f"exporter-{kind}-poll"), died.stderr
