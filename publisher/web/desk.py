"""The editors' desk (``/desk``): sign-in, the story list, previews, approve/hold/send, live reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from ..core.addresses import InvalidAddress, normalize_email
from ..core.errors import NotFound, PublisherError, StateError
from ..core.states import IssueState
from ..delivery.send import send_issue, send_test
from ..render.email import RenderedIssue
from ..render.feed_entries import entry_html
from ..render.templating import search_path
from . import auth
from .auth import requires_editor
from .context import WebContext, context
from .deskdata import Desk
from .guard import origin_ok
from .pages import desk_page, email_frame, not_found, redirect
from . import preview as previews
from .preview import Preview, force_dark
from .throttle import peer_key

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")
PERIOD_RE = re.compile(r"^[0-9]{4}-[0-9A-Za-z-]{2,16}$")  # digest period keys: 2030-01-02T0700, 2030-W01
VIEWS = ("both", "desktop", "mobile", "dark")
STATIC = {"desk.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}


async def login(request: Request) -> Response:
    ctx = context(request)
    gate = ctx.gate
    if gate.access.mode == "none":
        return RedirectResponse("/desk/", status_code=303)
    peer = peer_key(request)
    # Only the startup token travels in a link; a password never goes in a URL.
    link_token = request.query_params.get(auth.TOKEN_PARAM) if gate.access.mode == "token" else None
    if request.method == "GET" and link_token is None:
        return desk_page(request, "login.html", 401 if gate.access.mode == "token" else 200, token_mode=gate.access.mode == "token")
    if request.method == "POST":
        if not origin_ok(ctx.cfg, request):
            return PlainTextResponse("cross-site request refused", status_code=403)
        form = await request.form()
        if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
            return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
        given = str(form.get("password", ""))
    else:
        given = link_token or ""
    wait = await run_in_threadpool(gate.throttle.retry_after, peer)
    if wait:
        response = desk_page(request, "login.html", 429, error="Too many attempts; wait a few minutes.")
        response.headers["Retry-After"] = str(wait)
        return response
    if not gate.access.secret_ok(given):
        await run_in_threadpool(gate.throttle.hit, peer)
        log.warning("desk: sign-in failed from %s", peer)
        return desk_page(request, "login.html", 401, error="Wrong password or sign-in link.")
    await run_in_threadpool(gate.throttle.reset, peer)
    await run_in_threadpool(auth.start_session, gate, request)
    log.info("desk: editor signed in from %s", peer)
    # A redirect drops the token from the address bar and the history.
    return RedirectResponse("/desk/", status_code=303)


@requires_editor
async def logout(request: Request) -> Response:
    gate = context(request).gate
    await run_in_threadpool(auth.end_sessions, gate, request)
    return RedirectResponse("/desk/login" if gate.access.mode == "password" else "/desk/", status_code=303)


def actor(request: Request) -> str:
    """Who made a change from the desk, for the issue's history."""
    client = request.client.host if request.client else "?"
    how = "token" if request.headers.get("authorization", "").lower().startswith("bearer ") else "session"
    return f"desk ({how}, {client})"


def _newsroom(desk: Desk) -> dict[str, Any]:
    return {
        "stories": desk.stories(), "broken": desk.broken_files(), "digests": desk.digests(),
        "subscribers": desk.subscriber_counts(),
    }


@requires_editor
async def index(request: Request) -> Response:
    view = await run_in_threadpool(_newsroom, context(request).desk)
    return desk_page(request, "desk.html", **view)


def _slug(request: Request) -> str | None:
    slug = str(request.path_params.get("slug", ""))
    return slug if SLUG_RE.match(slug) else None


def _view(request: Request) -> str:
    view = request.query_params.get("view", "both")
    return view if view in VIEWS else "both"


def _nothing_to_show(exc: PublisherError) -> Response:
    # A brief that fails to parse or a digest with no stories is the desk's
    # normal state, not a server fault: say what is missing.
    return PlainTextResponse(f"Nothing to preview: {exc}", status_code=404, headers={"Cache-Control": "no-store"})


def _frame(request: Request, preview: Preview) -> Response:
    dark = request.query_params.get("scheme") == "dark"
    return email_frame(request, force_dark(preview.html) if dark else preview.html)


@requires_editor
async def story_page(request: Request) -> Response:
    slug = _slug(request)
    if slug is None:
        return not_found(request)
    desk = context(request).desk
    try:
        row = await run_in_threadpool(desk.story, slug)
    except NotFound:
        return not_found(request)
    try:
        preview, _brief = await run_in_threadpool(desk.story_preview, slug)
        error = None
    except PublisherError as exc:
        preview, error = None, str(exc)
    history = await run_in_threadpool(desk.history, "story", slug)
    return desk_page(
        request, "preview.html", kind="story", key=slug, row=row, preview=preview, error=error, view=_view(request),
        clip_limit=previews.GMAIL_CLIP_BYTES, base=f"/desk/story/{slug}", events=f"/desk/events?kind=story&key={slug}",
        history=history, issue=row.issue,
    )


@requires_editor
async def story_email(request: Request) -> Response:
    slug = _slug(request)
    if slug is None:
        return not_found(request)
    try:
        preview, _ = await run_in_threadpool(context(request).desk.story_preview, slug)
    except NotFound:
        return not_found(request)
    except PublisherError as exc:
        return _nothing_to_show(exc)
    return _frame(request, preview)


@requires_editor
async def story_feed(request: Request) -> Response:
    slug = _slug(request)
    if slug is None:
        return not_found(request)
    ctx = context(request)
    try:
        _, brief = await run_in_threadpool(ctx.desk.story_preview, slug)
    except NotFound:
        return not_found(request)
    except PublisherError as exc:
        return _nothing_to_show(exc)
    body = ctx.env.get_template("feed_entry.html").render(brief=brief, entry=str(entry_html(brief, ctx.cfg)))
    return email_frame(request, body)


def _send_now(ctx: WebContext, issue_id: int, who: str) -> None:
    try:
        report = send_issue(ctx.cfg, ctx.engine, issue_id, clock=ctx.clock, actor=who)
        log.info("desk: issue %d sent: %s", issue_id, report)
    except PublisherError as exc:
        log.error("desk: sending issue %d failed: %s", issue_id, exc)


async def _send_story_now(request: Request, slug: str, back: str) -> Response:
    ctx = context(request)
    form = await request.form()
    if form.get("confirm") != "yes":
        return redirect(back, "Not sent: tick the box to confirm sending to all subscribers.", request)
    row = await run_in_threadpool(ctx.desk.story, slug)
    if row.state not in (IssueState.APPROVED, IssueState.SENDING, IssueState.SENT):
        await run_in_threadpool(functools.partial(ctx.actions.approve, slug, actor=actor(request)))
    issue_id = await run_in_threadpool(ctx.desk.issue_id, "story", slug)
    if issue_id is None:
        return redirect(back, "There is no issue for this story yet.", request)
    log.info("desk: send now %s (issue %d)", slug, issue_id)
    return redirect(back, "Sending started; refresh to follow the state.", request, BackgroundTask(_send_now, ctx, issue_id, actor(request)))


@requires_editor
async def story_action(request: Request) -> Response:
    slug = _slug(request)
    action = str(request.path_params.get("action", ""))
    if slug is None:
        return not_found(request)
    ctx = context(request)
    back = f"/desk/story/{slug}"
    if action == "test":
        form = await request.form()
        return await _send_test(request, str(form.get("address", "")), lambda: ctx.desk.rendered_story(slug), back)
    try:
        if action in ("approve", "hold"):
            return await _release_or_hold(request, slug, action, back)
        if action == "send":
            return await _send_story_now(request, slug, back)
    except NotFound:
        return not_found(request)
    except StateError as exc:
        return redirect(back, f"Not possible now: {exc}", request)
    return not_found(request)


def _send_at(raw: str, tz: dt.tzinfo) -> dt.datetime | None:
    """A ``datetime-local`` form value, read in the site's time zone."""
    if not raw.strip():
        return None
    try:
        value = dt.datetime.fromisoformat(raw.strip())
    except ValueError as exc:
        raise StateError(f"send time {raw!r} is not a date and time") from exc
    return value if value.tzinfo else value.replace(tzinfo=tz)


async def _release_or_hold(request: Request, target: str, action: str, back: str) -> Response:
    """Approve (after the editor confirmed the number of readers) or hold a story or digest issue."""
    ctx = context(request)
    who = actor(request)
    if action == "hold":
        await run_in_threadpool(functools.partial(ctx.actions.hold, target, actor=who))
        log.info("desk: %s held %s", who, target)
        return redirect(back, "Held: it will not be sent until approved.", request)
    form = await request.form()
    if form.get("confirm") != "yes":
        return redirect(back, "Not approved: tick the box to confirm the number of readers it goes to.", request)
    send_at = _send_at(str(form.get("send_at", "")), ctx.cfg.site.tz)
    released = await run_in_threadpool(functools.partial(ctx.actions.approve, target, actor=who, send_at=send_at))
    log.info("desk: %s approved %s", who, target)
    return redirect(back, f"Approved: {released.describe()}.", request)


async def _send_test(request: Request, address: str, render: Callable[[], RenderedIssue], back: str) -> Response:
    ctx = context(request)
    try:
        address = normalize_email(address)
    except InvalidAddress:
        return redirect(back, "Test not sent: that is not an email address.", request)
    try:
        issue = await run_in_threadpool(render)
        await run_in_threadpool(send_test, ctx.cfg, ctx.engine, issue, address)
    except PublisherError as exc:
        log.error("desk: test send to %s failed: %s", address, exc)
        return redirect(back, f"Test not sent: {exc}", request)
    log.info("desk: test of %s %s sent to %s", issue.kind, issue.key, address)
    return redirect(back, f"Test sent to {address}.", request)


def _cadence(request: Request) -> str | None:
    cadence = request.query_params.get("cadence")
    return cadence if cadence in ("daily", "weekly") else None


@requires_editor
async def digest_page(request: Request) -> Response:
    ctx = context(request)
    try:
        digest = await run_in_threadpool(ctx.desk.digest_preview, _cadence(request))
        error = None
    except PublisherError as exc:
        digest, error = None, str(exc)
    made = await run_in_threadpool(ctx.desk.digests)
    cadence = digest.cadence if digest else (_cadence(request) or "")
    query = f"?cadence={cadence}" if cadence else ""
    return desk_page(
        request, "preview.html", kind="digest", key=digest.key if digest else "", row=None,
        preview=digest.preview if digest else None, digest=digest, briefs=digest.briefs if digest else [], error=error,
        view=_view(request), clip_limit=previews.GMAIL_CLIP_BYTES, base="/desk/digest", query=query,
        events="/desk/events?kind=digest&key=next", made=made,
        cadences=[c for c in ("daily", "weekly") if getattr(ctx.cfg.digests, c)],
    )


@requires_editor
async def digest_email(request: Request) -> Response:
    try:
        digest = await run_in_threadpool(context(request).desk.digest_preview, _cadence(request))
    except PublisherError as exc:
        return _nothing_to_show(exc)
    if digest.preview is None:
        return PlainTextResponse(f"no stories for the next {digest.cadence} digest yet", status_code=404)
    return _frame(request, digest.preview)


@requires_editor
async def digest_test(request: Request) -> Response:
    form = await request.form()
    cadence = _cadence(request)
    back = "/desk/digest" + (f"?cadence={cadence}" if cadence else "")
    return await _send_test(request, str(form.get("address", "")), lambda: context(request).desk.rendered_digest(cadence), back)


@requires_editor
async def digest_action(request: Request) -> Response:
    """Approve or hold a digest that was made (``/desk/digest/<period>/approve|hold``)."""
    key = str(request.path_params.get("key", ""))
    action = str(request.path_params.get("action", ""))
    if not PERIOD_RE.match(key) or action not in ("approve", "hold"):
        return not_found(request)
    try:
        return await _release_or_hold(request, f"digest:{key}", action, "/desk/")
    except NotFound:
        return not_found(request)
    except StateError as exc:
        return redirect("/desk/", f"Not possible now: {exc}", request)


@requires_editor
async def events(request: Request) -> Response:
    """Server-sent events: "changed" whenever what an open preview shows could have changed."""
    ctx = context(request)
    kind = request.query_params.get("kind", "story")
    key = request.query_params.get("key", "")
    if kind not in ("story", "digest") or (kind == "story" and not SLUG_RE.match(key)):
        return PlainTextResponse("bad stream", status_code=400)

    async def stream() -> AsyncIterator[str]:
        last = await run_in_threadpool(ctx.desk.fingerprint, kind, key)
        yield "retry: 2000\n: connected\n\n"
        idle = 0.0
        while not ctx.stopping.is_set():
            await asyncio.sleep(ctx.sse_interval)
            if ctx.stopping.is_set():
                break
            now = await run_in_threadpool(ctx.desk.fingerprint, kind, key)
            if now != last:
                last = now
                idle = 0.0
                yield f"event: changed\ndata: {kind}/{key}\n\n"
            else:
                idle += ctx.sse_interval
                if idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"
        log.debug("desk: event stream for %s/%s ended", kind, key)

    # Starlette cancels the generator when the client disconnects.
    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def static(request: Request) -> Response:
    """The desk's stylesheet and script, user override first."""
    name = str(request.path_params.get("name", ""))
    if name not in STATIC:
        return not_found(request)
    for folder in search_path(context(request).cfg.paths.templates, "web"):
        candidate = folder + "/static/" + name
        try:
            with open(candidate, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
    return not_found(request)
