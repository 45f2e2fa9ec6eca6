"""The dashboard's aiohttp application: sessions, CSRF, sign-in and out, the CLI's password login.

Every request but the sign-in page, the static files and ``POST /token``
needs a session (the ``slipway_session`` cookie); every state-changing one
also needs the session's CSRF token, in the form's ``csrf`` field or the
``X-CSRF-Token`` header (fetch), or it is refused with a 403. The sign-in
form, made before any session exists, carries a double-submit token (a
cookie and the same value in the form).

Cookies are HttpOnly and SameSite=Lax always (Lax, not Strict: a link to an
app's page from chat or mail still opens signed in, while a cross-site POST
carries no cookie), and Secure when the request came over TLS or through a
proxy saying ``X-Forwarded-Proto: https``. Trusting that header can only make
the cookie stricter, never looser: a forged header costs the forger their
own sign-in over plain HTTP, nothing else.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from control.building import Builds
from control.dashboard.addon_health import HealthSources
from control.dashboard.html import ROOT, Html, h, page
from control.dashboard.live import LiveStates, NoLiveStates
from control.dashboard.throttle import ALLOWED_PER_ADDRESS, Throttle
from control.dashboard.users import Session, User, Users
from control.errors import ApiError
from control.livelogs import LogsUpstream
from control.review.deliveries import DeliveryRunner
from control.review.pipelines import StoredPipeline
from control.review.plan import Pipeline
from control.review.records import ReviewRecords
from control.rollup.source import RequestSource
from control.service import Control
from control.settings import ReviewSettings

log = logging.getLogger(__name__)

SESSION_COOKIE = "slipway_session"
LOGIN_CSRF_COOKIE = "slipway_login_csrf"
#: What ``secrets.token_urlsafe(32)`` makes: a cookie of another shape is replaced.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
#: The message the page after a change shows ("release v3 made"): a cookie, read once,
#: not a query parameter, so no link can make a dashboard page say what its author wants.
FLASH_COOKIE = "slipway_flash"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths served without a session (below ROOT): /api/ takes the API's bearer tokens.
_PUBLIC = ("/login", "/token", "/static/", "/api/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ReviewBoard:
    """The review apps' pieces the board reads and drives (control/dashboard/review_board.py)."""

    settings: ReviewSettings
    pipeline: Pipeline
    records: ReviewRecords
    #: Runs a destroy plan as the stale-app scheduler does (pr-predestroy first, reported).
    deliveries: DeliveryRunner
    builds: Builds


@dataclass
class Dashboard:
    control: Control
    users: Users
    live: LiveStates = field(default_factory=NoLiveStates)
    #: Failed sign-ins per user name, and per client address.
    throttle: Throttle = field(default_factory=Throttle)
    address_throttle: Throttle = field(
        default_factory=lambda: Throttle(allowed=ALLOWED_PER_ADDRESS)
    )
    #: The logs service and the token the dashboard reads it with for users it checked
    #: (live_views.py); None: no live logs here.
    logs: LogsUpstream | None = None
    #: What the request charts read (the rollup, or Prometheus); None: no charts here.
    requests: RequestSource | None = None
    #: The repository connected for review apps (SLIPWAY_GITHUB_WEBHOOK_SECRET...); None: none.
    review: ReviewBoard | None = None
    #: Connects a repository from the board's form (the control plane's ``connect``); None:
    #: no form (the environment's pipeline is set, or there is no builder).
    connect: Callable[[StoredPipeline, str], Awaitable[None]] | None = None
    #: Starts builds for "Deploy a branch" (deploy.py), as builds:create does; None: no
    #: builder here, so the section says how to deploy instead.
    builds: Builds | None = None
    #: Where the add-ons' health is read from (addon_health.py); empty: none configured.
    addon_health: HealthSources = field(default_factory=HealthSources)
    clock: Callable[[], float] = time.monotonic


DASHBOARD = web.AppKey("dashboard", Dashboard)
SESSION = web.RequestKey("dashboard.session", Session)


def secure(request: web.Request) -> bool:
    """Over TLS, here or at a proxy in front (the module docstring says why trusting it is safe)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path=ROOT, httponly=True, samesite="Lax", secure=secure(request)
    )


def see_other(request: web.Request, location: str, message: str) -> web.HTTPSeeOther:
    """A redirect after a change, with its message for the next page."""
    response = web.HTTPSeeOther(location)
    set_cookie(request, response, FLASH_COOKIE, urllib.parse.quote(message[:300]))
    return response


def flash_of(request: web.Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    return urllib.parse.unquote(raw) if raw else None


def session_of(request: web.Request) -> Session:
    return request[SESSION]  # only pages behind the guard read it


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    session = request.get(SESSION)
    user = session.user.name if isinstance(session, Session) else None
    csrf = session.csrf if isinstance(session, Session) else None
    body = h(
        '<h1>{}</h1><p class="error">{}</p><p><a href="{}/">Back to the apps</a></p>',
        status,
        message,
        ROOT,
    )
    return page("Error", body, user=user, csrf=csrf, status=status)


async def _csrf_given(request: web.Request) -> str:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get("csrf", "")
        given = value if isinstance(value, str) else ""
    return given


#: Session cookies looked at in one request; more is someone stuffing the header.
_MAX_SESSION_COOKIES = 4


def session_ids(request: web.Request) -> list[str]:
    """Every ``slipway_session`` the browser sent. There can be several: a cookie planted
    for a broader path (``/``, by a sibling subdomain) comes along with ours and may come
    first, so each is tried rather than whichever a cookie parser keeps."""
    found: list[str] = []
    for header in request.headers.getall("Cookie", []):
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and value and value not in found:
                found.append(value)
    return found[:_MAX_SESSION_COOKIES]


async def _find_session(request: web.Request) -> Session | None:
    users = request.app[DASHBOARD].users
    for session_id in session_ids(request):
        if (session := await users.find_session(session_id)) is not None:
            return session
    return None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions and CSRF for everything but the public paths; errors as pages."""
    sub = request.path[len(ROOT) :] if request.path.startswith(ROOT) else request.path
    try:
        if not sub.startswith(_PUBLIC):
            session = await _find_session(request)
            if session is None:
                if request.method in _UNSAFE:
                    return error_page(request, 403, "no session: sign in again")
                target = urllib.parse.quote(request.path_qs, safe="/")
                raise web.HTTPSeeOther(f"{ROOT}/login?next={target}")
            request[SESSION] = session
            # A collaborator is as confined as an app token: refused where apps run
            # unconfined (kit/spawn.py), with the same message.
            refused = request.app[DASHBOARD].control.tokens.app_tokens_refused
            session.user.principal().refuse_unconfined(refused)
            if request.method in _UNSAFE:
                given = await _csrf_given(request)
                if not given or not secrets.compare_digest(given, session.csrf):
                    log.warning("csrf token refused", extra={"path": request.path})
                    return error_page(
                        request, 403, "the form's CSRF token is missing or wrong: reload the page"
                    )
        response = await handler(request)
        if FLASH_COOKIE in request.cookies and response.status == 200:
            response.del_cookie(FLASH_COOKIE, path=ROOT)  # shown once
        return response
    except ApiError as exc:
        if sub.startswith("/api/"):
            raise  # the API's JSON error, from its own middleware
        return error_page(request, exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, exc.reason)


# -- sign in and out ----------------------------------------------------------------------


def _next_path(value: object) -> str:
    """Where to go after sign-in: a dashboard path only (no open redirect)."""
    if isinstance(value, str) and value.startswith(ROOT + "/") and "//" not in value:
        return value
    return ROOT + "/"


def login_page(
    request: web.Request, *, message: str = "", status: int = 200, retry: float = 0
) -> web.Response:
    # The token already in the browser is kept: a second load of this page (another tab, or
    # a page's background fetch sent here by a lapsed session) must not void the first form.
    held = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    token = held if _TOKEN_SHAPE.fullmatch(held) else secrets.token_urlsafe(32)
    nxt = _next_path(request.query.get("next"))
    note = h('<p class="error" role="alert">{}</p>', message) if message else Html("")
    body = h(
        '<h1>Sign in</h1>{}<form method="post" action="{}/login" class="login">'
        '<input type="hidden" name="csrf" value="{}"><input type="hidden" name="next" value="{}">'
        '<label for="user">User</label><input id="user" name="user" autocomplete="username" '
        "required autofocus>"
        '<label for="password">Password</label><input id="password" name="password" '
        'type="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>',
        note,
        ROOT,
        token,
        nxt,
    )
    response = page("Sign in", body, status=status)
    if retry:
        response.headers["Retry-After"] = str(math.ceil(retry))
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


async def get_login(request: web.Request) -> web.StreamResponse:
    return login_page(request)


async def _check_password(
    request: web.Request, name: str, password: str
) -> tuple[User | None, float]:
    """The user if the password is theirs; else None and the seconds to wait (0: none)."""
    dash = request.app[DASHBOARD]
    # The peer's address, not X-Forwarded-For: a header an attacker sets would give
    # them a fresh budget per request. Behind a proxy, the proxy's address is counted.
    counted = ((dash.throttle, f"user:{name}"), (dash.address_throttle, request.remote or "?"))
    now = dash.clock()
    wait = max(throttle.retry_after(key, now) for throttle, key in counted)
    if wait > 0:
        log.warning("sign-in throttled", extra={"user": name, "remote": request.remote})
        return None, wait
    user = await dash.users.verify(name, password) if name and password else None
    if user is None:
        for throttle, key in counted:
            throttle.failed(key, dash.clock())
        log.warning("sign-in failed", extra={"user": name, "remote": request.remote})
        return None, 0.0
    dash.throttle.succeeded(f"user:{name}")  # the address's count stays (throttle.py)
    return user, 0.0


async def post_login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given = form.get("csrf", "")
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (isinstance(given, str) and cookie and secrets.compare_digest(given, cookie)):
        log.info("sign-in form expired", extra={"remote": request.remote})
        return login_page(request, message="the form expired: sign in again", status=403)
    name, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
    user, wait = await _check_password(request, name, password)
    if wait:
        return login_page(
            request,
            message=f"too many failed sign-ins: try again in {math.ceil(wait)} s",
            status=429,
            retry=wait,
        )
    if user is None:
        return login_page(request, message="wrong user name or password", status=401)
    # Always a new id: the cookie the browser came with (planted, perhaps) is ended.
    session_id, _ = await request.app[DASHBOARD].users.start_session(
        user, replaces=session_ids(request)
    )
    response = web.HTTPSeeOther(_next_path(form.get("next")))
    set_cookie(request, response, SESSION_COOKIE, session_id)
    response.del_cookie(LOGIN_CSRF_COOKIE, path=ROOT)
    log.info("signed in", extra={"user": user.name})
    raise response


async def post_logout(request: web.Request) -> web.StreamResponse:
    for session_id in session_ids(request):
        await request.app[DASHBOARD].users.end_session(session_id)
    response = web.HTTPSeeOther(f"{ROOT}/login")
    response.del_cookie(SESSION_COOKIE, path=ROOT)
    raise response


async def post_token(request: web.Request) -> web.StreamResponse:
    """``slipway login --user``: a user name and password for an API token of that user."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("user", "password")
    ):
        return web.json_response(
            {"id": "bad_request", "message": 'send {"user": NAME, "password": PASSWORD}'},
            status=400,
        )
    user, wait = await _check_password(request, body["user"].strip(), body["password"])
    if wait:
        return web.json_response(
            {"id": "rate_limited", "message": f"too many failed sign-ins; retry in {wait:.0f} s"},
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if user is None:
        return web.json_response(
            {"id": "unauthorized", "message": "wrong user name or password"}, status=401
        )
    control = request.app[DASHBOARD].control
    token, secret = await control.tokens.create_token(
        name=f"login:{user.name}",
        admin=user.admin,
        app=None,
        actor=f"user:{user.name}",
        user_id=user.id,
    )
    return web.json_response(
        {
            "token": secret,
            "id": token.id,
            "user": user.name,
            "admin": user.admin,
            "apps": sorted(user.apps),
        },
        status=201,
    )


async def post_user(request: web.Request) -> web.StreamResponse:
    """``slipway users:create``: a user made with an admin token (no session; no first admin
    exists where the control plane runs as ``serve control``)."""
    dash = request.app[DASHBOARD]
    header = request.headers.get("Authorization", "")
    principal = await dash.control.authenticate(header.removeprefix("Bearer ").strip())
    principal.require_admin()
    try:
        body = await request.json()
    except ValueError:
        body = None
    apps = body.get("apps", []) if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("name"), str)
        or not isinstance(body.get("password"), str)
        or not isinstance(body.get("admin", False), bool)
        or not isinstance(apps, list)
        or not all(isinstance(a, str) for a in apps)
    ):
        return web.json_response(
            {"id": "bad_request",
             "message": 'send {"name": NAME, "password": PASSWORD, "admin": false, "apps": [APP]}'},
            status=400,
        )  # fmt: skip
    user = await dash.users.create_user(
        body["name"],
        body["password"],
        admin=body.get("admin", False),
        apps_=[] if body.get("admin") else apps,
        actor=principal.actor,
    )
    return web.json_response(
        {"name": user.name, "admin": user.admin, "apps": sorted(user.apps)}, status=201
    )


def register(app: web.Application) -> None:
    app.router.add_get("/login", get_login)
    app.router.add_post("/login", post_login)
    app.router.add_post("/logout", post_logout)
    app.router.add_post("/token", post_token)
    app.router.add_post("/api/users", post_user)
    app.router.add_static("/static/", Path(__file__).parent / "static", append_version=False)
