"""Double opt-in and one-click unsubscribe: the subscriber's side of delivery."""

from __future__ import annotations

import logging

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..mail import tokens
from ..mail.message import confirmation_message
from ..store import subscribers as subscribers_store
from ..store.engine import Engine
from .send import send_one

log = logging.getLogger(__name__)

CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds a confirmation link stays valid


def subscribe(cfg: Config, engine: Engine, email: str, cadence: str, *, clock: Clock = system_clock) -> None:
    """Store a pending subscriber and email them a confirmation link.

    Raises :class:`~publisher.core.addresses.InvalidAddress` for a bad address. An address that
    is already active gets nothing, so the form cannot be used to spam or
    to learn who subscribes.
    """
    now = clock()
    sub = subscribers_store.request_subscription(engine, email, cadence, now=now)
    if sub is None:
        log.info("subscribe request for an active address ignored")
        return
    key = tokens.signing_key(cfg)
    url = cfg.site.url("confirm?t=" + tokens.make_token(key, "confirm", sub.id, sub.email))
    send_one(cfg, sub.email, confirmation_message(cfg, sub.email, url, now=now))
    log.info("confirmation sent to subscriber id=%d", sub.id)


def confirm(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Activate the subscriber named by a confirm token; False if nothing changed.

    Raises :class:`TokenError` for a forged, expired or tampered token.
    """
    sid, email = tokens.read_token(tokens.signing_key(cfg), "confirm", token, max_age=CONFIRM_MAX_AGE)
    return subscribers_store.confirm_subscriber(engine, sid, email, now=clock())


def unsubscribe(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Unsubscribe at once (RFC 8058 one-click); False for a replay or a gone subscriber.

    Raises :class:`TokenError` for a forged, truncated or tampered token,
    having changed nothing.
    """
    sid, email = tokens.read_token(tokens.signing_key(cfg), "unsubscribe", token)
    return subscribers_store.unsubscribe_subscriber(engine, sid, email, now=clock())

