"""What stops a request before any endpoint runs: the Host allow-list, the Origin check, body limits.

DNS rebinding makes a hostile page same-origin with a loopback desk, but the
browser still sends the attacker's host name in ``Host``; the allow-list
refuses it. A cross-site form carries a foreign ``Origin`` (or
``Sec-Fetch-Site: cross-site``) even when it somehow holds a valid CSRF
token, so state-changing requests check both.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.config import Config
from .auth import is_loopback

log = logging.getLogger(__name__)

PUBLIC_BODY_LIMIT = 64 * 1024
# h11 refuses a request head that stays incomplete past its buffer limit, but
# one that arrives whole in a single read is parsed; these catch that case.
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
DESK_BODY_LIMIT = 1024 * 1024
WILDCARD_BINDS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
SAME_SITE_FETCH = ("same-origin", "none")
BODY_IDLE_SECONDS = 10.0  # a client sending its body must keep sending: each chunk within this


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def allowed_hosts(cfg: Config) -> list[str]:
    """Host names (no port) the app answers: base_url's, the bind address's, ``desk.allowed_hosts``."""
    hosts: list[str] = []
    base = urlsplit(cfg.site.base_url).hostname
    if base:
        hosts.append(f"[{base.lower()}]" if ":" in base else base.lower())
    bind = cfg.desk.host.strip("[]").lower()
    if bind not in WILDCARD_BINDS:
        # Starlette keeps the brackets of an IPv6 literal in Host.
        hosts.append(f"[{bind}]" if ":" in bind else bind)
    if is_loopback(cfg.desk.host):
        hosts += LOOPBACK_NAMES
    hosts += [h.lower() for h in _split(cfg.desk.allowed_hosts)]
    return list(dict.fromkeys(hosts))


def _origin(url: str) -> str:
    parts = urlsplit(url.strip().lower())
    if not parts.scheme or not parts.hostname:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port
    netloc = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    return f"{parts.scheme}://{netloc}"


def own_origins(cfg: Config, request: Request) -> set[str]:
    """The desk's own origins: the one this request was addressed to, and site.base_url's (behind a proxy)."""
    host = request.headers.get("host", "")
    own = {_origin(cfg.site.base_url)}
    if host:
        own.add(_origin(f"{request.url.scheme}://{host}"))
    return own - {""}


def origin_ok(cfg: Config, request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin or Sec-Fetch-Site).

    Scripts (curl, the CLI) send neither header; they still need the CSRF
    token or a bearer secret, so they are not refused here.
    """
    origin = request.headers.get("origin")
    # Under "Referrer-Policy: no-referrer" browsers send "Origin: null" even
    # for same-origin forms; Sec-Fetch-Site then tells the two apart.
    if origin is not None and origin.strip() != "null":
        if _origin(origin) not in own_origins(cfg, request):
            log.warning("refused %s %s from foreign origin %r", request.method, request.url.path, origin[:200])
            return False
        return True
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in SAME_SITE_FETCH:
        log.warning("refused %s %s: Sec-Fetch-Site %r", request.method, request.url.path, fetch_site[:50])
        return False
    return True


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a body passes its limit; answered 413 if nothing was sent yet."""


class BodyTooSlow(Exception):
    """Raised from ``receive`` when the next piece of a body does not come in time; answered 408."""


def body_limit_for(path: str) -> int:
    # Providers batch their bounce and complaint events (SNS messages reach
    # 256 KB, SendGrid posts arrays): webhooks get the desk's larger limit;
    # they are refused before any body is read unless signed.
    if path == "/desk" or path.startswith(("/desk/", "/webhooks/")):
        return DESK_BODY_LIMIT
    return PUBLIC_BODY_LIMIT


class BodyLimit:
    """431 for too many or too large headers; 413 for a body over the route's limit: at once from
    Content-Length, else as soon as it is passed.

    The count is of bytes received, before any parser buffers them, so an
    oversized upload costs at most one limit's worth of memory.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if len(headers) > MAX_HEADER_COUNT or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
            await _refuse(send, 431, b"Request headers too large.\n")
            return
        limit = body_limit_for(scope["path"])
        declared = dict(headers).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _refuse_body(send, limit)
                return
        seen = 0
        started = False
        body_done = False

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:
                # Past the body only a disconnect can come (live streams wait for it): no deadline.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_SECONDS)
            except asyncio.TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse_body(send, limit)
        except BodyTooSlow:
            if started:
                raise
            log.info("%s %s: request body stalled for %.0f s", scope["method"], scope["path"], BODY_IDLE_SECONDS)
            await _refuse(send, 408, b"Request body too slow.\n")


async def _refuse_body(send: Send, limit: int) -> None:
    await _refuse(send, 413, f"Request body too large (limit {limit // 1024} KB).\n".encode("ascii"))


async def _refuse(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode("ascii")), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
