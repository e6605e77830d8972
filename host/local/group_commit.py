"""Group commit for ``POST /``: the requests that arrive while one commit runs share the next.

Every accepted request waits for a ``synchronous=FULL`` commit, and a flush to
disk takes about as long for one message as for a hundred. So the intake's
event loop never waits for the disk itself: it hands the rows of the requests
waiting at that moment to one commit thread as one transaction, and answers
each request when its commit is done. Under load, many requests share a flush.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host.local.queue import LocalQueue

logger = logging.getLogger("letsgo.intake")

Rows = list[tuple[str, str, float]]


class GroupCommit:
    """Stores messages for coroutines of one event loop, one transaction per group of waiting requests."""

    def __init__(self, queue: LocalQueue) -> None:
        self.queue = queue
        self._waiting: list[tuple[Rows, asyncio.Future[list[str]]]] = []
        self._committing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="letsgo-commit")

    async def store(self, messages: list[tuple[str | None, str]], delay_seconds: float) -> list[str]:
        """Durably store ``(message id or None, body)`` pairs; return their ids once they are on disk.

        The commit goes on even if the awaiting request is cancelled (its
        client hung up): once handed over, a message is stored.
        """
        rows = [(message_id or str(uuid.uuid4()), body, delay_seconds) for message_id, body in messages]
        done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if not self._committing:
            self._commit_waiting()
        return await asyncio.shield(done)

    def _commit_waiting(self) -> None:
        group, self._waiting = self._waiting, []
        self._committing = True
        commit = asyncio.get_running_loop().run_in_executor(self._thread, self._write, [rows for rows, _ in group])
        commit.add_done_callback(lambda finished: self._answer(group, finished))

    def _write(self, requests: list[Rows]) -> list[BaseException | None]:
        """On the commit thread: one transaction for all; if it fails, each request alone, so one cannot sink the rest."""
        try:
            self.queue.insert([row for rows in requests for row in rows])
            return [None] * len(requests)
        except Exception:
            if len(requests) == 1:
                raise
        errors: list[BaseException | None] = []
        for rows in requests:
            try:
                self.queue.insert(rows)
                errors.append(None)
            except Exception as error:
                errors.append(error)
        return errors

    def _answer(self, group: list[tuple[Rows, asyncio.Future[list[str]]]], finished: asyncio.Future) -> None:
        self._committing = False
        failure = finished.exception()
        errors = [failure] * len(group) if failure is not None else finished.result()
        for (rows, done), error in zip(group, errors, strict=True):
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result([message_id for message_id, _, _ in rows])
        if self._waiting:
            self._commit_waiting()

    def close(self) -> None:
        """Wait for the commit in progress, then stop the commit thread."""
        self._thread.shutdown(wait=True)
