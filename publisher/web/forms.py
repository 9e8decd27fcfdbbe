"""The public forms: subscribe, confirm (double opt-in), unsubscribe (RFC 8058 one-click).

Sign-ups are rate-limited per client and per address in the store, checked
for a honeypot field, and handed to the confirmation queue: the answer is
the same, in the same time, whatever the store holds for the address.
"""

from __future__ import annotations

import hmac
import logging

from itsdangerous import BadSignature
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..core.addresses import InvalidAddress, normalize_email
from ..core.errors import NotFound, TokenError
from ..core.states import CADENCES, Cadence
from ..delivery import subscriptions
from ..mail.tokens import parse_token
from .context import WebContext, context
from .guard import origin_ok
from .pages import message, page
from .throttle import peer_key

log = logging.getLogger(__name__)

FORM_MAX_AGE = 86400  # seconds a subscribe form stays valid
HONEYPOT_FIELD = "website"  # hidden from people; bots that fill every field fill it
SIGNUPS_PER_CLIENT = 10  # per SIGNUP_WINDOW from one peer
SIGNUPS_PER_ADDRESS = 3  # per SIGNUP_WINDOW for one address, from anywhere
SIGNUP_WINDOW = 3600.0


def _form(request: Request, status: int = 200, *, error: str | None = None, email: str = "", cadence: str = Cadence.DAILY) -> Response:
    token = context(request).forms.dumps("subscribe")
    return page(request, "subscribe.html", status, error=error, form_token=token, cadences=CADENCES, email=email, cadence=cadence)


async def subscribe_form(request: Request) -> Response:
    return _form(request)


def _address_key(ctx: WebContext, address: str) -> str:
    # The throttle table names addresses only by a keyed digest.
    return hmac.new(ctx.key, b"publisher.signup-address\x00" + address.encode("utf-8"), "sha256").hexdigest()[:32]


def _signup_wait(ctx: WebContext, peer: str, address: str) -> int:
    """Seconds this client or address must wait; 0 (and the attempt counted) when it may sign up now."""
    address_key = _address_key(ctx, address)
    wait = max(ctx.signup_client.retry_after(peer), ctx.signup_address.retry_after(address_key))
    if not wait:
        ctx.signup_client.hit(peer)
        ctx.signup_address.hit(address_key)
    return wait


def _check_inbox(request: Request) -> Response:
    # Same answer whether or not the address was known: no list probing.
    return message(request, 200, "Check your inbox", "We sent a confirmation link. Your subscription starts when you click it.")


async def subscribe_post(request: Request) -> Response:
    ctx = context(request)
    if not origin_ok(ctx.cfg, request):
        return message(request, 403, "Not allowed", "Please use the form on this site.")
    form = await request.form()
    address, cadence, token = str(form.get("email", "")).strip(), str(form.get("cadence", "")), str(form.get("form_token", ""))
    try:
        ctx.forms.loads(token, max_age=FORM_MAX_AGE)
    except BadSignature:
        return _form(request, 400, error="The form expired; please try again.", email=address)
    if str(form.get(HONEYPOT_FIELD, "")):
        log.info("sign-up with the honeypot field filled: ignored")
        return _check_inbox(request)
    if cadence not in CADENCES:
        cadence = Cadence.DAILY
    try:
        address = normalize_email(address)
    except InvalidAddress:
        return _form(request, 400, error="That does not look like an email address.", email=address, cadence=cadence)
    wait = await run_in_threadpool(_signup_wait, ctx, peer_key(request), address)
    if wait:
        response = message(request, 429, "Too many sign-ups", "Please wait a while before trying again.")
        response.headers["Retry-After"] = str(wait)
        return response
    if not ctx.signups.submit(address, cadence):
        return message(request, 503, "Try again later", "We could not record your subscription just now.")
    return _check_inbox(request)


async def _token_ok(request: Request, purpose: str, token: str) -> bool:
    ctx = context(request)
    return await run_in_threadpool(subscriptions.check_token, ctx.cfg, ctx.engine, purpose, token, clock=ctx.clock)


async def confirm(request: Request) -> Response:
    ctx = context(request)
    invalid = ("Link not valid", "This confirmation link is invalid, has expired or was replaced by a newer one: please sign up again.")
    if request.method == "GET":
        token = request.query_params.get("t", "")
        if not token:
            return message(request, 400, "Link incomplete", "This confirmation link is missing its token.")
        if not await _token_ok(request, "confirm", token):
            return message(request, 400, *invalid)
        # A button, not an automatic confirm: mail scanners prefetch links.
        return page(request, "confirm.html", token=token)
    # The button is on our own page; a cross-site POST is someone else's doing.
    # (Unsubscribe takes no such check: RFC 8058 one-click POSTs come from mail providers.)
    if not origin_ok(ctx.cfg, request):
        return message(request, 403, "Not allowed", "Please use the button on this site.")
    form = await request.form()
    token = str(form.get("t", "") or request.query_params.get("t", ""))
    try:
        await run_in_threadpool(subscriptions.confirm, ctx.cfg, ctx.engine, token, clock=ctx.clock)
    except (TokenError, NotFound):
        return message(request, 400, *invalid)
    return message(request, 200, "Subscribed", "Thank you: your subscription is confirmed.")


TEST_COPY = ("Test copy", "This link came in a [TEST] copy sent from the editors' desk to an address that is not subscribed: there is no subscription to end.")


def _test_copy(token: str) -> bool:
    """A [TEST] copy's link (subscriber id 0): nothing to unsubscribe, and nothing to reveal either."""
    try:
        return parse_token("unsubscribe", token).subscriber_id == 0
    except TokenError:
        return False


async def unsubscribe(request: Request) -> Response:
    ctx = context(request)
    token = request.query_params.get("t", "")
    invalid = ("Link not valid", "This unsubscribe link is invalid.")
    if token and _test_copy(token) and request.method == "GET":
        return message(request, 200, *TEST_COPY)
    if request.method == "GET":
        if not token:
            return message(request, 400, "Link incomplete", "This unsubscribe link is missing its token.")
        try:
            reader = await run_in_threadpool(subscriptions.manage, ctx.cfg, ctx.engine, token, clock=ctx.clock)
        except TokenError:
            return message(request, 400, *invalid)
        return page(request, "unsubscribe.html", token=token, reader=reader, cadences=CADENCES)
    # RFC 8058 one-click: a POST with "List-Unsubscribe=One-Click" to the
    # header URL, no cookies; the signed token alone authenticates it.
    form = await request.form()
    token = str(form.get("t", "") or token)
    if _test_copy(token):
        return message(request, 200, *TEST_COPY)
    try:
        await run_in_threadpool(subscriptions.unsubscribe, ctx.cfg, ctx.engine, token, clock=ctx.clock)
    except (TokenError, NotFound):
        return message(request, 400, *invalid)
    return message(request, 200, "Unsubscribed", "You will not receive further emails from us.")


async def cadence(request: Request) -> Response:
    """POST /cadence: a reader switches between instant, daily and weekly from their emailed link."""
    ctx = context(request)
    form = await request.form()
    token, wanted = str(form.get("t", "")), str(form.get("cadence", ""))
    if wanted not in CADENCES:
        return message(request, 400, "Not a choice", "Pick instant, daily or weekly.")
    try:
        changed = await run_in_threadpool(subscriptions.change_cadence, ctx.cfg, ctx.engine, token, wanted, clock=ctx.clock)
    except TokenError:
        return message(request, 400, "Link not valid", "This link is invalid.")
    what = {"instant": "each story as it is published", "daily": "the daily digest", "weekly": "the weekly digest"}[wanted]
    return message(request, 200, "Saved" if changed else "Nothing to change", f"You get {what}.")
