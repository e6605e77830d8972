"""The local queue's writer: one thread runs every write, and the writes waiting for it share a transaction.

SQLite has one writer at a time. Letting every thread take turns (intake's
commits, each delivery thread's receives and settlements) makes them queue on a
lock and hand the interpreter lock back and forth; one thread that takes every
write waiting at that moment and commits them together does the same work in
one transaction and one flush to disk (group commit). Each write runs in a
savepoint of its own, so one that fails is undone alone and the others commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from host.errors import QueueError

logger = logging.getLogger("letsgo.local_queue")

#: Most writes committed together in one transaction.
GROUP_LIMIT = 512


class _Job:
    """One write: its work, and the future of a waiting thread, or of a coroutine on ``loop``."""

    __slots__ = ("work", "durable", "future", "loop")

    def __init__(self, work: Callable[[sqlite3.Connection], Any], durable: bool,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.work = work
        self.durable = durable
        self.loop = loop
        self.future: Future[Any] | asyncio.Future[Any] = Future() if loop is None else loop.create_future()


class Writer:
    """The thread that runs every write of one queue file in this process.

    :param connect: opens the writer's connection (on the writer's thread).
    :param on_commit: called after each commit (wakes receivers waiting for new messages).
    :param check: called before each transaction; the :class:`QueueError` it raises fails the
        group's writes (the queue file is gone, say) without touching the database.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], on_commit: Callable[[], None],
                 check: Callable[[], None] = lambda: None) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self._check = check
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="letsgo-queue-writer", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[sqlite3.Connection], Any], *, durable: bool = False) -> Future[Any]:
        """Run ``work(connection)`` in the next transaction; the future holds its result once committed.

        ``durable`` asks for a ``synchronous=FULL`` commit, flushed to disk: for
        what a client was promised. Others commit with ``synchronous=NORMAL``.
        """
        if self._closed:
            raise QueueError("the local queue is closed")
        job = _Job(work, durable)
        self._jobs.put(job)
        return job.future

    async def write(self, work: Callable[[sqlite3.Connection], Any], *, durable: bool = False) -> Any:
        """:meth:`run` for a coroutine: the event loop goes on while the write waits for its commit.

        A group's coroutines are woken with one call into their loop, not one each.
        """
        if self._closed:
            raise QueueError("the local queue is closed")
        job = _Job(work, durable, asyncio.get_running_loop())
        self._jobs.put(job)
        return await job.future

    def run(self, work: Callable[[sqlite3.Connection], Any], *, durable: bool = False) -> Any:
        """:meth:`submit` and wait: the result once committed, or what ``work`` raised."""
        return self.submit(work, durable=durable).result()

    def close(self) -> None:
        """Commit the writes already submitted, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        connection = self._connect()
        synchronous = None
        try:
            while (first := self._jobs.get()) is not None:
                group = [first]
                while len(group) < GROUP_LIMIT:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        self._jobs.put(None)  # stop once this group is committed
                        break
                    group.append(job)
                wanted = "FULL" if any(job.durable for job in group) else "NORMAL"
                if wanted != synchronous:
                    connection.execute(f"PRAGMA synchronous={wanted}")
                    synchronous = wanted
                self._commit(connection, group)
        finally:
            connection.close()
            while True:  # a write submitted while closing gets an error, not an endless wait
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _settle([job], [(False, QueueError("the local queue is closed"))])

    def _commit(self, connection: sqlite3.Connection, group: list[_Job]) -> None:
        try:
            self._check()
        except QueueError as refused:
            _settle(group, [(False, refused)] * len(group))
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job in group:
                connection.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job.work(connection)))
                except Exception as error:
                    connection.execute("ROLLBACK TO job")
                    outcomes.append((False, error))
                connection.execute("RELEASE job")
            connection.execute("COMMIT")
        except Exception as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            hint = " (another process holds the database's lock: a backup, or sqlite3 in a terminal?)" \
                if "locked" in str(error) else ""
            failure = QueueError(f"could not write to the local queue: {type(error).__name__}: {error}{hint}")
            _settle(group, [(False, failure)] * len(group))
            return
        _settle(group, outcomes)
        self._on_commit()


def _settle(jobs: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand each job its outcome: threads directly, coroutines with one call into each loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(jobs, outcomes, strict=True):
        if job.loop is not None:
            by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        elif ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
    for loop, results in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass


def _resolve(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.cancelled():  # its request went away; the write itself is done
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
