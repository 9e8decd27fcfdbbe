"""One leader per PostgreSQL store: ``pg_try_advisory_lock`` on a session held for life.

``publisher run`` does the scheduler's work (scans, publishing, digests)
only while it holds the lock. The lock belongs to a database session, so
it dies with the leader's connection, whether the process exits, is
killed -9 or loses its machine, and a standby's next try takes it.
SQLite stores have one machine by construction: there is nothing to take
(the single-service lock file guards them).
"""

from __future__ import annotations

import logging
import os
import socket

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..core.errors import StoreError

log = logging.getLogger(__name__)

LEADER_LOCK = 0x7075626C  # "publ": one key per database, so one leader per store
_APP = "publisher run"


def identity() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


class Leadership:
    """Try for the leader lock; hold it on one dedicated connection until :meth:`release`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or not self.shared

    def try_acquire(self) -> bool:
        if not self.shared or self._conn is not None:
            return True
        conn = self.engine.connect()
        try:
            # The name shows who leads, to standbys (holder()) and in pg_stat_activity.
            conn.execute(sa.text("SELECT set_config('application_name', :name, false)"), {"name": f"{_APP} {identity()}"})
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar_one())
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            conn.close()
            raise StoreError(f"leader lock: {exc}") from exc
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def alive(self) -> bool:
        """Is the session holding the lock still there? (False: leadership is lost.)"""
        if not self.shared:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
            self._conn.commit()
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def holder(self) -> str:
        """``host/pid`` of the current leader, or ``unknown``."""
        if not self.shared:
            return identity()
        with self.engine.connect() as conn:
            name = conn.execute(sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :k "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ), {"k": LEADER_LOCK}).scalar_one_or_none()
        return str(name).removeprefix(_APP).strip() if name else "unknown"

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK})
                self._conn.commit()
            except sa.exc.SQLAlchemyError as exc:  # the session is gone, and the lock with it
                log.debug("leader unlock: %s", exc)
            finally:
                self._conn.close()
                self._conn = None
