"""The CLI's way to the API: small, blocking, stdlib-only HTTP with clear failures.

The CLI makes one or two calls and exits, so urllib is enough and keeps
``slipway config:set`` from paying for an event loop and a session.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

DEFAULT_API_URL = "http://127.0.0.1:8000"
#: Long enough for a release phase (a migration) to finish; the server bounds it too.
TIMEOUT = 330.0
#: Pages of a list the CLI follows before it stops (1000 rows each).
MAX_PAGES = 100


class CliError(click.ClickException):
    """Printed as ``Error: message`` with exit code 1."""


def login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "slipway" / "token"


def find_token() -> str:
    token = os.environ.get("SLIPWAY_TOKEN", "").strip()
    if token:
        return token
    path = login_file()
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise CliError(f"cannot read the login file {path}: {exc.strerror}") from exc
    if not token:
        raise CliError("not logged in: set SLIPWAY_TOKEN or run `slipway login`")
    return token


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    def __init__(self, *, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token

    @property
    def token(self) -> str:
        return self._token

    @classmethod
    def from_env(cls) -> Client:
        return cls(
            base_url=os.environ.get("SLIPWAY_API_URL") or DEFAULT_API_URL, token=find_token()
        )

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        return self._send(method, path, data, {**sent, **(headers or {})})

    def upload(self, path: str, data: bytes, content_type: str) -> Response:
        """POST raw bytes (a source tarball) instead of JSON."""
        return self._send("POST", path, data, {"Content-Type": content_type})

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> Response:
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        for key, value in headers.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                return Response(reply.status, _decode(reply.read()), dict(reply.headers))
        except urllib.error.HTTPError as exc:
            raise CliError(_explain(exc.code, _decode(exc.read()))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the slipway API at {self.base_url}: {reason}") from None

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield each JSON line of the answer as it comes (NDJSON).

        Blank lines are the server's keep-alives during a quiet stretch.
        """
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST"
        )
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/x-ndjson")
        request.add_header("Content-Type", "application/json")
        try:
            reply = urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise CliError(_explain(exc.code, _decode(exc.read()))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the slipway API at {self.base_url}: {reason}") from None
        with reply:
            try:
                for raw in reply:
                    if raw.strip():
                        yield json.loads(raw)
            except (OSError, ValueError) as exc:
                raise CliError(f"the stream from {self.base_url} broke off: {exc}") from None

    def get_all(self, path: str, field: str) -> list[Any]:
        """Every page of a list, following Next-Range."""
        items: list[Any] = []
        headers = {"Range": f"{field} ..; max=1000"}
        for _ in range(MAX_PAGES):
            response = self.call("GET", path, headers=headers)
            items += response.body
            next_range = response.headers.get("Next-Range")
            if response.status != 206 or not next_range:
                return items
            headers = {"Range": next_range}
        raise CliError(f"{path} has more than {MAX_PAGES} pages; narrow the request")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _explain(status: int, body: Any) -> str:
    if isinstance(body, dict) and "message" in body:
        message = f"{body['message']} ({body.get('id', status)})"
        if body.get("output"):
            message += "\n--- release output ---\n" + str(body["output"]).rstrip()
        return message
    return f"the API answered {status}: {str(body)[:200]}"
