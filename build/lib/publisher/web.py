"""The web app: the editors' desk (``/desk``) and the public endpoints.

Public routes serve the output folder (feeds, web issues) straight from disk
with ETag/Last-Modified validators taken from ``os.stat`` alone, so a
conditional GET never reads the file nor touches the database. The desk
previews each issue through the very path a send takes
(``newsletter.render_story`` → ``MessageTemplate.personalize``) and parses
the resulting MIME message back, so what an editor sees is what is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import hashlib
import hmac
import importlib.util
import logging
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import store, webauth
from .briefs import lint, parse_brief
from .clock import Clock, system_clock
from .config import Config
from .errors import BriefError, NotFound, PublisherError, StateError, TokenError
from .model import Brief, Finding

if TYPE_CHECKING:
    import uvicorn

    from .newsletter import RenderedIssue


class Publisher(Protocol):
    """What the desk needs of :class:`publisher.pipeline.Publisher` (matched structurally)."""

    def approve(self, slug: str) -> None: ...
    def hold(self, slug: str) -> None: ...
    def preview_story(self, slug: str) -> RenderedIssue: ...
    def next_digest(self) -> tuple[str, list[Brief]]: ...

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"
# Gmail cuts messages whose HTML part is larger than about 102 KB.
GMAIL_CLIP_BYTES = 102 * 1024
PREVIEW_RECIPIENT = "reader@example.com"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")
PERIOD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CADENCES = ("instant", "daily", "weekly")
STATES = ("draft", "awaiting_approval", "approved", "held", "sending", "sent", "error")

CONTENT_TYPES: dict[str, str] = {
    ".atom": "application/atom+xml; charset=utf-8",
    ".rss": "application/rss+xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".xsl": "text/xsl; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
}
FEED_SUFFIXES = (".atom", ".rss")
# Feeds change when a story lands; readers poll. A short max-age with
# revalidation keeps them fresh while 304s stay cheap.
CACHE_FEED = "public, max-age=300, must-revalidate"
CACHE_PAGE = "public, max-age=300"
CACHE_STATIC = "public, max-age=86400"

# Sandboxed iframes show untrusted-looking email HTML: no scripts, no
# plugins, images only from the web (as a mail client would fetch them).
CSP_EMAIL = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
CSP_DESK = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
CSP_PUBLIC_PAGE = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src https: http: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


# ---------------------------------------------------------------- public files


@dataclass(frozen=True, slots=True)
class _Stat:
    path: Path
    etag: str
    last_modified: str
    mtime: float
    size: int
    mtime_ns: int


def content_type_for(path: Path) -> str | None:
    if path.name == "feed.json" or path.name.endswith(".feed.json"):
        return "application/feed+json; charset=utf-8"
    return CONTENT_TYPES.get(path.suffix.lower())


def cache_control_for(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in FEED_SUFFIXES or suffix == ".json":
        return CACHE_FEED
    if suffix in (".html", ".xml", ".txt"):
        return CACHE_PAGE
    return CACHE_STATIC


class PublicFiles:
    """Serves files under ``root`` by URL path; nothing outside it, no dotfiles."""

    def __init__(self, root: Path, *, cache_limit: int = 64 * 1024 * 1024, max_cached_file: int = 4 * 1024 * 1024) -> None:
        self.root = root
        self.cache_limit = cache_limit
        self.max_cached_file = max_cached_file
        # (path, mtime_ns, size) -> bytes: a changed file gets a new key, so
        # the cache can never serve stale bytes under a fresh ETag.
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def _root(self) -> Path:
        return self.root.resolve()

    def resolve(self, url_path: str) -> _Stat | None:
        """The file a URL path names, or None (unknown, outside, hidden, odd)."""
        if "\x00" in url_path or "\\" in url_path:
            return None
        parts = [p for p in url_path.split("/") if p]
        if any(p.startswith(".") for p in parts):
            return None  # "..", ".git", ".env": never
        root = self._root()
        candidates: list[Path] = []
        base = root.joinpath(*parts) if parts else root
        if not parts or url_path.endswith("/"):
            candidates.append(base / "index.html")
        elif "." not in parts[-1]:
            candidates += [base.with_name(parts[-1] + ".html"), base / "index.html"]
        else:
            candidates.append(base)
        for cand in candidates:
            if content_type_for(cand) is None:
                continue
            try:
                st = os.stat(cand)
            except (OSError, ValueError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            real = cand.resolve()
            # A symlink may point anywhere; only what really lies under root is served.
            if real != cand and not real.is_relative_to(root):
                continue
            return _Stat(
                path=cand,
                etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"',
                last_modified=formatdate(st.st_mtime, usegmt=True),
                mtime=st.st_mtime,
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
            )
        return None

    def read(self, st: _Stat) -> bytes:
        key = (str(st.path), st.mtime_ns, st.size)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        data = st.path.read_bytes()
        if len(data) != st.size:
            return data  # written under us; serve it, do not cache a torn state
        if len(data) <= self.max_cached_file:
            with self._lock:
                self._cache[key] = data
                self._cached_bytes += len(data)
                while self._cached_bytes > self.cache_limit and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._cached_bytes -= len(old)
        return data


def not_modified(headers: Mapping[str, str], st: _Stat) -> bool:
    """RFC 9110 §13.1: If-None-Match wins; If-Modified-Since only without it."""
    inm = headers.get("if-none-match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return st.etag in tags
    ims = headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            return False
        return int(st.mtime) <= since.timestamp()
    return False


class PublicFastPath:
    """Answers GET/HEAD for existing public files before routing.

    Feed polling is the hot path: this skips Starlette's request/response
    objects and router for it. Anything it does not find (404s, other
    methods, app routes) falls through to the app unchanged.
    """

    def __init__(self, app: ASGIApp, files: PublicFiles, skip: tuple[str, ...]) -> None:
        self.app = app
        self.files = files
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope["path"].startswith(self.skip):
            await self.app(scope, receive, send)
            return
        st = self.files.resolve(scope["path"])
        if st is None:
            await self.app(scope, receive, send)
            return
        conditional = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in (b"if-none-match", b"if-modified-since")
        }
        headers = [
            (b"etag", st.etag.encode("latin-1")),
            (b"last-modified", st.last_modified.encode("latin-1")),
            (b"cache-control", cache_control_for(st.path).encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
        ]
        if conditional and not_modified(conditional, st):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        ctype = content_type_for(st.path) or "application/octet-stream"
        body = b"" if scope["method"] == "HEAD" else self.files.read(st)
        length = st.size if scope["method"] == "HEAD" else len(body)
        headers += [(b"content-type", ctype.encode("latin-1")), (b"content-length", str(length).encode("latin-1"))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- preview


@dataclass(frozen=True)
class Preview:
    """One issue as a recipient would get it, parsed back from the MIME bytes."""

    kind: str
    key: str
    subject: str
    preheader: str
    sender: str
    html: str
    text: str
    html_bytes: int
    message_bytes: int
    content_hash: str

    @property
    def clip_ratio(self) -> float:
        return self.html_bytes / GMAIL_CLIP_BYTES

    @property
    def clipped(self) -> bool:
        return self.html_bytes > GMAIL_CLIP_BYTES


def preview_from_issue(issue: RenderedIssue, cfg: Config, *, sent_at: datetime) -> Preview:
    """Build the exact message a send builds, for a sample recipient, and read it back."""
    from .newsletter import MessageTemplate

    template = MessageTemplate.build(issue, cfg, sent_at=sent_at)
    domain = cfg.email.sender_address.rpartition("@")[2] or "localhost"
    raw = template.personalize(
        to=PREVIEW_RECIPIENT,
        unsubscribe_url=cfg.site.url("unsubscribe?t=preview"),
        message_id=f"<preview.{issue.content_hash[:24]}@{domain}>",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    # CRLF is the wire's line ending, not the content's; mail clients show LF.
    html = html_part.get_content().replace("\r\n", "\n") if isinstance(html_part, EmailMessage) else ""
    text = text_part.get_content().replace("\r\n", "\n") if isinstance(text_part, EmailMessage) else ""
    return Preview(
        kind=issue.kind,
        key=issue.key,
        subject=str(msg.get("Subject", issue.subject)).strip(),
        preheader=issue.preheader,
        sender=str(msg.get("From", "")),
        html=html,
        text=text,
        html_bytes=len(html.encode("utf-8")),
        message_bytes=len(raw),
        content_hash=issue.content_hash,
    )


_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.I)
_LIGHT_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.I)


def force_dark(html: str) -> str:
    """The email as a dark-mode client shows it: its dark media rules made unconditional."""
    html = _DARK_QUERY.sub("(min-width: 0px)", html)
    html = _LIGHT_QUERY.sub("(max-width: 0px)", html)
    meta = '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark}</style>'
    if re.search(r"<head[^>]*>", html, re.I):
        return re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + meta, html, count=1, flags=re.I)
    return meta + html


# ---------------------------------------------------------------- desk data


@dataclass(frozen=True)
class StoryRow:
    slug: str
    title: str
    path: str
    status: str
    state: str
    issue_id: int | None
    updated_at: datetime | None
    deleted: bool
    error: str | None
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error") + (1 if self.error else 0)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


class Desk:
    """Reads for the desk pages; all blocking, called from the thread pool."""

    def __init__(self, cfg: Config, engine: Engine, publisher: Publisher | None, clock: Clock) -> None:
        self.cfg = cfg
        self.engine = engine
        self.publisher = publisher
        self.clock = clock
        self._lint_cache: OrderedDict[str, tuple[Finding, ...]] = OrderedDict()
        self._preview_cache: OrderedDict[tuple[str, str, str], tuple[Preview, Brief | None]] = OrderedDict()
        self._flights: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    # -- lint, cached by (content hash, path): the list page must stay cheap
    def _findings(self, conn: sa.Connection, slug: str, content_hash: str, path: str) -> tuple[Finding, ...]:
        key = f"{content_hash}:{path}"
        with self._lock:
            hit = self._lint_cache.get(key)
        if hit is not None:
            return hit
        # Sources are only read on a cache miss: they are the big column.
        source = conn.execute(sa.select(store.stories.c.source).where(store.stories.c.slug == slug)).scalar_one()
        try:
            _, found = lint(bytes(source), path, base_url=self.cfg.site.base_url)
            findings = tuple(found)
        except BriefError as exc:
            findings = (Finding(exc.path, exc.line, "error", exc.message),)
        with self._lock:
            self._lint_cache[key] = findings
            while len(self._lint_cache) > 4096:
                self._lint_cache.popitem(last=False)
        return findings

    def stories(self, slug: str | None = None) -> list[StoryRow]:
        s, i, f = store.stories, store.issues, store.files
        query = (
            sa.select(
                s.c.slug, s.c.title, s.c.path, s.c.status, s.c.content_hash,
                s.c.updated_at, s.c.deleted_at, s.c.error, i.c.id, i.c.state, f.c.error.label("file_error"),
            )
            .select_from(
                s.outerjoin(i, sa.and_(i.c.kind == "story", i.c.key == s.c.slug)).outerjoin(f, f.c.path == s.c.path)
            )
            .order_by(s.c.updated_at.desc(), s.c.slug)
        )
        if slug is not None:
            query = query.where(s.c.slug == slug)
        rows: list[StoryRow] = []
        with self.engine.connect() as conn:
            for r in conn.execute(query).all():
                state = r.state or ("draft" if r.status == "draft" else "published")
                rows.append(
                    StoryRow(
                        slug=r.slug, title=r.title, path=r.path, status=r.status, state=state, issue_id=r.id,
                        updated_at=r.updated_at, deleted=r.deleted_at is not None, error=r.file_error or r.error,
                        findings=self._findings(conn, r.slug, r.content_hash, r.path),
                    )
                )
        return rows

    def digests(self) -> list[Any]:
        i = store.issues
        query = sa.select(i.c.id, i.c.key, i.c.state, i.c.subject, i.c.updated_at).where(i.c.kind == "digest").order_by(i.c.key.desc()).limit(20)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def story(self, slug: str) -> StoryRow:
        for row in self.stories(slug):
            return row
        raise NotFound("story", slug)

    def _source(self, slug: str) -> tuple[bytes, str, str]:
        s = store.stories
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.c.source, s.c.path, s.c.content_hash).where(s.c.slug == slug)).first()
        if row is None:
            raise NotFound("story", slug)
        return bytes(row.source), row.path, row.content_hash

    def story_preview(self, slug: str) -> tuple[Preview, Brief]:
        source, path, content_hash = self._source(slug)
        key = ("story", slug, content_hash)
        # The page and its frames ask at once; one renders, the others wait for it.
        with self._flight(key):
            with self._lock:
                hit = self._preview_cache.get(key)
            if hit is not None and hit[1] is not None:
                return hit[0], hit[1]
            brief = parse_brief(source, path, base_url=self.cfg.site.base_url)
            if self.publisher is not None:
                issue = self.publisher.preview_story(slug)
            else:
                from .newsletter import render_story

                issue = render_story(brief, self.cfg)
            preview = preview_from_issue(issue, self.cfg, sent_at=self.clock())
            self._remember(key, (preview, brief))
            return preview, brief

    def _flight(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._lock:
            if len(self._flights) > 256:
                self._flights.clear()
            return self._flights.setdefault(key, threading.Lock())

    def digest_preview(self) -> tuple[Preview, list[Brief]]:
        if self.publisher is None:
            raise StateError("the digest preview needs the pipeline (run `publisher serve` or `publisher run`)")
        from .newsletter import render_digest

        period_key, briefs = self.publisher.next_digest()
        fingerprint = hashlib.sha256("\n".join(b.content_hash for b in briefs).encode()).hexdigest()
        key = ("digest", period_key, fingerprint)
        with self._flight(key):
            with self._lock:
                hit = self._preview_cache.get(key)
            if hit is not None:
                return hit[0], briefs
            issue = render_digest(briefs, self.cfg, period_key=period_key, period_label=digest_label(period_key))
            preview = preview_from_issue(issue, self.cfg, sent_at=self.clock())
            self._remember(key, (preview, None))
            return preview, briefs

    def rendered_story(self, slug: str) -> RenderedIssue:
        if self.publisher is not None:
            return self.publisher.preview_story(slug)
        from .newsletter import render_story

        source, path, _ = self._source(slug)
        return render_story(parse_brief(source, path, base_url=self.cfg.site.base_url), self.cfg)

    def rendered_digest(self) -> RenderedIssue:
        if self.publisher is None:
            raise StateError("the digest needs the pipeline")
        from .newsletter import render_digest

        period_key, briefs = self.publisher.next_digest()
        return render_digest(briefs, self.cfg, period_key=period_key, period_label=digest_label(period_key))

    def _remember(self, key: tuple[str, str, str], value: tuple[Preview, Brief | None]) -> None:
        with self._lock:
            self._preview_cache[key] = value
            while len(self._preview_cache) > 64:
                self._preview_cache.popitem(last=False)

    def issue_id(self, kind: str, key: str) -> int | None:
        i = store.issues
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(i.c.id).where(i.c.kind == kind, i.c.key == key)).first()
        return None if row is None else int(row.id)

    def fingerprint(self, kind: str, key: str) -> str:
        """Changes whenever what the preview shows could change (cheap: two small reads)."""
        s, i, f = store.stories, store.issues, store.files
        with self.engine.connect() as conn:
            if kind == "story":
                row = conn.execute(
                    sa.select(s.c.content_hash, s.c.error, f.c.sha256, f.c.error.label("ferr"))
                    .select_from(s.outerjoin(f, f.c.path == s.c.path))
                    .where(s.c.slug == key)
                ).first()
                state = conn.execute(sa.select(i.c.state, i.c.updated_at).where(i.c.kind == "story", i.c.key == key)).first()
            else:
                row = conn.execute(sa.select(sa.func.count(), sa.func.max(s.c.updated_at), sa.func.max(s.c.deleted_at))).first()
                state = None
        return repr((tuple(row) if row else None, tuple(state) if state else None))


def digest_label(period_key: str) -> str:
    """A human label for a digest period key (the key itself is already readable)."""
    return f"Digest {period_key}"


# ---------------------------------------------------------------- the app


class _Stopping:
    """Set when the server begins to shut down, so live streams end promptly."""

    def __init__(self) -> None:
        self.event = threading.Event()


Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(cfg: Config, engine: Engine, publisher: Publisher | None, *, clock: Clock = system_clock, sse_interval: float = 1.0) -> Starlette:
    """The whole web app: public files and forms at /, the desk under /desk."""
    webauth.check_bind(cfg, cfg.desk.host)
    from .tokens import signing_key

    key = signing_key(cfg)
    # Sessions get their own derived key: a session cookie can never pass as a link token.
    session_key = hmac.new(key, b"publisher.desk-session", "sha256").hexdigest()
    # The user's override folder first, so one template can be replaced alone.
    template_dirs = [str(cfg.paths.templates / "web"), str(TEMPLATES)]
    env = Environment(loader=FileSystemLoader(template_dirs), autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals["site"] = cfg.site
    files = PublicFiles(cfg.paths.public)
    desk = Desk(cfg, engine, publisher, clock)
    stopping = _Stopping()
    throttle = webauth.Throttle()
    forms = URLSafeTimedSerializer(key, salt="publisher.subscribe-form")
    https = cfg.site.base_url.startswith("https://")

    def page(request: Request, name: str, status: int = 200, *, csp: str = CSP_PUBLIC_PAGE, **ctx: Any) -> HTMLResponse:
        body = env.get_template(name).render(request=request, **ctx)
        return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})

    def not_found(request: Request) -> HTMLResponse:
        return page(request, "not_found.html", 404)

    # -------------------------------------------------------- public

    async def public_file(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"})
        st = files.resolve(request.url.path)
        if st is None:
            return not_found(request)
        ctype = content_type_for(st.path) or "application/octet-stream"
        headers = {
            "ETag": st.etag,
            "Last-Modified": st.last_modified,
            "Cache-Control": cache_control_for(st.path),
            "X-Content-Type-Options": "nosniff",
        }
        if not_modified(request.headers, st):
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            headers["Content-Length"] = str(st.size)
            return Response(status_code=200, headers=headers, media_type=ctype)
        data = files.read(st)
        return Response(data, headers=headers, media_type=ctype)

    async def subscribe_form(request: Request) -> Response:
        return page(request, "subscribe.html", form_token=forms.dumps("subscribe"), cadences=CADENCES, email="", cadence="daily")

    async def subscribe_post(request: Request) -> Response:
        form = await request.form()
        address, cadence, token = str(form.get("email", "")).strip(), str(form.get("cadence", "")), str(form.get("form_token", ""))
        try:
            forms.loads(token, max_age=86400)
        except BadSignature:
            return page(request, "subscribe.html", 400, error="The form expired; please try again.", form_token=forms.dumps("subscribe"), cadences=CADENCES, email=address, cadence="daily")
        if cadence not in CADENCES:
            cadence = "daily"
        try:
            address = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            return page(request, "subscribe.html", 400, error="That does not look like an email address.", form_token=forms.dumps("subscribe"), cadences=CADENCES, email=address, cadence=cadence)
        from .delivery import subscribe
        from .ledger import InvalidAddress

        try:
            await run_in_threadpool(subscribe, cfg, engine, address, cadence)
        except InvalidAddress:
            return page(request, "subscribe.html", 400, error="That address cannot receive email.", form_token=forms.dumps("subscribe"), cadences=CADENCES, email=address, cadence=cadence)
        except PublisherError as exc:
            log.error("subscribe failed: %s", exc)
            return page(request, "message.html", 503, title="Try again later", message="We could not record your subscription just now.")
        # Same answer whether or not the address was known: no list probing.
        return page(request, "message.html", title="Check your inbox", message="We sent a confirmation link. Your subscription starts when you click it.")

    async def confirm(request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("t", "")
            if not token:
                return page(request, "message.html", 400, title="Link incomplete", message="This confirmation link is missing its token.")
            from .tokens import read_token

            try:
                read_token(key, "confirm", token)
            except TokenError:
                return page(request, "message.html", 400, title="Link not valid", message="This confirmation link is invalid or has expired.")
            # A button, not an automatic confirm: mail scanners prefetch links.
            return page(request, "confirm.html", token=token)
        form = await request.form()
        token = str(form.get("t", "") or request.query_params.get("t", ""))
        from .delivery import confirm as do_confirm

        try:
            await run_in_threadpool(do_confirm, cfg, engine, token)
        except (TokenError, NotFound):
            return page(request, "message.html", 400, title="Link not valid", message="This confirmation link is invalid or has expired.")
        return page(request, "message.html", title="Subscribed", message="Thank you: your subscription is confirmed.")

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("t", "")
        if request.method == "GET":
            if not token:
                return page(request, "message.html", 400, title="Link incomplete", message="This unsubscribe link is missing its token.")
            from .tokens import read_token

            try:
                read_token(key, "unsubscribe", token)
            except TokenError:
                return page(request, "message.html", 400, title="Link not valid", message="This unsubscribe link is invalid.")
            return page(request, "unsubscribe.html", token=token)
        # RFC 8058 one-click: a POST with "List-Unsubscribe=One-Click" to the
        # header URL, no cookies; the signed token alone authenticates it.
        form = await request.form()
        token = str(form.get("t", "") or token)
        from .delivery import unsubscribe as do_unsubscribe

        try:
            await run_in_threadpool(do_unsubscribe, cfg, engine, token)
        except (TokenError, NotFound):
            return page(request, "message.html", 400, title="Link not valid", message="This unsubscribe link is invalid.")
        return page(request, "message.html", title="Unsubscribed", message="You will not receive further emails from us.")

    # -------------------------------------------------------- desk

    def desk_page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return page(request, name, status, csp=CSP_DESK, csrf=webauth.csrf_token(request), open_desk=webauth.desk_is_open(cfg), signed_in=webauth.is_signed_in(cfg, request), flash=request.session.pop("flash", None), **ctx)

    def guarded(func: Endpoint) -> Endpoint:
        async def wrapper(request: Request) -> Response:
            if not webauth.is_signed_in(cfg, request):
                if request.method == "GET" and request.url.path != "/desk/events":
                    return RedirectResponse("/desk/login", status_code=303)
                return PlainTextResponse("sign in first", status_code=401)
            if request.method == "POST":
                form = await request.form()
                if not webauth.csrf_ok(cfg, request, form.get(webauth.CSRF_FIELD)):
                    log.warning("desk: CSRF check failed for %s", request.url.path)
                    return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
            return await func(request)

        return wrapper

    def redirect(to: str, flash: str | None = None, request: Request | None = None, background: BackgroundTask | None = None) -> Response:
        if flash and request is not None:
            request.session["flash"] = flash
        return RedirectResponse(to, status_code=303, background=background)

    async def login(request: Request) -> Response:
        if webauth.desk_is_open(cfg):
            return RedirectResponse("/desk/", status_code=303)
        client = request.client.host if request.client else "?"
        if request.method == "GET":
            return desk_page(request, "login.html")
        form = await request.form()
        if not webauth.csrf_ok(cfg, request, form.get(webauth.CSRF_FIELD)):
            return PlainTextResponse("CSRF token missing or wrong; reload the page", status_code=403)
        if throttle.blocked(client):
            return desk_page(request, "login.html", 429, error="Too many attempts; wait a few minutes.")
        if not webauth.password_ok(cfg, str(form.get("password", ""))):
            throttle.fail(client)
            return desk_page(request, "login.html", 401, error="Wrong password.")
        throttle.reset(client)
        webauth.start_session(request)
        log.info("desk: editor signed in from %s", client)
        return RedirectResponse("/desk/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/desk/login" if not webauth.desk_is_open(cfg) else "/desk/", status_code=303)

    async def desk_index(request: Request) -> Response:
        rows = await run_in_threadpool(desk.stories)
        digests = await run_in_threadpool(desk.digests)
        return desk_page(request, "desk.html", stories=rows, digests=digests, has_pipeline=publisher is not None)

    def _slug(request: Request) -> str | None:
        slug = str(request.path_params.get("slug", ""))
        return slug if SLUG_RE.match(slug) else None

    async def story_page(request: Request) -> Response:
        slug = _slug(request)
        if slug is None:
            return not_found(request)
        try:
            row = await run_in_threadpool(desk.story, slug)
        except NotFound:
            return not_found(request)
        view = request.query_params.get("view", "both")
        if view not in ("both", "desktop", "mobile", "dark"):
            view = "both"
        try:
            preview, _brief = await run_in_threadpool(desk.story_preview, slug)
            error = None
        except PublisherError as exc:
            preview, error = None, str(exc)
        return desk_page(
            request, "preview.html", kind="story", key=slug, row=row, preview=preview, error=error, view=view,
            clip_limit=GMAIL_CLIP_BYTES, base=f"/desk/story/{slug}", has_pipeline=publisher is not None,
            events=f"/desk/events?kind=story&key={slug}",
        )

    async def story_email(request: Request) -> Response:
        slug = _slug(request)
        if slug is None:
            return not_found(request)
        try:
            preview, _ = await run_in_threadpool(desk.story_preview, slug)
        except NotFound:
            return not_found(request)
        except PublisherError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        return email_frame(request, preview)

    def email_frame(request: Request, preview: Preview) -> Response:
        html = preview.html
        if request.query_params.get("scheme") == "dark":
            html = force_dark(html)
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP_EMAIL, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    async def story_feed(request: Request) -> Response:
        slug = _slug(request)
        if slug is None:
            return not_found(request)
        try:
            _, brief = await run_in_threadpool(desk.story_preview, slug)
        except NotFound:
            return not_found(request)
        except PublisherError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        from .feeds import entry_html

        body = env.get_template("feed_entry.html").render(brief=brief, entry=str(entry_html(brief, cfg)))
        return HTMLResponse(body, headers={"Content-Security-Policy": CSP_EMAIL, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    async def story_action(request: Request) -> Response:
        slug = _slug(request)
        action = str(request.path_params.get("action", ""))
        if slug is None:
            return not_found(request)
        back = f"/desk/story/{slug}"
        if action == "test":
            form = await request.form()
            return await send_test(request, str(form.get("address", "")), lambda: desk.rendered_story(slug), back)
        if publisher is None:
            return redirect(back, "This action needs the pipeline; start the desk with `publisher serve` or `publisher run`.", request)
        try:
            if action == "approve":
                await run_in_threadpool(publisher.approve, slug)
                log.info("desk: approved %s", slug)
                return redirect(back, "Approved: queued for delivery.", request)
            if action == "hold":
                await run_in_threadpool(publisher.hold, slug)
                log.info("desk: held %s", slug)
                return redirect(back, "Held: it will not be sent until approved.", request)
            if action == "send":
                form = await request.form()
                if form.get("confirm") != "yes":
                    return redirect(back, "Not sent: tick the box to confirm sending to all subscribers.", request)
                row = await run_in_threadpool(desk.story, slug)
                if row.state in ("awaiting_approval", "held"):
                    await run_in_threadpool(publisher.approve, slug)
                issue_id = await run_in_threadpool(desk.issue_id, "story", slug)
                if issue_id is None:
                    return redirect(back, "There is no issue for this story yet.", request)
                log.info("desk: send now %s (issue %d)", slug, issue_id)
                return redirect(back, "Sending started; refresh to follow the state.", request, BackgroundTask(_send_now, issue_id))
        except NotFound:
            return not_found(request)
        except StateError as exc:
            return redirect(back, f"Not possible now: {exc}", request)
        return not_found(request)

    def _send_now(issue_id: int) -> None:
        from .delivery import send_issue

        try:
            report = send_issue(cfg, engine, issue_id, clock=clock)
            log.info("desk: issue %d sent: %s", issue_id, report)
        except PublisherError as exc:
            log.error("desk: sending issue %d failed: %s", issue_id, exc)

    async def send_test(request: Request, address: str, render: Callable[[], RenderedIssue], back: str) -> Response:
        try:
            address = validate_email(address.strip(), check_deliverability=False).normalized
        except EmailNotValidError:
            return redirect(back, "Test not sent: that is not an email address.", request)
        from .delivery import send_test as do_send_test

        try:
            issue = await run_in_threadpool(render)
            await run_in_threadpool(do_send_test, cfg, engine, issue, address)
        except PublisherError as exc:
            log.error("desk: test send to %s failed: %s", address, exc)
            return redirect(back, f"Test not sent: {exc}", request)
        log.info("desk: test of %s %s sent to %s", issue.kind, issue.key, address)
        return redirect(back, f"Test sent to {address}.", request)

    async def digest_page(request: Request) -> Response:
        view = request.query_params.get("view", "both")
        if view not in ("both", "desktop", "mobile", "dark"):
            view = "both"
        try:
            preview, briefs = await run_in_threadpool(desk.digest_preview)
            error = None
        except PublisherError as exc:
            preview, briefs, error = None, [], str(exc)
        return desk_page(
            request, "preview.html", kind="digest", key=preview.key if preview else "", row=None, preview=preview, briefs=briefs,
            error=error, view=view, clip_limit=GMAIL_CLIP_BYTES, base="/desk/digest", has_pipeline=publisher is not None,
            events="/desk/events?kind=digest&key=next",
        )

    async def digest_email(request: Request) -> Response:
        try:
            preview, _ = await run_in_threadpool(desk.digest_preview)
        except PublisherError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        return email_frame(request, preview)

    async def digest_test(request: Request) -> Response:
        form = await request.form()
        return await send_test(request, str(form.get("address", "")), desk.rendered_digest, "/desk/digest")

    async def events(request: Request) -> Response:
        kind = request.query_params.get("kind", "story")
        key = request.query_params.get("key", "")
        if kind not in ("story", "digest") or (kind == "story" and not SLUG_RE.match(key)):
            return PlainTextResponse("bad stream", status_code=400)

        async def stream() -> AsyncIterator[str]:
            last = await run_in_threadpool(desk.fingerprint, kind, key)
            yield "retry: 2000\n: connected\n\n"
            idle = 0.0
            while not stopping.event.is_set():
                await asyncio.sleep(sse_interval)
                if stopping.event.is_set():
                    break
                now = await run_in_threadpool(desk.fingerprint, kind, key)
                if now != last:
                    last = now
                    idle = 0.0
                    yield f"event: changed\ndata: {kind}/{key}\n\n"
                else:
                    idle += sse_interval
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
            log.debug("desk: event stream for %s/%s ended", kind, key)

        # Starlette cancels the generator when the client disconnects.
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def web_static(request: Request) -> Response:
        name = str(request.path_params.get("name", ""))
        types = {"desk.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}
        if name not in types:
            return not_found(request)
        for folder in (cfg.paths.templates / "web", TEMPLATES):
            candidate = folder / "static" / name
            if candidate.is_file():
                return Response(candidate.read_bytes(), media_type=types[name], headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})
        return not_found(request)

    desk_routes = [
        Route("/", guarded(desk_index)),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", guarded(logout), methods=["POST"]),
        Route("/events", guarded(events)),
        Route("/digest", guarded(digest_page)),
        Route("/digest/email", guarded(digest_email)),
        Route("/digest/test", guarded(digest_test), methods=["POST"]),
        Route("/story/{slug}", guarded(story_page)),
        Route("/story/{slug}/email", guarded(story_email)),
        Route("/story/{slug}/feed", guarded(story_feed)),
        Route("/story/{slug}/{action}", guarded(story_action), methods=["POST"]),
    ]
    desk_app = Starlette(
        routes=desk_routes,
        middleware=[
            Middleware(
                SessionMiddleware, secret_key=session_key, session_cookie=webauth.SESSION_COOKIE,
                max_age=cfg.desk.session_max_age, path="/desk", same_site="lax", https_only=https,
            )
        ],
    )

    async def desk_root(request: Request) -> Response:
        return RedirectResponse("/desk/", status_code=308)

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stopping.event.clear()
        yield
        stopping.event.set()

    routes = [
        Route("/desk", desk_root, methods=["GET", "HEAD", "POST"]),
        Mount("/desk", app=desk_app),
        Route("/subscribe", subscribe_form, methods=["GET", "HEAD"]),
        Route("/subscribe", subscribe_post, methods=["POST"]),
        Route("/confirm", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/_web/{name}", web_static),
        Route("/{path:path}", public_file, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    from contextlib import asynccontextmanager

    app = Starlette(
        routes=routes,
        middleware=[Middleware(PublicFastPath, files=files, skip=("/desk", "/subscribe", "/confirm", "/unsubscribe", "/_web"))],
        lifespan=asynccontextmanager(lifespan),
    )
    app.state.stopping = stopping.event
    return app


# ---------------------------------------------------------------- serving


def make_server(
    cfg: Config,
    engine: Engine | None = None,
    publisher: Publisher | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    access_log: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for the app; ``publisher run`` drives it beside the scheduler."""
    import uvicorn

    bind = host or cfg.desk.host
    webauth.check_bind(cfg, bind)
    if engine is None:
        engine = store.connect(cfg.store_url)
    if publisher is None:
        from .pipeline import Publisher as Pipeline

        publisher = Pipeline(cfg, engine)
    app = create_app(dataclasses.replace(cfg, desk=dataclasses.replace(cfg.desk, host=bind)), engine, publisher)
    stopping: threading.Event = app.state.stopping

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
    log.info("serving on http://%s:%d/ (desk at /desk%s)", server.config.host, server.config.port, ", open: no password set" if webauth.desk_is_open(cfg) else "")
    server.run()
