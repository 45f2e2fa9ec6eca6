"""The S3 object store behind the archive: boto3, each call in a worker thread.

botocore's errors are translated to ``ArchiveError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from logs.errors import ArchiveError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
#: Where a bucket lives when nothing says: what the AWS CLI assumes too.
DEFAULT_REGION = "us-east-1"


def region_of(explicit: str | None, environ: Mapping[str, str]) -> str:
    """The region to sign for: the setting, else the pod's AWS_REGION (what IRSA and the
    chart set), else AWS_DEFAULT_REGION. A wrong one makes every put fail with a 301."""
    return (
        explicit or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    )


class S3Store:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.bucket = bucket
        # Few retries and short timeouts: the spool is the retry mechanism, and a
        # thread stuck for minutes in botocore's backoff delays everything behind it.
        config = botocore.config.Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_of(region, os.environ),
            config=config,
        )

    async def _call(self, what: str, fn: Any, /, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except _ERRORS as exc:
            raise ArchiveError(f"S3 {what} failed: {exc}") from exc

    async def put(self, key: str, body: bytes) -> None:
        await self._call(
            "put",
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            ContentEncoding="gzip",
        )

    async def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("list", self._client.list_objects_v2, **kwargs)
            out.extend(obj["Key"] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return out
            token = page.get("NextContinuationToken")

    async def get(self, key: str) -> bytes:
        reply = await self._call("get", self._client.get_object, Bucket=self.bucket, Key=key)
        try:
            body: bytes = await asyncio.to_thread(reply["Body"].read)
        except _ERRORS as exc:
            raise ArchiveError(f"S3 get failed: {exc}") from exc
        return body

    async def ensure_bucket(self) -> None:
        try:
            await asyncio.to_thread(self._client.head_bucket, Bucket=self.bucket)
        except botocore.exceptions.ClientError:
            await self._call("create bucket", self._client.create_bucket, Bucket=self.bucket)
        except _ERRORS as exc:
            raise ArchiveError(f"S3 head bucket failed: {exc}") from exc
