"""The desk under test: a config, a public folder, stories and issues written straight into the store,
and the real pipeline that notes which editors' actions reached it."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from publisher.core.config import Config
from publisher.publish.issues import Released
from publisher.publish.pipeline import Pipeline
from publisher.store import schema

from .files import REFERENCE
from .project import build_config

PASSWORD = "correct horse battery staple"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def make_config(tmp: Path, **desk: Any) -> Config:
    return build_config(
        tmp,
        create=True,
        site={"base_url": "http://127.0.0.1:8000/", "title": "Test Briefs"},
        paths={"templates": "templates"},
        email={"sender_address": "briefs@example.org"},
        desk=desk,
    )


def write_public(cfg: Config) -> None:
    pub = cfg.paths.public
    (pub / "feed.atom").write_text('<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title></feed>')
    (pub / "feed.rss").write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>')
    (pub / "feed.json").write_text('{"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": []}')
    (pub / "tags" / "energy").mkdir(parents=True)
    (pub / "tags" / "energy" / "feed.atom").write_text("<feed/>")
    (pub / "issues").mkdir()
    (pub / "issues" / "some-story.html").write_text("<!doctype html><title>Some story</title><p>web version</p>")
    (pub / "index.html").write_text("<!doctype html><title>Home</title>")
    (pub / ".secret.atom").write_text("hidden")
    (pub / "state.db").write_bytes(b"SQLite format 3\x00")
    (cfg.paths.state / "publisher.db.atom").write_text("outside")


def add_story(engine: sa.Engine, slug: str, *, source: bytes | None = None, state: str | None = "awaiting_approval", status: str = "published", path: str | None = None, error: str | None = None) -> None:
    source = source if source is not None else REFERENCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    with engine.begin() as conn:
        conn.execute(
            schema.stories.insert().values(
                slug=slug, path=path or f"{slug}.txt", title=f"Title of {slug}", status=status, source=source,
                content_hash=digest, published_at=NOW, updated_at=NOW, created_at=NOW, error=error,
            )
        )
        if state is not None:
            conn.execute(
                schema.issues.insert().values(
                    kind="story", key=slug, state=state, subject=f"Subject {slug}", preheader="pre", html="<p>x</p>",
                    text="x", content_hash=digest, created_at=NOW, updated_at=NOW,
                )
            )


class RecordingPipeline(Pipeline):
    """The real pipeline, noting which editors' actions reached it (and who made them)."""

    def __init__(self, cfg: Config, engine: sa.Engine) -> None:
        super().__init__(cfg, engine)
        self.calls: list[tuple[str, str]] = []
        self.actors: list[str] = []

    def approve(self, target: str, *, actor: str = "service", send_at: dt.datetime | None = None) -> Released:
        self.calls.append(("approve", target))
        self.actors.append(actor)
        return super().approve(target, actor=actor, send_at=send_at)

    def hold(self, target: str, *, actor: str = "service") -> None:
        self.calls.append(("hold", target))
        self.actors.append(actor)
        super().hold(target, actor=actor)


def set_issue_state(engine: sa.Engine, slug: str, state: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(schema.issues).where(schema.issues.c.key == slug).values(state=state))


def issue_state(engine: sa.Engine, slug: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(schema.issues.c.state).where(schema.issues.c.key == slug)).scalar_one())


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(c: TestClient) -> str:
    page = c.get("/desk/login")
    assert page.status_code == 200
    r = c.post("/desk/login", data={"password": PASSWORD, "csrf": csrf_from(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/desk/"
    desk = c.get("/desk/")
    assert desk.status_code == 200
    return csrf_from(desk.text)
