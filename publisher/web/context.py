"""What every endpoint needs, built once by ``create_app`` and read from ``app.state``."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from itsdangerous import URLSafeTimedSerializer
from jinja2 import Environment
from starlette.requests import Request

from ..briefs.model import Brief
from ..core.clock import Clock
from ..core.config import Config
from ..publish.digests import DigestSchedule
from ..publish.issues import Released
from ..render.email import RenderedIssue
from ..store.engine import Engine

if TYPE_CHECKING:
    from ..delivery.subscriptions import ConfirmationQueue
    from .auth import Gate
    from .throttle import Throttle
    from .deskdata import Desk
    from .public import PublicFiles


class DeskActions(Protocol):
    """What the desk needs of the pipeline (``publish.pipeline.Pipeline``, matched structurally)."""

    def approve(self, target: str, *, actor: str, send_at: dt.datetime | None = None) -> Released: ...
    def hold(self, target: str, *, actor: str) -> None: ...
    def preview_story(self, slug: str) -> RenderedIssue: ...
    def story_brief(self, slug: str) -> Brief: ...
    def next_digest(self, cadence: str | None = None) -> tuple[DigestSchedule, dt.datetime, list[Brief], dt.datetime | None]: ...
    def render_digest(self, schedule: DigestSchedule, fire: dt.datetime, briefs: list[Brief]) -> RenderedIssue: ...


@dataclass
class WebContext:
    cfg: Config
    engine: Engine
    actions: DeskActions
    clock: Clock
    env: Environment  # the web templates (user overrides first)
    files: PublicFiles
    desk: Desk
    gate: Gate  # the desk's secret, sessions' generation, the sign-in throttle
    forms: URLSafeTimedSerializer  # signs the subscribe form's token
    signups: ConfirmationQueue  # records sign-ups and mails confirmations off the request path
    signup_client: Throttle  # sign-ups per peer
    signup_address: Throttle  # sign-ups per address (keyed digest)
    key: bytes  # the signing key of link tokens
    stopping: threading.Event  # set when the server shuts down: live streams end
    sse_interval: float


def context(request: Request) -> WebContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, WebContext)
    return ctx
