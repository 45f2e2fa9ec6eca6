"""S3 objects written in parts and read in chunks: memory stays constant whatever the size.

Blocking (boto3); callers run these in a thread. botocore's errors become
``ObjectStoreError`` here, the one boundary for them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from control.errors import ControlError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: 8 MiB parts: above S3's 5 MiB minimum, and 10,000 parts (S3's cap) reach 80 GB.
PART_SIZE = 8 * 1024 * 1024
#: Parts uploading at once while the next one fills: the upload overlaps the dump,
#: and memory is bounded by (IN_FLIGHT + 1) parts.
IN_FLIGHT = 2
#: Read size of a download.
READ_CHUNK = 1024 * 1024


class ObjectStoreError(ControlError):
    """The S3 endpoint refused or failed; the message says what to check."""


def translate(exc: Exception, doing: str) -> ObjectStoreError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return ObjectStoreError(f"S3 refused {doing}: {code} (check the bucket and credentials)")
    return ObjectStoreError(f"S3 unreachable while {doing}: {type(exc).__name__}")


class MultipartWriter:
    def __init__(self, s3: S3Client, bucket: str, key: str, *, part_size: int = PART_SIZE) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._pending: deque[concurrent.futures.Future[dict[str, Any]]] = deque()
        self._pool = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT, "backup-upload")
        try:
            self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        except (BotoCoreError, ClientError) as exc:
            self._pool.shutdown()
            raise translate(exc, "starting an upload") from exc
        self.size = 0

    def _upload(self, number: int, body: bytes) -> dict[str, Any]:
        try:
            reply = self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"uploading part {number}") from exc
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def _send(self, body: bytes) -> None:
        while len(self._pending) >= IN_FLIGHT:
            self._parts.append(self._pending.popleft().result())
        number = len(self._parts) + len(self._pending) + 1
        self._pending.append(self._pool.submit(self._upload, number, body))

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._part_size:
            with memoryview(self._buffer) as view:  # one copy of the part, not two
                part = bytes(view[: self._part_size])
            del self._buffer[: self._part_size]
            self._send(part)

    def complete(self) -> None:
        try:
            if self._buffer or not (self._parts or self._pending):
                self._send(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                self._parts.append(self._pending.popleft().result())
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "completing an upload") from exc
        finally:
            self._pool.shutdown()

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)
        # If this fails too, the bucket's lifecycle rule reclaims the parts (docs/backups.md).
        with contextlib.suppress(BotoCoreError, ClientError):
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


def read_object(s3: S3Client, bucket: str, key: str) -> Iterator[bytes]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        yield from body.iter_chunks(READ_CHUNK)
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, f"reading {key}") from exc


def delete_object(s3: S3Client, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, f"deleting {key}") from exc


def presign(s3: S3Client, bucket: str, key: str, *, expires: int) -> str:
    try:
        return s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, "signing a download URL") from exc
