"""The public forms: subscribe, confirm (double opt-in), unsubscribe (RFC 8058 one-click)."""

from __future__ import annotations

import logging

from itsdangerous import BadSignature
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..core.addresses import InvalidAddress, normalize_email
from ..core.errors import NotFound, PublisherError, TokenError
from ..core.states import CADENCES, Cadence
from ..delivery import subscriptions
from ..mail.tokens import read_token
from .context import context
from .pages import message, page

log = logging.getLogger(__name__)

FORM_MAX_AGE = 86400  # seconds a subscribe form stays valid


def _form(request: Request, status: int = 200, *, error: str | None = None, email: str = "", cadence: str = Cadence.DAILY) -> Response:
    token = context(request).forms.dumps("subscribe")
    return page(request, "subscribe.html", status, error=error, form_token=token, cadences=CADENCES, email=email, cadence=cadence)


async def subscribe_form(request: Request) -> Response:
    return _form(request)


async def subscribe_post(request: Request) -> Response:
    ctx = context(request)
    form = await request.form()
    address, cadence, token = str(form.get("email", "")).strip(), str(form.get("cadence", "")), str(form.get("form_token", ""))
    try:
        ctx.forms.loads(token, max_age=FORM_MAX_AGE)
    except BadSignature:
        return _form(request, 400, error="The form expired; please try again.", email=address)
    if cadence not in CADENCES:
        cadence = Cadence.DAILY
    try:
        address = normalize_email(address)
        await run_in_threadpool(subscriptions.subscribe, ctx.cfg, ctx.engine, address, cadence)
    except InvalidAddress:
        return _form(request, 400, error="That does not look like an email address.", email=address, cadence=cadence)
    except PublisherError as exc:
        log.error("subscribe failed: %s", exc)
        return message(request, 503, "Try again later", "We could not record your subscription just now.")
    # Same answer whether or not the address was known: no list probing.
    return message(request, 200, "Check your inbox", "We sent a confirmation link. Your subscription starts when you click it.")


def _token_ok(request: Request, purpose: str, token: str) -> bool:
    try:
        read_token(context(request).key, purpose, token)
    except TokenError:
        return False
    return True


async def confirm(request: Request) -> Response:
    ctx = context(request)
    invalid = ("Link not valid", "This confirmation link is invalid or has expired.")
    if request.method == "GET":
        token = request.query_params.get("t", "")
        if not token:
            return message(request, 400, "Link incomplete", "This confirmation link is missing its token.")
        if not _token_ok(request, "confirm", token):
            return message(request, 400, *invalid)
        # A button, not an automatic confirm: mail scanners prefetch links.
        return page(request, "confirm.html", token=token)
    form = await request.form()
    token = str(form.get("t", "") or request.query_params.get("t", ""))
    try:
        await run_in_threadpool(subscriptions.confirm, ctx.cfg, ctx.engine, token)
    except (TokenError, NotFound):
        return message(request, 400, *invalid)
    return message(request, 200, "Subscribed", "Thank you: your subscription is confirmed.")


async def unsubscribe(request: Request) -> Response:
    ctx = context(request)
    token = request.query_params.get("t", "")
    invalid = ("Link not valid", "This unsubscribe link is invalid.")
    if request.method == "GET":
        if not token:
            return message(request, 400, "Link incomplete", "This unsubscribe link is missing its token.")
        if not _token_ok(request, "unsubscribe", token):
            return message(request, 400, *invalid)
        return page(request, "unsubscribe.html", token=token)
    # RFC 8058 one-click: a POST with "List-Unsubscribe=One-Click" to the
    # header URL, no cookies; the signed token alone authenticates it.
    form = await request.form()
    token = str(form.get("t", "") or token)
    try:
        await run_in_threadpool(subscriptions.unsubscribe, ctx.cfg, ctx.engine, token)
    except (TokenError, NotFound):
        return message(request, 400, *invalid)
    return message(request, 200, "Unsubscribed", "You will not receive further emails from us.")
