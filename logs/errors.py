"""The logs service's errors.

LogsError
├── FrameError       a forward-protocol frame is malformed; closes only that connection
├── HandshakeError   the shared_key handshake failed (wrong key, wrong shape)
├── ArchiveError     S3 refused or could not be reached (botocore errors translated here)
├── LogsClientError  the CLI could not read the logs service (HTTP status or connection)
└── VerifierError    the control plane could not be asked whether a token may read (aiohttp)
"""

from __future__ import annotations


class LogsError(Exception):
    """Base of every error the logs service raises on purpose."""


class FrameError(LogsError):
    """A frame that does not follow the Forward Protocol; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        #: The frame's ``chunk`` option when it could be read: the client waits for an answer.
        self.chunk: str | None = None


class HandshakeError(LogsError):
    pass


class ArchiveError(LogsError):
    pass


class LogsClientError(LogsError):
    pass


class VerifierError(LogsError):
    pass
