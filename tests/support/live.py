"""The web app on a real uvicorn server on loopback, in a thread."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from publisher.core.config import Config
from publisher.publish.pipeline import Pipeline
from publisher.web import server as web_server

from .ports import free_port


class LiveServer:
    def __init__(self, cfg: Config, engine: sa.Engine, pipeline: Pipeline, *, no_auth: bool = True) -> None:
        self.port = free_port()
        self.server = web_server.make_server(cfg, engine, pipeline, host="127.0.0.1", port=self.port, access_log=False, no_auth=no_auth)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
