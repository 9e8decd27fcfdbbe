"""Serving the app with uvicorn: ``publisher serve`` alone, or beside the scheduler in ``publisher run``."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading

import uvicorn

from ..core.config import Config
from ..publish.pipeline import Pipeline
from ..store.engine import Engine, connect
from . import auth
from .app import create_app

log = logging.getLogger(__name__)


def make_server(
    cfg: Config,
    engine: Engine | None = None,
    pipeline: Pipeline | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for the app; ``publisher run`` drives it beside the scheduler."""
    bind = host or cfg.desk.host
    auth.check_bind(cfg, bind)
    if engine is None:
        engine = connect(cfg.store_url)
    if pipeline is None:
        pipeline = Pipeline(cfg, engine)
    app = create_app(dataclasses.replace(cfg, desk=dataclasses.replace(cfg.desk, host=bind)), engine, pipeline)
    stopping: threading.Event = app.state.ctx.stopping

    class _Server(uvicorn.Server):
        # Live event streams never end by themselves; uvicorn waits for open
        # responses before shutting down, so tell them to stop first.
        @property
        def should_exit(self) -> bool:
            return self._should_exit

        @should_exit.setter
        def should_exit(self, value: bool) -> None:
            self._should_exit = value
            if value:
                stopping.set()

    config = uvicorn.Config(
        app,
        host=bind,
        port=port or cfg.desk.port,
        http=_http_impl(),
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return _Server(config)


def _http_impl() -> str:
    # httptools parses requests several times faster than h11 when installed.
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def serve(cfg: Config, *, host: str | None = None, port: int | None = None) -> None:
    """``publisher serve``: the desk and public endpoints, until interrupted."""
    server = make_server(cfg, host=host, port=port)
    log.info("serving on http://%s:%d/ (desk at /desk%s)", server.config.host, server.config.port, ", open: no password set" if auth.desk_is_open(cfg) else "")
    server.run()
