"""A logs service whose archive uploader dies stops (exit 1, a line naming the task) instead
of spooling until the disk is full and forward chunks are refused."""

from __future__ import annotations

from pathlib import Path

from logs.s3 import S3Store
from tests.conftest import free_port
from tests.faults import slipway_with_fault
from tests.logs.conftest import Moto


async def test_a_logs_service_whose_uploader_dies_exits_1_naming_it(
    tmp_path: Path, moto: Moto
) -> None:
    await S3Store(bucket="archive", endpoint_url=moto.url).ensure_bucket()
    died = await slipway_with_fault(
        "logs.archive:Uploader.upload_ready",
        "serve",
        "logs",
        f"--http-port={free_port()}",
        f"--forward-port={free_port()}",
        f"--spool-dir={tmp_path / 'spool'}",
        "--s3-bucket=archive",
        f"--s3-endpoint={moto.url}",
        started="logs service started",
    )
    assert died.code == 1, died.stderr
    assert died.names("archive-uploader"), died.stderr
