"""Double opt-in and one-click unsubscribe: the subscriber's side of delivery.

Sign-ups go through :class:`ConfirmationQueue`: the web form only hands the
address over, and a worker thread records it and talks to the relay. So the
form answers in the same time whether the address is new, pending or
subscribed, and a stalling relay holds one worker, never the web server's
threads.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time

from ..core.clock import Clock, system_clock
from ..core.config import Config
from ..core.errors import PublisherError, TokenError
from ..mail import tokens
from ..mail.message import confirmation_message
from ..store import subscribers as subscribers_store
from ..store.engine import Engine
from ..store.subscribers import Subscriber
from .send import send_one

log = logging.getLogger(__name__)

CONFIRM_MAX_AGE = 48 * 3600  # seconds a confirmation link stays valid
RESEND_AFTER = 3600  # seconds before the same address can be mailed another confirmation
QUEUE_LIMIT = 1000  # sign-ups waiting for the worker; beyond it the form says "try later"


def subscribe(cfg: Config, engine: Engine, email: str, cadence: str, *, clock: Clock = system_clock) -> None:
    """Record a sign-up and email a confirmation link, at most once an hour per address.

    Raises :class:`~publisher.core.addresses.InvalidAddress` for a bad address. An address that
    is already active gets nothing, so the form cannot be used to spam or
    to learn who subscribes. A reader who left or bounced stays so until they confirm.
    """
    now = clock()
    signup = subscribers_store.request_signup(engine, email, cadence, now=now, resend_after=dt.timedelta(seconds=RESEND_AFTER))
    if signup is None:
        log.info("sign-up needs no confirmation mail (active, or one sent within the hour)")
        return
    key = tokens.signing_key(cfg)
    token = tokens.make_token(key, "confirm", signup.subscriber_id, signup.email, bind=str(signup.id), now=now.timestamp())
    send_one(cfg, signup.email, confirmation_message(cfg, signup.email, cfg.site.url("confirm?t=" + token), now=now))
    log.info("confirmation sent to subscriber id=%d", signup.subscriber_id)


def _checked(
    cfg: Config, engine: Engine, purpose: str, token: str, *, max_age: int | None = None, clock: Clock = system_clock
) -> tuple[tokens.TokenClaim, Subscriber]:
    claim = tokens.parse_token(purpose, token)
    sub = subscribers_store.get_subscriber(engine, claim.subscriber_id)
    if sub is None:
        raise TokenError(f"invalid {purpose} token")
    verified = tokens.verify_token(tokens.signing_key(cfg), purpose, token, sub.email, max_age=max_age, now=clock().timestamp())
    return verified, sub


def check_token(cfg: Config, engine: Engine, purpose: str, token: str, *, clock: Clock = system_clock) -> bool:
    """Whether a link's token is genuine (the page before the button)."""
    try:
        _checked(cfg, engine, purpose, token, max_age=CONFIRM_MAX_AGE if purpose == "confirm" else None, clock=clock)
    except TokenError:
        return False
    return True


def confirm(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Activate the subscriber of a confirm token's sign-up; False if it already was.

    Raises :class:`TokenError` for a forged, expired or tampered token, and
    for a genuine one whose sign-up was superseded by a newer confirmation
    or came before an unsubscribe: it changes nothing.
    """
    claim, sub = _checked(cfg, engine, "confirm", token, max_age=CONFIRM_MAX_AGE, clock=clock)
    if not claim.bind:
        raise TokenError("confirm token names no sign-up")
    outcome = subscribers_store.confirm_signup(engine, sub.id, int(claim.bind), now=clock(), max_age=dt.timedelta(seconds=CONFIRM_MAX_AGE))
    if outcome == "void":
        raise TokenError("confirm link replaced by a newer one, or from before an unsubscribe")
    return outcome == "confirmed"


def unsubscribe(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> bool:
    """Unsubscribe at once (RFC 8058 one-click); False for a replay.

    Raises :class:`TokenError` for a forged, truncated or tampered token, or
    one for a subscriber erased or re-addressed since (the token cannot be
    checked against an address the store no longer holds), having changed nothing.
    """
    _claim, sub = _checked(cfg, engine, "unsubscribe", token)
    return subscribers_store.unsubscribe_subscriber(engine, sub.id, sub.email, now=clock())


def manage(cfg: Config, engine: Engine, token: str, *, clock: Clock = system_clock) -> Subscriber:
    """The reader an emailed link names (the page where they change cadence or leave)."""
    return _checked(cfg, engine, "unsubscribe", token, clock=clock)[1]


def change_cadence(cfg: Config, engine: Engine, token: str, cadence: str, *, clock: Clock = system_clock) -> bool:
    """Switch an active reader's cadence from their emailed link; False when it was that already.

    The link authenticates the reader, as for one-click unsubscribe: no
    sign-up round trip, since the address is already proven.
    """
    sub = manage(cfg, engine, token, clock=clock)
    return subscribers_store.set_cadence(engine, sub.id, sub.email, cadence)


class ConfirmationQueue:
    """One worker thread that records sign-ups and mails confirmations, off the request path."""

    def __init__(self, cfg: Config, engine: Engine, *, clock: Clock = system_clock, limit: int = QUEUE_LIMIT) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue(maxsize=limit)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, email: str, cadence: str) -> bool:
        """Queue a sign-up (a normalised address); False when the queue is full."""
        self._start()
        try:
            self._queue.put_nowait((email, cadence))
        except queue.Full:
            log.warning("sign-up queue full (%d waiting): refusing a sign-up", self._queue.qsize())
            return False
        return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every queued sign-up has been handled (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout=30)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="signup-confirmations", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                subscribe(self.cfg, self.engine, item[0], item[1], clock=self.clock)
            except PublisherError as exc:
                log.error("sign-up: confirmation not sent: %s", exc)
            except Exception:
                # The worker must outlive one bad sign-up; the traceback goes to the log.
                log.exception("sign-up: unexpected failure")
            finally:
                self._queue.task_done()
