"""One service per state folder: an exclusive ``flock`` on ``<state>/publisher.lock``.

Two ``publisher run`` on one state race on every insert (a fresh store
crashed one with a UNIQUE violation) and publish the same files twice. The
lock is held for the life of the process by an open file: the kernel drops
it when the process dies, however it dies, so a crash never leaves a stale
lock behind. The file keeps the holder's pid and command for the message.
(On PostgreSQL, leader election replaces this in the scale-out design.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from .errors import PublisherError

LOCK_NAME = "publisher.lock"


class StateLocked(PublisherError):
    """Another process holds the state folder."""

    def __init__(self, path: str, pid: int | None, command: str) -> None:
        self.path = path
        self.pid = pid
        self.command = command
        holder = f"another publisher {command} (pid {pid})" if pid else "another publisher process"
        super().__init__(f"{holder} holds {path}")


class StateLock:
    def __init__(self, state: Path, command: str) -> None:
        self.path = state / LOCK_NAME
        self.command = command
        self._fd: int | None = None

    def _holder(self, fd: int) -> tuple[int | None, str]:
        try:
            words = os.pread(fd, 200, 0).decode("ascii", "replace").split()
            return int(words[0]), (words[1] if len(words) > 1 else "run")
        except (OSError, ValueError, IndexError):
            return None, "run"  # written but not yet filled in: the holder is still starting

    def acquire(self) -> StateLock:
        """Take the lock now or raise :class:`StateLocked` (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = self._holder(fd)
            os.close(fd)
            raise StateLocked(str(self.path), pid, command) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: removing it would let a third process lock a new
            # inode while a second still waits on the old one.
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
