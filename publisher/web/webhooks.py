"""Provider webhooks: /webhooks/ses, /webhooks/postmark, /webhooks/mailgun, /webhooks/sendgrid.

Thin: verification and payload parsing live in ``delivery.providers``.
An endpoint whose secret is not configured answers 404 (it does not
exist); a request that fails verification gets 403 and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..core.config import Config
from ..delivery import providers
from ..delivery.bounces import ScanReport, apply_all
from ..store import issues as issues_store
from ..store.bounces import Event
from .context import WebContext, context

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # providers batch events, but never a megabyte of them


def _configured(cfg: Config, provider: str) -> bool:
    w = cfg.webhooks
    return bool({
        "ses": w.ses_topic_arn, "postmark": w.postmark_token_env, "mailgun": w.mailgun_key_env,
        "sendgrid": w.sendgrid_key_env,
    }[provider])


def _apply(ctx: WebContext, events: list[Event]) -> ScanReport:
    report = ScanReport()
    apply_all(ctx.cfg, ctx.engine, [e for e in events if e.email], report, clock=ctx.clock)
    return report


def _with_issue(ctx: WebContext, events: list[Event], ref: tuple[str, str] | None) -> list[Event]:
    if ref is None:
        return events
    issue_id = issues_store.issue_id(ctx.engine, *ref)
    return [dataclasses.replace(e, issue_id=issue_id) for e in events]


async def _handle(request: Request, provider: str, work: Callable[[WebContext, bytes], list[Event]]) -> Response:
    ctx = context(request)
    if not _configured(ctx.cfg, provider):
        return PlainTextResponse("not found", status_code=404)
    body = await request.body()
    if len(body) > MAX_BODY:
        return PlainTextResponse("too large", status_code=413)
    try:
        events = await run_in_threadpool(work, ctx, body)
        report = await run_in_threadpool(_apply, ctx, events)
    except providers.WebhookRefused as exc:
        log.warning("webhook %s refused: %s", provider, exc)
        return PlainTextResponse("forbidden", status_code=403)
    except providers.WebhookPayloadError as exc:
        log.warning("webhook %s: bad payload: %s", provider, exc)
        return PlainTextResponse(f"bad payload: {exc}", status_code=400)
    log.info("webhook %s: %d new event(s), %d repeated", provider, report.events, report.repeated)
    return PlainTextResponse("ok")


async def ses(request: Request) -> Response:
    def work(ctx: WebContext, body: bytes) -> list[Event]:
        msg = providers.verify_sns(ctx.cfg, body, now=ctx.clock())
        if msg["Type"] == "SubscriptionConfirmation":
            providers.confirm_subscription(ctx.cfg, msg)
            log.info("SNS subscription to %s confirmed", msg.get("TopicArn"))
            return []
        if msg["Type"] != "Notification":
            return []
        return _with_issue(ctx, providers.ses_events(msg), providers.ses_issue_ref(msg))

    return await _handle(request, "ses", work)


async def postmark(request: Request) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}

    def work(ctx: WebContext, body: bytes) -> list[Event]:
        providers.verify_postmark(ctx.cfg, headers)
        return providers.postmark_events(body)

    return await _handle(request, "postmark", work)


async def mailgun(request: Request) -> Response:
    def work(ctx: WebContext, body: bytes) -> list[Event]:
        data = providers.parse_json_object(body)
        providers.verify_mailgun(ctx.cfg, data, now=ctx.clock())
        return providers.mailgun_events(data)

    return await _handle(request, "mailgun", work)


async def sendgrid(request: Request) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}

    def work(ctx: WebContext, body: bytes) -> list[Event]:
        providers.verify_sendgrid(ctx.cfg, headers, body, now=ctx.clock())
        return providers.sendgrid_events(body)

    return await _handle(request, "sendgrid", work)


def routes() -> list[Route]:
    return [
        Route("/webhooks/ses", ses, methods=["POST"]),
        Route("/webhooks/postmark", postmark, methods=["POST"]),
        Route("/webhooks/mailgun", mailgun, methods=["POST"]),
        Route("/webhooks/sendgrid", sendgrid, methods=["POST"]),
    ]
