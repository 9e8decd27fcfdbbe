"""What the web app's guards keep: attempt counts (throttles) and the desk sessions' generation."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import get_kv, set_kv
from .schema import throttle_hits

SESSION_GENERATION = "desk.session_generation"
# A ceiling on stored hits per bucket: rotating keys inside one window cannot grow the table past it.
MAX_HITS_PER_BUCKET = 100_000


def count_hits(engine: Engine, bucket: str, key: str, *, since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """How many hits ``key`` has in ``bucket`` since ``since``, and the oldest of them."""
    query = sa.select(sa.func.count(), sa.func.min(throttle_hits.c.at)).where(
        throttle_hits.c.bucket == bucket, throttle_hits.c.key == key, throttle_hits.c.at >= since
    )
    with engine.connect() as conn:
        count, oldest = conn.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.timezone.utc)
    return int(count), oldest


def add_hit(engine: Engine, bucket: str, key: str, *, at: dt.datetime, prune_before: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(throttle_hits.insert().values(bucket=bucket, key=key, at=at))
        conn.execute(throttle_hits.delete().where(throttle_hits.c.bucket == bucket, throttle_hits.c.at < prune_before))
        newest_kept = (
            sa.select(throttle_hits.c.id).where(throttle_hits.c.bucket == bucket)
            .order_by(throttle_hits.c.id.desc()).offset(MAX_HITS_PER_BUCKET).limit(1).scalar_subquery()
        )
        conn.execute(throttle_hits.delete().where(throttle_hits.c.bucket == bucket, throttle_hits.c.id <= newest_kept))


def clear_hits(engine: Engine, bucket: str, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(throttle_hits.delete().where(throttle_hits.c.bucket == bucket, throttle_hits.c.key == key))


def session_generation(engine: Engine) -> int:
    with engine.connect() as conn:
        value = get_kv(conn, SESSION_GENERATION)
    return int(value) if value else 0


def bump_session_generation(engine: Engine) -> int:
    """The next generation: every desk cookie issued under an older one stops working."""
    with engine.begin() as conn:
        value = get_kv(conn, SESSION_GENERATION)
        generation = (int(value) if value else 0) + 1
        set_kv(conn, SESSION_GENERATION, str(generation))
    return generation
