"""Editors' desk access: who may bind where, the desk's secret, signed sessions with a revocable generation, CSRF.

The desk always has a secret. With a password set it is the password;
without one (loopback only) it is a random token made at start and printed
as a sign-in link, as Jupyter does, so no other local process or web page
can drive the desk. ``--no-auth`` (tests) drops the secret and says so loudly.

A session cookie (Starlette's itsdangerous-signed cookie) names the
generation it was issued under and a fingerprint of the secret: logout bumps
the generation in the store and a password change changes the fingerprint,
so every older cookie stops working, in every process sharing the store.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..core.config import Config
from ..core.errors import ConfigError, ConfigProblem
from ..store import guard as guard_store
from ..store.engine import Engine
from .throttle import Throttle, peer_key

log = logging.getLogger(__name__)

SESSION_COOKIE = "publisher_desk"
CSRF_FIELD = "csrf"
TOKEN_PARAM = "token"
MIN_REMOTE_PASSWORD = 12  # characters a password needs when the desk listens beyond loopback
# Sign-in throttle: failed passwords, bearer tokens or sign-in links per peer inside the window.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0

Mode = Literal["password", "token", "none"]


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(cfg: Config, host: str) -> None:
    """Refuse a non-loopback bind without a password, or with one shorter than 12 characters."""
    if is_loopback(host):
        return
    password = cfg.desk_password
    if not password:
        problem = (
            f"refusing to serve the desk on non-loopback address {host!r} without a password: "
            f"set the environment variable {cfg.desk.password_env}"
        )
    elif len(password) < MIN_REMOTE_PASSWORD:
        problem = (
            f"refusing to serve the desk on non-loopback address {host!r}: the password in "
            f"{cfg.desk.password_env} has {len(password)} characters, at least {MIN_REMOTE_PASSWORD} are needed"
        )
    else:
        return
    raise ConfigError(cfg.source, [ConfigProblem("desk.host", problem)])


def desk_is_open(cfg: Config) -> bool:
    """True when no password is configured (only allowed on loopback)."""
    return not cfg.desk_password


@dataclass(frozen=True)
class DeskAccess:
    """The desk's secret: the password, the startup token, or none (``--no-auth``)."""

    mode: Mode
    secret: str
    fingerprint: str  # binds a session to this secret; a new password voids older cookies

    def secret_ok(self, given: str) -> bool:
        if not self.secret or not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.secret.encode("utf-8"))


def desk_access(cfg: Config, key: bytes, *, no_auth: bool = False, token: str | None = None) -> DeskAccess:
    password = cfg.desk_password
    if password:
        mode: Mode = "password"
        secret = password
    elif no_auth:
        log.warning("DESK WITHOUT AUTHENTICATION (--no-auth): any local process or web page can approve and send issues")
        return DeskAccess("none", "", "")
    else:
        mode, secret = "token", token or secrets.token_urlsafe(32)
    fingerprint = hmac.new(key, b"publisher.desk-secret\x00" + secret.encode("utf-8"), "sha256").hexdigest()[:32]
    return DeskAccess(mode, secret, fingerprint)


@dataclass(frozen=True)
class Gate:
    """Everything sign-in needs: the secret, the store (generation), the failure throttle."""

    access: DeskAccess
    engine: Engine
    throttle: Throttle


def bearer_value(request: Request) -> str | None:
    """``Authorization: Bearer <secret>`` for scripts; None when the header is absent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def session_valid(gate: Gate, request: Request) -> bool:
    """Blocking (reads the generation from the store): call from a worker thread."""
    if gate.access.mode == "none":
        return True
    session = request.session
    if session.get("editor") is not True or session.get("fp") != gate.access.fingerprint:
        return False
    return session.get("gen") == guard_store.session_generation(gate.engine)


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    # A bearer request carries no cookie, so a forged cross-site form cannot ride on it.
    if getattr(request.state, "bearer", False):
        return True
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode("ascii", "replace"), submitted.encode("ascii", "replace"))


def start_session(gate: Gate, request: Request) -> None:
    """A fresh session on sign-in (blocking), so a planted cookie never becomes an editor's."""
    request.session.clear()
    request.session["editor"] = True
    request.session["fp"] = gate.access.fingerprint
    request.session["gen"] = guard_store.session_generation(gate.engine)
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


def end_sessions(gate: Gate, request: Request) -> None:
    """Logout (blocking): this cookie and every other one issued before it stop working."""
    request.session.clear()
    if gate.access.mode != "none":
        guard_store.bump_session_generation(gate.engine)


def too_many(wait: int) -> Response:
    return PlainTextResponse("Too many failed attempts; wait and try again.", status_code=429, headers={"Retry-After": str(wait)})


Endpoint = Callable[[Request], Awaitable[Response]]


async def _check_bearer(gate: Gate, request: Request, given: str) -> Response | None:
    peer = peer_key(request)
    wait = await run_in_threadpool(gate.throttle.retry_after, peer)
    if wait:
        return too_many(wait)
    if not gate.access.secret_ok(given):
        await run_in_threadpool(gate.throttle.hit, peer)
        log.warning("desk: wrong bearer token from %s", peer)
        return PlainTextResponse("wrong bearer token", status_code=401)
    request.state.bearer = True
    return None


def requires_editor(func: Endpoint) -> Endpoint:
    """Desk endpoints: a signed-in editor or a bearer secret; on every POST a same-origin request with a CSRF token."""
    from .context import context
    from .guard import origin_ok

    async def wrapper(request: Request) -> Response:
        ctx = context(request)
        gate = ctx.gate
        given = bearer_value(request)
        if given is not None and gate.access.mode != "none":
            refused = await _check_bearer(gate, request, given)
            if refused is not None:
                return refused
        elif not await run_in_threadpool(session_valid, gate, request):
            if gate.access.mode == "password" and request.method == "GET" and request.url.path != "/desk/events":
                return RedirectResponse("/desk/login", status_code=303)
            hint = "sign in first" if gate.access.mode == "password" else "open the sign-in link printed when the desk started"
            return PlainTextResponse(hint, status_code=401)
        request.state.editor = True
        if request.method == "POST":
            if not origin_ok(ctx.cfg, request):
                return PlainTextResponse("cross-site request refused", status_code=403)
            form = await request.form()
            if not csrf_ok(request, form.get(CSRF_FIELD)):
                log.warning("desk: CSRF check failed for %s", request.url.path)
                return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
        return await func(request)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
