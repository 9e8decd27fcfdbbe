"""Serving the app with uvicorn: ``publisher serve`` alone, or beside the scheduler in ``publisher run``.

uvicorn is told what it may believe and how much it may hold: proxy headers
only from ``desk.trusted_proxies``, a bound on a request head, on open
connections and on idle keep-alive, and a deadline for a client to finish
sending its request head (slow-loris).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..core.config import Config
from ..publish.pipeline import Pipeline
from ..store.engine import Engine, connect
from . import auth
from .app import create_app

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; h11 answers 431 beyond it
MAX_CONNECTIONS = 200  # concurrent connections and tasks; uvicorn answers 503 beyond it
KEEP_ALIVE_SECONDS = 5
HEAD_DEADLINE_SECONDS = 10.0  # a client must send its whole request head within this
# Query strings that carry secrets: subscribers' link tokens, the desk's sign-in link, webhook signatures.
REDACTED_PATHS = re.compile(r"^(/confirm|/unsubscribe|/desk|/webhook|/hooks)([/?]|$)")


class _DeadlineH11(H11Protocol):
    """h11 with a deadline for the request head: a client that trickles bytes is cut off."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_DEADLINE_SECONDS, self._head_deadline)

    def _head_deadline(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            log.info("closing a connection that sent no complete request head in %.0f s", HEAD_DEADLINE_SECONDS)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        super().connection_lost(exc)


class RedactQueries(logging.Filter):
    """Access-log lines for token-bearing routes keep the path and drop the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if "?" in path and REDACTED_PATHS.match(path):
                record.args = (*args[:2], path.split("?", 1)[0] + "?[redacted]", *args[3:])
        return True


def install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueries) for f in access.filters):
        access.addFilter(RedactQueries())


# What uvicorn's main loop does once a second: refresh the Date header.
TICK_SECONDS = 1.0


class QuietServer(uvicorn.Server):
    """uvicorn's server, idle when nothing happens, and stopping its live streams first.

    uvicorn's main loop wakes every 0.1 s to see whether it should exit and,
    every tenth time, to refresh the Date header: 0.2 % of a core on an idle
    service (a quarter of what a quiet 100k-brief service spent). This loop wakes
    once a second for the header and at once when told to exit.
    """

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        self._stopping = stopping  # live event streams wait on it
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__(config)

    # Live event streams never end by themselves; uvicorn waits for open
    # responses before shutting down, so tell them to stop first.
    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value:
            self._stopping.set()
            # Set by a signal handler or another thread: wake the loop through its self-pipe.
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                try:
                    loop.call_soon_threadsafe(wake.set)
                except RuntimeError:
                    pass  # the loop is closed: the server has stopped, there is nothing to wake

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        # on_tick refreshes the Date header when its counter is a multiple of 10 (uvicorn's 10 ticks a second).
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            except TimeoutError:
                pass
            counter = (counter + 10) % 864_000
            should_exit = await self.on_tick(counter)


def uvicorn_limits(cfg: Config) -> dict[str, Any]:
    """The uvicorn settings that bound what one client can make the server hold."""
    proxies = [p.strip() for p in cfg.desk.trusted_proxies.split(",") if p.strip()]
    return {
        "http": _DeadlineH11,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "limit_concurrency": MAX_CONNECTIONS,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a local
        # client could then pose as any peer and escape the sign-in throttle.
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies,
    }


def make_server(
    cfg: Config,
    engine: Engine | None = None,
    pipeline: Pipeline | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = True,
    no_auth: bool = False,
) -> uvicorn.Server:
    """A uvicorn server for the app; ``publisher run`` drives it beside the scheduler."""
    bind = host or cfg.desk.host
    auth.check_bind(cfg, bind)
    if engine is None:
        engine = connect(cfg.store_url)
    if pipeline is None:
        pipeline = Pipeline(cfg, engine)
    app = create_app(dataclasses.replace(cfg, desk=dataclasses.replace(cfg.desk, host=bind)), engine, pipeline, no_auth=no_auth)
    stopping = app.state.ctx.stopping
    install_log_redaction()

    config = uvicorn.Config(
        app,
        host=bind,
        port=port or cfg.desk.port,
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=5,
        server_header=False,
        **uvicorn_limits(cfg),
    )
    server = QuietServer(config, stopping)
    server.desk_secret = app.state.ctx.gate.access  # type: ignore[attr-defined]
    return server


def sign_in_url(server: uvicorn.Server) -> str | None:
    """The one sign-in link of a desk without a password (None with a password or ``--no-auth``)."""
    access: auth.DeskAccess = server.desk_secret  # type: ignore[attr-defined]
    if access.mode != "token":
        return None
    host = server.config.host
    shown = "127.0.0.1" if host in ("localhost", "0.0.0.0") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{server.config.port}/desk/login?{auth.TOKEN_PARAM}={access.secret}"


def serve(cfg: Config, *, host: str | None = None, port: int | None = None, no_auth: bool = False) -> uvicorn.Server:
    """``publisher serve``: the server, for the caller to print its sign-in link and run."""
    server = make_server(cfg, host=host, port=port, no_auth=no_auth)
    log.info("serving on http://%s:%d/ (desk at /desk%s)", server.config.host, server.config.port, ", open: no password set" if auth.desk_is_open(cfg) else "")
    return server
