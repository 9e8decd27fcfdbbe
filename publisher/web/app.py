"""The web app: routes of the public site (``public``, ``forms``) and the desk (``desk``) over one context.

Endpoints are module-level functions that read what they need from
``app.state.ctx`` (:class:`~publisher.web.context.WebContext`). The desk's
routes sit behind the session middleware; the feed-polling fast path
answers existing public files before routing.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from itsdangerous import URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, Router

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..delivery.subscriptions import ConfirmationQueue
from ..mail.tokens import signing_key
from ..render.templating import search_path
from ..store.engine import Engine
from . import auth, desk, forms
from . import webhooks
from .context import DeskActions, WebContext
from .deskdata import Desk
from .guard import BodyLimit, allowed_hosts
from .public import PublicFastPath, PublicFiles, public_file
from .throttle import Throttle

FAST_PATH_SKIP = ("/desk", "/subscribe", "/confirm", "/unsubscribe", "/cadence", "/_web")


def _desk_routes(cfg: Config, session_key: str) -> SessionMiddleware:
    routes = [
        Route("/", desk.index),
        Route("/login", desk.login, methods=["GET", "POST"]),
        Route("/logout", desk.logout, methods=["POST"]),
        Route("/events", desk.events),
        Route("/digest", desk.digest_page),
        Route("/digest/email", desk.digest_email),
        Route("/digest/test", desk.digest_test, methods=["POST"]),
        Route("/digest/{key}/{action}", desk.digest_action, methods=["POST"]),
        Route("/story/{slug}", desk.story_page),
        Route("/story/{slug}/email", desk.story_email),
        Route("/story/{slug}/feed", desk.story_feed),
        Route("/story/{slug}/{action}", desk.story_action, methods=["POST"]),
    ]
    # A Router, not a sub-app: endpoints then see the main app's state.
    return SessionMiddleware(
        Router(routes=routes), secret_key=session_key, session_cookie=auth.SESSION_COOKIE,
        max_age=cfg.desk.session_max_age, path="/desk", same_site="lax", https_only=cfg.site.base_url.startswith("https://"),
    )


def local_time(value: dt.datetime | None, tz: dt.tzinfo) -> str:
    """A stored (UTC) time as editors read it: in the site's time zone, with the zone named."""
    if value is None:
        return ""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


async def _desk_root(request: Request) -> Response:
    return RedirectResponse("/desk/", status_code=308)


def create_app(
    cfg: Config, engine: Engine, actions: DeskActions, *, clock: Clock = system_clock, sse_interval: float = 1.0,
    no_auth: bool = False, desk_token: str | None = None,
) -> Starlette:
    """The whole web app: public files and forms at /, the desk under /desk.

    Without a password the desk answers only to ``desk_token`` (random when
    not given; ``app.state.ctx.gate.access.secret``), unless ``no_auth``.
    """
    auth.check_bind(cfg, cfg.desk.host)
    key = signing_key(cfg)
    # Sessions get their own derived key: a session cookie can never pass as a link token.
    session_key = hmac.new(key, b"publisher.desk-session", "sha256").hexdigest()
    env = Environment(
        loader=FileSystemLoader(list(search_path(cfg.paths.templates, "web"))),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals["site"] = cfg.site
    env.filters["local"] = functools.partial(local_time, tz=cfg.site.tz)
    files = PublicFiles(cfg.paths.public)
    ctx = WebContext(
        cfg=cfg, engine=engine, actions=actions, clock=clock, env=env, files=files, desk=Desk(cfg, engine, actions, clock),
        gate=auth.Gate(
            auth.desk_access(cfg, key, no_auth=no_auth, token=desk_token), engine,
            Throttle(engine, "desk-signin", auth.MAX_FAILURES, auth.FAILURE_WINDOW, clock=clock),
        ),
        signups=ConfirmationQueue(cfg, engine, clock=clock),
        signup_client=Throttle(engine, "signup-client", forms.SIGNUPS_PER_CLIENT, forms.SIGNUP_WINDOW, clock=clock),
        signup_address=Throttle(engine, "signup-address", forms.SIGNUPS_PER_ADDRESS, forms.SIGNUP_WINDOW, clock=clock),
        forms=URLSafeTimedSerializer(key, salt="publisher.subscribe-form"), key=key,
        stopping=threading.Event(), sse_interval=sse_interval,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.stopping.clear()
        yield
        ctx.stopping.set()
        ctx.signups.stop()

    routes = [
        Route("/desk", _desk_root, methods=["GET", "HEAD", "POST"]),
        Mount("/desk", app=_desk_routes(cfg, session_key)),
        Route("/subscribe", forms.subscribe_form, methods=["GET", "HEAD"]),
        Route("/subscribe", forms.subscribe_post, methods=["POST"]),
        Route("/confirm", forms.confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", forms.unsubscribe, methods=["GET", "POST"]),
        Route("/cadence", forms.cadence, methods=["POST"]),
        Route("/_web/{name}", desk.static),
        *webhooks.routes(),
        Route("/{path:path}", public_file, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    middleware = [
        # Outermost first: a foreign Host never reaches a file or a form (DNS rebinding).
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(cfg), www_redirect=False),
        Middleware(BodyLimit),
        Middleware(PublicFastPath, files=files, skip=FAST_PATH_SKIP),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.ctx = ctx
    return app
