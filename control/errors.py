"""The control plane's errors.

ControlError
├── ApiError              carries an HTTP status and a Heroku-style ``id``; the API renders it
│   ├── BadRequest        400 malformed JSON, bad Range header
│   ├── TooLarge          413 a body past its endpoint's cap (JSON, an uploaded tarball)
│   ├── Unauthorized      401 no token or an unknown one
│   ├── Forbidden         403 a token whose scope does not cover the app
│   ├── NotFound          404 no such app, release, add-on, process type
│   ├── Conflict          409 name taken, concurrent change, add-on owned variable
│   └── Unprocessable     422 well-formed but invalid: names, quantities, plans;
│       └── ReleaseFailed     the release phase failed; the previous release keeps running
├── StoreError            the state database failed (driver errors translated at store/)
├── AddonError            an add-on server refused or failed (psycopg / redis translated)
└── TargetUnavailable     the agent could not be reached or refused (aiohttp translated)

Library exceptions (sqlalchemy, psycopg, redis, aiohttp) are translated at one
boundary per library with ``raise ... from``, never passed up raw.
"""

from __future__ import annotations


class ControlError(Exception):
    """Base of every error the control plane raises on purpose."""


class ApiError(ControlError):
    status = 500
    default_id = "internal_error"

    def __init__(self, message: str, *, id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.id = id or self.default_id


class BadRequest(ApiError):
    status = 400
    default_id = "bad_request"


class TooLarge(ApiError):
    status = 413
    default_id = "too_large"


class Unauthorized(ApiError):
    status = 401
    default_id = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_id = "forbidden"


class NotFound(ApiError):
    status = 404
    default_id = "not_found"


class Conflict(ApiError):
    status = 409
    default_id = "conflict"


class Unprocessable(ApiError):
    status = 422
    default_id = "invalid_params"


class ReleaseFailed(Unprocessable):
    default_id = "release_failed"

    def __init__(self, message: str, *, version: int, output: str) -> None:
        super().__init__(message)
        self.version = version
        self.output = output


class StoreError(ControlError):
    """The state database failed; the message never contains the URL's password."""


class AddonError(ControlError):
    """Provisioning or destroying an add-on failed on its server."""


class TargetUnavailable(ControlError):
    """The agent that runs the apps could not be reached, or refused what it was sent."""
