"""The local queue's writer: one thread runs every write, and waiting writes share a commit.

Group commit is what makes ``POST /`` durable and fast at once: each request
waits for an fsync'd commit, but the requests that arrive during one commit are
written together by the next. Used by :class:`host.local.queue.LocalQueue`.
"""

from __future__ import annotations

import _thread
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from host.errors import QueueError

logger = logging.getLogger("letsgo.local_queue")

#: Most writes committed together in one transaction.
_GROUP_LIMIT = 512


class WriteJob:
    """One write waiting for the writer thread: a function of the connection, or rows to insert."""

    __slots__ = ("run", "inserts", "wakes", "done", "then", "ok", "value")

    def __init__(
        self,
        run: Callable[[sqlite3.Connection], Any] | None = None,
        *,
        inserts: list[tuple[str, str, float]] | None = None,
        wakes: bool = False,
        then: Callable[[WriteJob], None] | None = None,
    ) -> None:
        self.run = run
        self.inserts = inserts  # (message id, body, delay seconds)
        self.wakes = wakes  # makes messages visible: wake waiting receivers once committed
        self.then = then  # called on the writer thread once settled, instead of waking a waiting thread
        if then is None:
            # A plain lock, held until the writer has settled the job: cheaper than a Future's condition.
            self.done = _thread.allocate_lock()
            self.done.acquire()
        self.ok = False
        self.value: Any = None

    def settled(self) -> None:
        """Hand the result over: wake the thread waiting for it, or call ``then``."""
        if self.then is None:
            self.done.release()
            return
        try:
            self.then(self)
        except Exception:
            logger.exception("a callback of the local queue failed")


#: Rows written by one INSERT statement (4 parameters each, well under SQLite's limit of 999).
ROWS_PER_INSERT = 128


def _insert_rows(connection: sqlite3.Connection, jobs: Sequence[WriteJob]) -> None:
    # One multi-row INSERT rather than executemany: executemany steps once per row, and every
    # step gives up the GIL, which this thread, the one every request waits for, must then win back.
    now = time.time()
    values = [
        value
        for job in jobs
        for message_id, body, delay in job.inserts
        for value in (message_id, body, now, now + delay)
    ]
    for start in range(0, len(values), 4 * ROWS_PER_INSERT):
        chunk = values[start : start + 4 * ROWS_PER_INSERT]
        connection.execute(_insert_statement(len(chunk) // 4), chunk)


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def _insert_statement(rows: int) -> str:
    return "INSERT INTO messages (id, body, sent_at, visible_at) VALUES " + ",".join(["(?,?,?,?)"] * rows)


class WriteJobFailed(Exception):
    """A job raised while the group ran without savepoints: run the group again, each job isolated."""


class GroupCommitWriter:
    """One thread that runs every write; the writes waiting for it share one transaction (group commit).

    A group first runs as one plain transaction, with the rows of consecutive
    inserts written by a single statement; only if some job raises is the
    group run again with a savepoint per job, so that a failing write does not
    undo the others. Each SQLite call lets other threads take the GIL and this
    thread then waits to get it back, so fewer statements per group keep the
    writer, which every request waits for, from falling behind under load.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], on_commit: Callable[[], None]) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self._jobs: queue.SimpleQueue[WriteJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="letsgo-queue-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, run: Callable[[sqlite3.Connection], Any] | None = None, **options: Any) -> Any:
        """Run ``run(connection)`` (or insert ``inserts=[(id, body, delay)]``) in a committed transaction.

        Returns the result once it is on disk; raises what the job raised, or
        :class:`QueueError` when the transaction could not be committed.
        """
        if self._closed:
            raise QueueError("the local queue is closed")
        job = WriteJob(run, **options)
        self._jobs.put(job)
        job.done.acquire()
        if job.ok:
            return job.value
        raise job.value

    def submit_then(self, then: Callable[[WriteJob], None], run: Callable[[sqlite3.Connection], Any] | None = None,
                    **options: Any) -> None:
        """Like :meth:`submit` without waiting: ``then(job)`` is called on this thread once it is settled."""
        if self._closed:
            raise QueueError("the local queue is closed")
        self._jobs.put(WriteJob(run, then=then, **options))

    def close(self) -> None:
        """Finish the writes already submitted, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        connection = self._connect()
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                jobs = [first]
                stop = False
                while len(jobs) < _GROUP_LIMIT:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    jobs.append(job)
                self._commit(connection, jobs)
                if stop:
                    return
        finally:
            connection.close()
            # A job submitted while the queue was closing gets an error, not an endless wait.
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.value = QueueError("the local queue is closed")
                    job.settled()

    def _commit(self, connection: sqlite3.Connection, jobs: list[WriteJob]) -> None:
        try:
            try:
                if not self._insert_alone(connection, jobs):
                    self._run_group(connection, jobs)
                    connection.execute("COMMIT")
            except WriteJobFailed:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                self._run_isolated(connection, jobs)
                connection.execute("COMMIT")
        except Exception as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            failure = QueueError(f"could not write to the local queue: {type(error).__name__}: {error}")
            for job in jobs:
                job.ok, job.value = False, failure
                job.settled()
            return
        wake = False
        for job in jobs:
            wake = wake or job.wakes
            job.settled()
        if wake:
            self._on_commit()

    @staticmethod
    def _insert_alone(connection: sqlite3.Connection, jobs: list[WriteJob]) -> bool:
        """Commit a group of nothing but a few inserts as one statement; False for any other group.

        A single statement outside a transaction is its own transaction, as
        durable as any: one SQLite call instead of BEGIN, INSERT and COMMIT.
        """
        if any(job.inserts is None for job in jobs) or sum(len(job.inserts) for job in jobs) > ROWS_PER_INSERT:
            return False
        try:
            _insert_rows(connection, jobs)
        except Exception as error:
            raise WriteJobFailed from error
        for job in jobs:
            job.ok = True
        return True

    @staticmethod
    def _run_group(connection: sqlite3.Connection, jobs: list[WriteJob]) -> None:
        connection.execute("BEGIN IMMEDIATE")
        start = 0
        while start < len(jobs):
            if jobs[start].inserts is not None:
                end = start
                while end < len(jobs) and jobs[end].inserts is not None:
                    end += 1
                try:
                    _insert_rows(connection, jobs[start:end])
                except Exception as error:
                    raise WriteJobFailed from error
                for job in jobs[start:end]:
                    job.ok = True
                start = end
                continue
            job = jobs[start]
            try:
                job.value = job.run(connection)
            except Exception as error:
                raise WriteJobFailed from error
            job.ok = True
            start += 1

    @staticmethod
    def _run_isolated(connection: sqlite3.Connection, jobs: list[WriteJob]) -> None:
        connection.execute("BEGIN IMMEDIATE")
        for job in jobs:
            connection.execute("SAVEPOINT job")
            try:
                job.value = job.run(connection) if job.inserts is None else _insert_rows(connection, [job])
                job.ok = True
                connection.execute("RELEASE job")
            except Exception as error:
                connection.execute("ROLLBACK TO job")
                connection.execute("RELEASE job")
                job.ok, job.value = False, error
