"""Editors' desk access: who may bind where, sign-in, signed sessions, CSRF.

The desk is open without a password only on a loopback address; anywhere
else it refuses to start unless the password variable is set. Sessions are
Starlette's itsdangerous-signed cookies keyed with the project's signing
key; every desk POST carries a per-session CSRF token in a hidden field.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..core.config import Config
from ..core.errors import ConfigError, ConfigProblem

log = logging.getLogger(__name__)

SESSION_COOKIE = "publisher_desk"
CSRF_FIELD = "csrf"
# Sign-in throttle: failures per client address inside the window.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(cfg: Config, host: str) -> None:
    """Refuse a non-loopback bind when no desk password is configured."""
    if not is_loopback(host) and not cfg.desk_password:
        raise ConfigError(
            cfg.source,
            [
                ConfigProblem(
                    "desk.host",
                    f"refusing to serve the desk on non-loopback address {host!r} without a password: "
                    f"set the environment variable {cfg.desk.password_env}",
                )
            ],
        )


def desk_is_open(cfg: Config) -> bool:
    """True when no password is configured (only allowed on loopback)."""
    return not cfg.desk_password


def password_ok(cfg: Config, given: str) -> bool:
    expected = cfg.desk_password
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer_ok(cfg: Config, request: Request) -> bool:
    """Scripts may send ``Authorization: Bearer <password>`` instead of a session."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and bool(value) and password_ok(cfg, value.strip())


def is_signed_in(cfg: Config, request: Request) -> bool:
    if desk_is_open(cfg):
        return True
    return request.session.get("editor") is True or bearer_ok(cfg, request)


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def csrf_ok(cfg: Config, request: Request, submitted: object) -> bool:
    # A bearer request carries no cookie, so a forged cross-site form cannot ride on it.
    if bearer_ok(cfg, request):
        return True
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode("ascii", "replace"), submitted.encode("ascii", "replace"))


def start_session(request: Request) -> None:
    """A fresh session on sign-in, so a planted cookie never becomes an editor's."""
    request.session.clear()
    request.session["editor"] = True
    request.session[CSRF_FIELD] = secrets.token_urlsafe(32)


class Throttle:
    """Counts failed sign-ins per client address; in memory, one process."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._failures.setdefault(client, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, time.monotonic())) >= self.limit

    def fail(self, client: str) -> None:
        with self._lock:
            self._recent(client, time.monotonic()).append(time.monotonic())
        log.warning("desk sign-in failed from %s", client)

    def reset(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


Endpoint = Callable[[Request], Awaitable[Response]]


def requires_editor(func: Endpoint) -> Endpoint:
    """Desk endpoints: a signed-in editor (or the open loopback desk), and a CSRF token on every POST."""
    from .context import context

    async def wrapper(request: Request) -> Response:
        cfg = context(request).cfg
        if not is_signed_in(cfg, request):
            if request.method == "GET" and request.url.path != "/desk/events":
                return RedirectResponse("/desk/login", status_code=303)
            return PlainTextResponse("sign in first", status_code=401)
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(cfg, request, form.get(CSRF_FIELD)):
                log.warning("desk: CSRF check failed for %s", request.url.path)
                return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
        return await func(request)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
