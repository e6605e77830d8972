"""Noticing that the queue's file was deleted or replaced under a running server."""

from __future__ import annotations

import logging
import os

from host.errors import QueueError

logger = logging.getLogger("letsgo.local_queue")


class FileGuard:
    """Remembers a file's identity (device and inode) when the queue opens it, and tells when it changed.

    SQLite goes on writing to a file deleted under it (``make clean`` while
    serving), so every answer would promise what the next start cannot read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity = _identity(path)
        #: Why the queue takes no more writes, or None.
        self.lost: str | None = None

    def problem(self) -> str | None:
        """Why the queue takes no more writes (its file was deleted or replaced since it was opened), or None."""
        if self.lost is None and _identity(self.path) != self._identity:
            self.lost = (
                f"the queue file {self.path} was deleted or replaced while the server ran; nothing more is"
                " accepted, since a restart would not find it: restart `letsgo-worker serve`"
            )
            logger.error("%s", self.lost)
        return self.lost

    def check(self) -> None:
        """Raise :class:`QueueError` with :meth:`problem`, if there is one."""
        if self.problem() is not None:
            raise QueueError(self.lost)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def write_hint(path: str) -> str:
    """What to say when the queue file cannot be written: serve writes it and, beside it, its -wal and -shm."""
    for what, target in (("folder", os.path.dirname(path)), ("file", path)):
        if os.path.exists(target) and not os.access(target, os.W_OK):
            return (f" (the {what} {target} is read-only: serve writes the queue and its -wal and -shm files"
                    " beside it; make it writable, or pass another --db)")
    return ""
