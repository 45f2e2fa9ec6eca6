"""The Fluent Forward Protocol v1, decoding side: bytes in, batches of records out.

Pure: no sockets, no clock. The shell (``logs.server``) feeds whatever the
socket gave and writes back what these functions return. Every way a frame
can be wrong ends in ``FrameError`` with a short ``reason`` (a metric label),
never in an exception from msgpack or zlib leaking out.

Modes (spec: fluent/fluentd wiki, Forward Protocol Specification v1):

- Message: ``[tag, time, record, option?]``
- Forward: ``[tag, [[time, record], ...], option?]``
- PackedForward: ``[tag, bin(msgpack stream of entries), option?]``
- CompressedPackedForward: the same with ``option.compressed == "gzip"``; the
  bin may hold several gzip members back to back (Fluent Bit appends them), or
  with ``"zstd"`` (Fluentd's ``compress zstd``), one or more zstd frames.

The packed entries may come as bin (Fluent Bit) or as str: Fluentd's
out_forward always writes them as str32 (see its ``send_data_actual``). So the
top level is unpacked with ``surrogateescape``, which turns any bytes into a str
and back without loss; only the tag and records met at the top level (Message
and Forward modes) are then held to UTF-8, with U+FFFD for what is not.

``fluent_signal`` 1 (metrics) and 2 (traces) frames are Fluent Bit's cmetrics
and ctraces payloads, not entries: they are not decoded at all, only acked.

Time is an integer, a float, or EventTime (ext type 0: uint32 seconds,
uint32 nanoseconds, big-endian). An entry is ``[time, record]`` or, from
Fluent Bit 2.x with metadata, ``[[time, metadata], record]``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zstandard

from logs.errors import FrameError, HandshakeError

#: A single frame past this is refused: Fluent Bit's chunks are 2 MB by default,
#: so 16 MB leaves room for big ones without letting a client exhaust memory.
MAX_FRAME = 16 * 1024 * 1024
#: Decompressed CompressedPackedForward payloads past this are refused (gzip bombs).
MAX_DECOMPRESSED = 64 * 1024 * 1024

_EVENT_TIME = struct.Struct(">II")


class EventTime(float):
    """A float that remembers it came as ext type 0 (for tests and round trips)."""


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        sec, nsec = _EVENT_TIME.unpack(data)
        return EventTime(sec + nsec / 1e9)
    raise FrameError("bad_ext", f"ext type {code} of {len(data)} bytes is not EventTime")


def pack_event_time(t: float) -> msgpack.ExtType:
    """EventTime for ``t`` as Fluent Bit sends it (used by tests and the bench)."""
    sec = int(t)
    return msgpack.ExtType(0, _EVENT_TIME.pack(sec, round((t - sec) * 1e9) % 1_000_000_000))


def _unpacker(max_buffer: int, *, unicode_errors: str = "replace") -> msgpack.Unpacker:
    return msgpack.Unpacker(
        raw=False,
        unicode_errors=unicode_errors,
        strict_map_key=False,
        ext_hook=_ext_hook,
        max_buffer_size=max_buffer,
    )


@dataclass(slots=True)
class Batch:
    """Records of one frame; ``chunk`` set means the client waits for ``{"ack": chunk}``."""

    tag: str
    entries: list[tuple[float, dict[Any, Any]]]
    chunk: str | None = None
    #: Fluent Bit 2.x sends metrics and traces over forward too; those are acked, not kept.
    signal: int = 0


@dataclass(slots=True)
class ForwardDecoder:
    """Incremental decoder for one connection (data phase)."""

    max_frame: int = MAX_FRAME
    _unpacker: msgpack.Unpacker = field(init=False)

    def __post_init__(self) -> None:
        # Lossless for str32 packed entries (Fluentd); ``decode_frame`` cleans the rest.
        self._unpacker = _unpacker(self.max_frame, unicode_errors="surrogateescape")

    def feed(self, data: bytes) -> list[Batch]:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull as exc:
            raise FrameError("too_large", f"frame over {self.max_frame} bytes") from exc
        batches = []
        try:
            for obj in self._unpacker:
                batches.append(decode_frame(obj))
        except FrameError:
            raise
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            raise FrameError("bad_msgpack", str(exc) or type(exc).__name__) from exc
        return batches


def decode_frame(obj: Any) -> Batch:
    """One top-level msgpack object of the data phase -> a Batch.

    ``obj`` comes from an unpacker with ``surrogateescape``: strings met here may
    hold escaped bytes, which are restored (packed entries) or replaced (the rest).
    """
    if not isinstance(obj, list) or len(obj) < 2:
        raise FrameError("bad_frame", f"expected an array [tag, ...], got {_kind(obj)}")
    tag = obj[0]
    if not isinstance(tag, str):
        raise FrameError("bad_tag", f"tag must be a string, got {_kind(tag)}")
    if not _is_utf8(tag):
        raise FrameError("bad_tag", "tag is not valid UTF-8")
    second = obj[1]
    message = isinstance(second, int | float) and not isinstance(second, bool)
    if message and len(obj) not in (3, 4):
        raise FrameError("bad_frame", f"Message mode has 3 or 4 items, got {len(obj)}")
    if not message and len(obj) not in (2, 3):
        raise FrameError("bad_frame", f"Forward modes have 2 or 3 items, got {len(obj)}")
    options = _options(obj[-1] if len(obj) == (4 if message else 3) else None)
    chunk = options.get("chunk")
    if chunk is not None and not isinstance(chunk, str):
        raise FrameError("bad_option", f"chunk must be a string, got {_kind(chunk)}")
    try:
        signal = options.get("fluent_signal", 0)
        if not isinstance(signal, int) or isinstance(signal, bool):
            raise FrameError("bad_option", f"fluent_signal must be an integer, got {_kind(signal)}")
        if signal != 0:
            # Metrics and traces: acked, never kept, so their payload is not read at all.
            return Batch(tag, [], chunk, signal)
        return Batch(tag, _entries(obj, second, message, options), chunk)
    except FrameError as exc:
        exc.chunk = chunk
        raise


def _entries(
    obj: list[Any], second: Any, message: bool, options: dict[str, Any]
) -> list[tuple[float, dict[Any, Any]]]:
    if message:
        record = obj[2]
        if not isinstance(record, dict):
            raise FrameError("bad_record", f"record must be a map, got {_kind(record)}")
        if not math.isfinite(second):
            raise FrameError("bad_time", f"time must be finite, got {second!r}")
        return [(float(second), _clean(record))]
    if isinstance(second, list):
        entries = [_entry(_clean(e)) for e in second]
    elif isinstance(second, bytes | str):
        # str: Fluentd's str32; surrogateescape gives back exactly the bytes it sent.
        payload = second.encode("utf-8", "surrogateescape") if isinstance(second, str) else second
        compressed = options.get("compressed")
        if compressed == "gzip":
            payload = gunzip(payload)
        elif compressed == "zstd":
            payload = unzstd(payload)
        elif compressed not in (None, "text"):
            raise FrameError("bad_option", f"unknown compression {compressed!r}")
        entries = list(_packed_entries(payload))
    else:
        raise FrameError(
            "bad_frame", f"second item must be a time, array or bin, got {_kind(second)}"
        )
    # ``size`` is not checked against the entries: Fluentd's in_forward reads it only as a
    # hint, and the npm fluent-logger sends the payload's byte length there, not a count.
    return entries


def _is_utf8(text: str) -> bool:
    """False when ``text`` holds bytes escaped by ``surrogateescape``."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _clean(obj: Any) -> Any:
    """``obj`` with escaped bytes in its strings replaced by U+FFFD, as in packed entries."""
    if type(obj) is str:
        if _is_utf8(obj):
            return obj
        return obj.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if type(obj) is dict:
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if type(obj) is list:
        return [_clean(v) for v in obj]
    return obj


def _options(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise FrameError("bad_option", f"option must be a map, got {_kind(obj)}")
    return obj


def _entry(obj: Any) -> tuple[float, dict[Any, Any]]:
    if not isinstance(obj, list) or len(obj) != 2:
        raise FrameError("bad_entry", f"entry must be [time, record], got {_kind(obj)}")
    time, record = obj
    if isinstance(time, list):
        # [[time, metadata], record]: Fluent Bit 2.x; metadata is not kept.
        if len(time) != 2 or not isinstance(time[1], dict):
            raise FrameError("bad_entry", "entry header must be [time, metadata]")
        time = time[0]
    if not isinstance(time, int | float) or isinstance(time, bool):
        raise FrameError(
            "bad_time", f"time must be an integer, float or EventTime, got {_kind(time)}"
        )
    if not isinstance(record, dict):
        raise FrameError("bad_record", f"record must be a map, got {_kind(record)}")
    if not math.isfinite(time):
        raise FrameError("bad_time", f"time must be finite, got {time!r}")
    return float(time), record


def _packed_entries(payload: bytes) -> Iterator[tuple[float, dict[Any, Any]]]:
    unpacker = _unpacker(max(len(payload), 1))
    try:
        unpacker.feed(payload)
        for obj in unpacker:
            # The common shape inline (a call per entry was a visible cost), the rest checked.
            if type(obj) is list and len(obj) == 2:
                time, record = obj
                if type(time) is EventTime and type(record) is dict:
                    yield time, record
                    continue
            yield _entry(obj)
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise FrameError("bad_msgpack", f"in packed entries: {exc or type(exc).__name__}") from exc


def gunzip(payload: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Every gzip member of ``payload`` concatenated, at most ``limit`` bytes."""
    out = bytearray()
    rest = payload
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            out += d.decompress(rest, limit - len(out) + 1)
            if len(out) > limit:
                raise FrameError("too_large", f"decompressed payload over {limit} bytes")
            if not d.eof:
                raise FrameError("bad_gzip", "truncated gzip member")
            rest = d.unused_data
    except zlib.error as exc:
        raise FrameError("bad_gzip", str(exc)) from exc
    return bytes(out)


def unzstd(payload: bytes, limit: int = MAX_DECOMPRESSED) -> bytes:
    """Every zstd frame of ``payload`` concatenated, at most ``limit`` bytes.

    Read as a stream across frames, so a frame that claims no content size (streaming
    compressors write none) or a bomb that claims a small one is still cut at ``limit``.
    """
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(payload), read_across_frames=True
        )
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise FrameError("bad_zstd", str(exc)) from exc
    if len(out) > limit:
        raise FrameError("too_large", f"decompressed payload over {limit} bytes")
    return out


def _kind(obj: Any) -> str:
    return type(obj).__name__


# --- the shared_key handshake -------------------------------------------------------


def helo(nonce: bytes, *, keepalive: bool = True) -> bytes:
    """The server's first message when a shared key is set (no user auth: ``auth`` empty)."""
    packed: bytes = msgpack.packb(
        ["HELO", {"nonce": nonce, "auth": b"", "keepalive": keepalive}], use_bin_type=True
    )
    return packed


def _as_bytes(obj: Any) -> bytes:
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        return obj.encode()
    raise HandshakeError(f"expected a string, got {_kind(obj)}")


def digest(salt: bytes, hostname: bytes, nonce: bytes, shared_key: bytes) -> str:
    h = hashlib.sha512()
    for part in (salt, hostname, nonce, shared_key):
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class PingResult:
    ok: bool
    #: The client's salt when ok (echoed into PONG), else the reason for the client.
    reason_or_salt: bytes


def check_ping(msg: Any, *, nonce: bytes, shared_key: bytes) -> PingResult:
    """Check ``["PING", hostname, salt, hexdigest, username, password]`` (raw-bytes unpacked)."""
    if not isinstance(msg, list) or len(msg) != 6 or msg[0] != b"PING":
        raise HandshakeError("expected PING with 6 items")
    _, hostname, salt, hexdigest, _user, _password = msg
    expected = digest(_as_bytes(salt), _as_bytes(hostname), nonce, shared_key)
    if not hmac.compare_digest(_as_bytes(hexdigest), expected.encode()):
        return PingResult(False, b"shared_key mismatch")
    return PingResult(True, _as_bytes(salt))


def pong(result: PingResult, *, server_hostname: str, nonce: bytes, shared_key: bytes) -> bytes:
    host = server_hostname.encode()
    packed: bytes = msgpack.packb(
        [
            "PONG",
            result.ok,
            result.reason_or_salt.decode("utf-8", "replace")
            if not result.ok
            else result.reason_or_salt,
            server_hostname,
            digest(result.reason_or_salt, host, nonce, shared_key),
        ],
        use_bin_type=True,
    )
    return packed


def handshake_unpacker() -> msgpack.Unpacker:
    """The PING arrives before any data; raw bytes, because salts need not be UTF-8."""
    return msgpack.Unpacker(raw=True, max_buffer_size=64 * 1024)


def ack(chunk: str) -> bytes:
    """``{"ack": chunk}``, the chunk byte for byte as the client sent it."""
    packed: bytes = msgpack.packb(
        {"ack": chunk}, use_bin_type=True, unicode_errors="surrogateescape"
    )
    return packed


def refusal(reason: str, detail: str) -> bytes:
    """An ack that does not match the chunk: the one way to tell a forward client why.

    Fluentd logs ``ack in response and chunk id in sent data are different`` with this
    text as ``ack``, and Fluent Bit an ack mismatch; both keep the chunk and retry.
    """
    return ack(f"refused by slipway: {reason}: {detail}"[:300])
