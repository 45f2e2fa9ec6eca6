"""Backups encrypted on the client, in segments, so a dump of any size streams.

Envelope: each backup has its own random 256-bit data key, wrapped (AES-GCM)
by the control plane's backup master key, which never leaves the control
plane (``SLIPWAY_BACKUP_KEY``, or ``backup.key`` in the state directory).
The object is

    header   MAGIC | key id (8) | wrap nonce (12) | wrapped key (48) | nonce prefix (7)
    segment* length (4, big endian) | AES-GCM(data key, nonce, plaintext, aad=header)

with the nonce of segment ``i`` = prefix | i (4 bytes) | last (1 byte): the
STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015). A flipped byte
fails its segment's tag, a reordered segment its nonce, and a truncated object
ends without a segment marked last: each is an error, never a short dump.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"SLWBAK1\n"
#: Plaintext per segment: large enough that the 20 bytes of framing and one GCM call
#: per segment cost nothing measurable, small enough that two of them in memory do not matter.
SEGMENT = 1024 * 1024
_PREFIX = 7
HEADER_SIZE = len(MAGIC) + 8 + 12 + 48 + _PREFIX
_HEADER = HEADER_SIZE
_TAG = 16
#: Past this a segment length is corruption, not data (a segment is SEGMENT + tag).
_MAX_FRAME = 64 * 1024 * 1024


class BackupCorrupt(Exception):
    """The object is not what was written: tampered, truncated, or under another key."""


def master_key(secret: str) -> bytes:
    """The 256-bit key-wrapping key derived from the control plane's backup secret."""
    return hashlib.sha256(b"slipway backups v1\0" + secret.encode()).digest()


def key_id(master: bytes) -> bytes:
    """Names the master key in each object (8 bytes), so a rotated key says so."""
    return hashlib.sha256(b"key id\0" + master).digest()[:8]


@dataclass(frozen=True, slots=True)
class Header:
    raw: bytes
    data_key: bytes
    prefix: bytes


def new_header(master: bytes) -> Header:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    kid = key_id(master)
    wrapped = AESGCM(master).encrypt(nonce, data_key, MAGIC + kid)
    prefix = os.urandom(_PREFIX)
    return Header(MAGIC + kid + nonce + wrapped + prefix, data_key, prefix)


def read_header(
    raw: bytes, *, master: bytes | None = None, data_key: bytes | None = None
) -> Header:
    """The header of an object, its data key unwrapped by ``master`` (or given)."""
    if len(raw) != _HEADER or not raw.startswith(MAGIC):
        raise BackupCorrupt("not a slipway backup (bad header): the object was changed or cut")
    kid = raw[len(MAGIC) : len(MAGIC) + 8]
    nonce = raw[len(MAGIC) + 8 : len(MAGIC) + 20]
    wrapped = raw[len(MAGIC) + 20 : len(MAGIC) + 68]
    prefix = raw[len(MAGIC) + 68 :]
    if data_key is None:
        if master is None:
            raise ValueError("read_header needs the master key or the data key")
        if kid != key_id(master):
            raise BackupCorrupt(
                "the backup was encrypted under another backup key: set SLIPWAY_BACKUP_KEY "
                "to the key it was made with"
            )
        try:
            data_key = AESGCM(master).decrypt(nonce, wrapped, MAGIC + kid)
        except InvalidTag as exc:
            raise BackupCorrupt("the backup's key does not unwrap: the header was changed") from exc
    return Header(raw, data_key, prefix)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class Encryptor:
    """Plaintext in, in any sizes; whole frames out (the header first)."""

    def __init__(self, master: bytes) -> None:
        self.header = new_header(master)
        self._aead = AESGCM(self.header.data_key)
        self._pending = bytearray()
        self._index = 0
        self._started = False

    def _frame(self, chunk: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(
            _nonce(self.header.prefix, self._index, last), chunk, self.header.raw
        )
        self._index += 1
        return struct.pack(">I", len(sealed)) + sealed

    def update(self, data: bytes) -> bytes:
        out = bytearray()
        if not self._started:
            out += self.header.raw
            self._started = True
        self._pending += data
        # Keep at least one byte back: the last segment must be sealed as last.
        while len(self._pending) > SEGMENT:
            with memoryview(self._pending) as view:
                chunk = bytes(view[:SEGMENT])
            out += self._frame(chunk, last=False)
            del self._pending[:SEGMENT]
        return bytes(out)

    def finish(self) -> bytes:
        head = b"" if self._started else self.header.raw
        self._started = True
        frame = self._frame(bytes(self._pending), last=True)
        self._pending.clear()
        return head + frame


class Decryptor:
    """Ciphertext in, in any sizes; plaintext out; ``finish`` refuses a truncated object."""

    def __init__(self, *, master: bytes | None = None, data_key: bytes | None = None) -> None:
        self._master = master
        self._data_key = data_key
        self._header: Header | None = None
        self._aead: AESGCM | None = None
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        if self._header is None:
            if len(self._buffer) < _HEADER:
                return b""
            self._header = read_header(
                bytes(self._buffer[:_HEADER]), master=self._master, data_key=self._data_key
            )
            self._aead = AESGCM(self._header.data_key)
            del self._buffer[:_HEADER]
        assert self._aead is not None
        while len(self._buffer) >= 4:
            if self._done:
                raise BackupCorrupt("data after the last segment: the object was changed")
            (length,) = struct.unpack(">I", self._buffer[:4])
            if length < _TAG or length > _MAX_FRAME:
                raise BackupCorrupt(f"segment {self._index} has an impossible length")
            if len(self._buffer) < 4 + length:
                break
            sealed = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            out += self._open(sealed)
        return bytes(out)

    def _open(self, sealed: bytes) -> bytes:
        assert self._aead is not None
        assert self._header is not None
        for last in (False, True):
            try:
                plain = self._aead.decrypt(
                    _nonce(self._header.prefix, self._index, last), sealed, self._header.raw
                )
            except InvalidTag:
                continue
            self._index += 1
            self._done = last
            return plain
        raise BackupCorrupt(f"segment {self._index} fails its check: the object was changed")

    def finish(self) -> None:
        if self._header is None or not self._done or self._buffer:
            raise BackupCorrupt("the object ends early (no last segment): it was truncated")


def encrypt_all(master: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Frames of ``chunks`` (tests and small objects)."""
    encryptor = Encryptor(master)
    for chunk in chunks:
        if out := encryptor.update(chunk):
            yield out
    yield encryptor.finish()
