"""The responses the router writes itself: a Heroku-style code and a small page.

Codes follow Heroku's router where one exists, so people can look them up:
H10 app crashed, H11 backlog too deep, H12 request timeout, H13 connection
closed without response, H14 no web processes running, H20 app boot timeout,
H21 backend connection refused, H27 client request interrupted, H80 maintenance mode. Unknown hosts
and malformed requests have slipway codes of their own.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """An answer the router gives itself instead of an app's: status, code and words.

    Not an exception: a page is data a connection renders (``render``). The
    router's exceptions are in router/errors.py.
    """

    status: int
    code: str
    desc: str
    hint: str


NO_SUCH_APP = ErrorPage(404, "no_such_app", "No such app", "No app is routed at this host.")
APP_CRASHED = ErrorPage(
    503, "H10", "App crashed", "The app's web process exited; `slipway logs` shows why."
)
BACKLOG_TOO_DEEP = ErrorPage(
    503, "H11", "Backlog too deep", "Too many requests are waiting for the app to wake."
)
REQUEST_TIMEOUT = ErrorPage(
    504, "H12", "Request timeout", "The app sent no response within 30 seconds."
)
CLOSED_WITHOUT_RESPONSE = ErrorPage(
    503, "H13", "Connection closed without response", "The app closed the connection."
)
NO_WEB_PROCESSES = ErrorPage(
    503, "H14", "No web processes running", "The app has no running web process."
)
BOOT_TIMEOUT = ErrorPage(
    503, "H20", "App boot timeout", "The app did not start listening within its boot timeout."
)
CONNECTION_REFUSED = ErrorPage(
    503, "H21", "Backend connection refused", "No endpoint of the app accepted a connection."
)
CLIENT_INTERRUPTED = ErrorPage(
    499, "H27", "Client request interrupted", "The client closed the connection first."
)
MAINTENANCE = ErrorPage(
    503,
    "H80",
    "Maintenance mode",
    "The app is down for maintenance; please try again in a little while.",
)
BAD_REQUEST = ErrorPage(
    400, "bad_request", "Bad request", "The request is not valid HTTP/1.1; it was not forwarded."
)
BAD_REQUEST_BODY = ErrorPage(
    400,
    "bad_request",
    "Bad request",
    "The request body is not valid HTTP/1.1; the app got the head and part of the body, "
    "then its connection was cut.",
)
URI_TOO_LONG = ErrorPage(
    414, "uri_too_long", "URI too long", "The request line is over the router's limit."
)
HEADERS_TOO_LARGE = ErrorPage(
    431,
    "headers_too_large",
    "Request header fields too large",
    "The request headers are over the router's limit.",
)
DRAINING = ErrorPage(
    503, "draining", "Router shutting down", "This router is draining; retry on another."
)

_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def render(
    error: ErrorPage, request_id: str, *, json_body: bool, close: bool, detail: str = ""
) -> bytes:
    """A whole HTTP/1.1 response for ``error``."""
    if json_body:
        payload = {"id": error.code, "message": error.desc, "hint": error.hint}
        if detail:
            payload["detail"] = detail
        payload["request_id"] = request_id
        body = json.dumps(payload).encode()
        ctype = "application/json"
    else:
        extra = f"<p>{html.escape(detail)}</p>" if detail else ""
        body = (
            f"<!doctype html><html><head><title>{error.desc}</title></head><body>"
            f"<h1>{error.status} {html.escape(error.desc)}</h1><p>{html.escape(error.hint)}</p>"
            f"{extra}<p><small>code={error.code} request_id={html.escape(request_id)}"
            "</small></p></body></html>\n"
        ).encode()
        ctype = "text/html; charset=utf-8"
    head = (
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\nSlipway-Error: {error.code}\r\nCache-Control: no-store\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode("latin-1") + body
