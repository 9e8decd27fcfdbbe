"""Public files of ``public/`` (feeds, web issues) served from disk, and the fast path for feed polling.

ETag/Last-Modified validators come from ``os.stat`` alone, so a conditional
GET never reads the file nor touches the database.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from cachetools import LRUCache
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .context import context
from .pages import not_found

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
# Public files share the desk's origin: none may be framed (clickjacking) and
# none may load from elsewhere but images and fonts. Inline styles stay, as
# the web copies of issues are email HTML.
CSP_PUBLIC_FILE = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; font-src 'self' https: data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


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
        # the cache can never serve stale bytes under a fresh ETag. Weighed
        # by size, so the limit is in bytes.
        self._cache: LRUCache[tuple[str, int, int], bytes] = LRUCache(maxsize=cache_limit, getsizeof=len)
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
            return data
        data = st.path.read_bytes()
        if len(data) != st.size:
            return data  # written under us; serve it, do not cache a torn state
        if len(data) <= self.max_cached_file:
            with self._lock:
                self._cache[key] = data
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
            (b"content-security-policy", CSP_PUBLIC_FILE.encode("latin-1")),
            (b"x-frame-options", b"DENY"),
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


async def public_file(request: Request) -> Response:
    """Any other GET: a file of ``public/`` with validators, or the 404 page."""
    if request.method not in ("GET", "HEAD"):
        return PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"})
    st = context(request).files.resolve(request.url.path)
    if st is None:
        return not_found(request)
    ctype = content_type_for(st.path) or "application/octet-stream"
    headers = {
        "ETag": st.etag,
        "Last-Modified": st.last_modified,
        "Cache-Control": cache_control_for(st.path),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP_PUBLIC_FILE,
        "X-Frame-Options": "DENY",
    }
    if not_modified(request.headers, st):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(st.size)
        return Response(status_code=200, headers=headers, media_type=ctype)
    return Response(context(request).files.read(st), headers=headers, media_type=ctype)
