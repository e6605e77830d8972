"""The local queue: SQLite with SQS semantics.

Messages live in one SQLite file (``.letsgo/worker.db`` by default), so nothing
answered 201 is lost across restarts or ``kill -9``. Semantics follow SQS:

* a received message is invisible for the visibility timeout and its receive
  count goes up by one; each receive hands out a new receipt handle, and only
  the latest one can delete or change the message (a handler that outlived the
  visibility timeout settles nothing: its message was, or will be, delivered again);
* ``delay_seconds`` holds a new message back;
* a failed message becomes visible again after an exponential back-off driven
  by its receive count, with jitter: ``min(max, base * 2**(count - 1))``, of
  which a random half is waited ("equal jitter"), so retries spread out but
  never come early;
* after the maximum receive count, or at once when it is rejected (it can never
  succeed), a message moves to the dead-letter table with its last error and
  the reason, where ``dlq list`` shows it and ``dlq redrive`` sends it back.

Durability: the database is in WAL mode. A commit holding new messages is
``synchronous=FULL``: a 201 is a promise, so it is flushed to disk and survives
a power cut. Commits of receives and settlements alone are
``synchronous=NORMAL``, which survives a killed process but may lose its last
commits on a power cut or OS crash; what such a loss undoes is a receive or a
deletion, so the message is delivered again: at least once, as SQS promises.
Every write goes through one writer thread (:mod:`host.local.writer`), which
commits the writes waiting for it together.

Several processes may share the file (``serve --workers N``): SQLite's lock
serialises their writers.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from host.errors import QueueError
from host.local.dead_letters import claim_reason, move_to_dead_letters, redrive_rows
from host.local.fifo import Row, add_fifo_attributes, claimable, inserter
from host.local.file_guard import FileGuard, write_hint
from host.local.schema import DeadLetter, prepare, save_tick, sqs_record
from host.local.settlement import apply_decisions, decide, log_settled, receipt_seq
from host.local.writer import Writer
from host.services.enqueue import MAX_LOCAL_BODY_BYTES, check_delay

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.local_queue")

T = TypeVar("T")

#: A receive that waits looks at the database at least this often, so that messages
#: written by another process (the intake of ``serve --workers``, ``dlq redrive``) are noticed.
POLL_SECONDS = 0.05

#: How long a write waits for another process's lock (a backup tool, ``sqlite3`` in a terminal)
#: before it fails, and ``POST /`` answers 503 rather than keeping its client waiting.
LOCK_WAIT_SECONDS = 5.0

_COLUMNS = "seq, id, body, sent_at, receive_count, first_received_at, last_error, group_id, deduplication_id"


class LocalQueue:
    """A durable queue in one SQLite file, with SQS semantics; also a :class:`host.local.delivery.MessageSource`.

    Thread-safe: any thread may enqueue, receive and settle. ``claimer`` names
    this queue's receives in their receipt handles, so that the claims of one
    process that died can be released at once (:meth:`release_claims_of`).
    FIFO groups and deduplication ids: :mod:`host.local.fifo`; a receive hands
    out at most ``group_batch_limit`` messages of one group (one batch).
    """

    max_body_bytes = MAX_LOCAL_BODY_BYTES  #: bodies are inline: ``ctx.enqueue`` takes what SQS carries through S3

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        visibility_timeout: float = 360,
        max_receive_count: int = 5,
        backoff_base: float = 2,
        backoff_max: float = 300,
        create: bool = True,
        claimer: str | None = None,
        group_batch_limit: int = 10,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.claimer = claimer or secrets.token_hex(4)
        self.group_batch_limit = group_batch_limit
        if not create and not os.path.isfile(self.path):
            raise QueueError(
                f"no local queue database at {self.path}; run `letsgo-worker serve` first or pass --db PATH"
            )
        if create:
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            except OSError as error:
                raise QueueError(f"cannot create the folder of the local queue {self.path}: {error.strerror or error}") from None
        self._prepare()
        self._claims = count(1)
        #: Receipt handles of the suspects claimed (see :meth:`is_suspect`).
        self._suspect_handles: set[str] = set()
        self._arrivals = threading.Condition()
        self._generation = 0
        self._guard = FileGuard(self.path)
        self._writer = Writer(self._connect, self._wake, self._guard.check)
        self._read_lock = threading.Lock()
        self._reader = self._connect()
        #: Told ``(message id, body, receive count, last error)`` of each message dead-lettered when claimed
        #: (received the maximum number of times without settling); see :mod:`host.core.final_failure`.
        self.on_claim_dead_letter: Callable[[str, str, int, str | None], None] | None = None
        self._pruned_at = 0

    @classmethod
    def from_settings(cls, settings: Settings, path: str | None = None, **options: Any) -> LocalQueue:
        """A queue with the visibility timeout, maximum receive count and back-off of ``settings``."""
        return cls(
            path or settings.db_path,
            visibility_timeout=settings.visibility_timeout,
            max_receive_count=settings.max_receive_count,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            group_batch_limit=settings.batch_size,
            **options,
        )

    # -- connections -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT_SECONDS)
        if sys.platform == "darwin":
            # macOS's fsync does not reach the disk's platter or flash; F_FULLFSYNC does.
            connection.execute("PRAGMA fullfsync=ON")
        return connection

    def _prepare(self) -> None:
        try:
            connection = self._connect()
            try:
                prepare(connection, self.path)
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise QueueError(f"cannot open the local queue database {self.path}: {error}{write_hint(self.path)}") from None

    def close(self) -> None:
        """Commit the writes already submitted and close the database."""
        self._writer.close()
        with self._read_lock:
            self._reader.close()
        self._wake()

    def __enter__(self) -> LocalQueue:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def file_problem(self) -> str | None:
        """Why the queue takes no more writes (its file was deleted or replaced while open), or None."""
        return self._guard.problem()

    def transaction(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run ``work`` in a committed transaction of the writer; ``durable`` flushes the commit to disk."""
        return self._writer.run(work, durable=durable)

    _write = transaction  # the name the queue's tests use

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self._read_lock:
            return self._reader.execute(sql, parameters).fetchall()

    def _wake(self) -> None:
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()

    # -- sending ---------------------------------------------------------------

    def enqueue(self, body: str, delay_seconds: float = 0, message_id: str | None = None) -> str:
        """Durably store one message; return its id once it is on disk."""
        return self.enqueue_many([(message_id, body)], delay_seconds)[0]

    def enqueue_many(self, messages: Iterable[tuple[str | None, str]], delay_seconds: float = 0) -> list[str]:
        """Durably store ``(message_id or None, body)`` pairs in one transaction; return their ids.

        A missing id is replaced by a new UUID. The messages become visible
        after ``delay_seconds`` (0 to 900).
        """
        delay = check_delay(delay_seconds)
        return self.insert([(message_id or str(uuid.uuid4()), body, delay) for message_id, body in messages])

    def send(self, body: str, delay_seconds: float, *, group_id: str | None = None,
             deduplication_id: str | None = None) -> str:
        """Enqueue one checked body (FIFO group and deduplication id optional): the worker's enqueuer under ``serve``."""
        row = Row(str(uuid.uuid4()), body, check_delay(delay_seconds), group_id, deduplication_id)
        return self.insert([row])[0]

    def insert(self, rows: Sequence[tuple]) -> list[str]:
        """Durably store :class:`host.local.fifo.Row` tuples; return their ids once they are on disk.

        A row whose deduplication id was sent in the last 5 minutes is not stored; its id is the first message's.
        """
        return self._writer.submit(inserter(rows), durable=True).result()

    async def store(self, messages: Iterable[tuple], delay_seconds: float = 0) -> list[str]:
        """:meth:`enqueue_many` for a coroutine: the event loop goes on while the messages reach the disk.

        ``messages`` are ``(message id or None, body)`` pairs, optionally followed
        by a FIFO group id and a deduplication id. The requests that arrive while
        one commit runs share the next one (the writer's group commit), so under
        load many requests share one flush.
        """
        rows = [(message_id or str(uuid.uuid4()), body, delay_seconds, *fifo) for message_id, body, *fifo in messages]
        return await self._writer.write(inserter(rows), durable=True)

    # -- receiving -------------------------------------------------------------

    def receive(self, max_messages: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Claim up to ``max_messages`` visible messages as SQS records, waiting up to ``wait_seconds``.

        Each claimed message is invisible for the visibility timeout and its
        receive count goes up by one. A visible message that was already
        received the maximum number of times without being settled (its
        handler hung or the process died each time) is dead-lettered instead.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._arrivals:
                generation = self._generation
            records = self._claim(max_messages)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            with self._arrivals:
                self._arrivals.wait_for(lambda: self._generation != generation, timeout=min(remaining, POLL_SECONDS))

    def _claim(self, limit: int) -> list[dict[str, Any]]:
        now = time.time()
        # A look without the write lock first: an idle poll writes nothing.
        if not self._read("SELECT 1 FROM messages WHERE visible_at <= ? LIMIT 1", (now,)):
            return []
        handle_suffix = f"{self.claimer}-{next(self._claims)}"
        dead_lettered: list[tuple[str, str, int, str | None]] = []

        def claim(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            # A message whose last receive ended in a crash is claimed alone: if it is what brought
            # the process down, it takes no healthy message down with it the next time.
            suspect = connection.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE suspect = 1 AND visible_at <= ? ORDER BY seq LIMIT 1", (now,)
            ).fetchall()
            rows = suspect or claimable(connection, _COLUMNS, now, limit, self.group_batch_limit)
            claimed = []
            for seq, message_id, body, sent_at, receive_count, first_received_at, last_error, group, dedup in rows:
                if receive_count >= self.max_receive_count:
                    reason = claim_reason(receive_count, self.visibility_timeout)
                    move_to_dead_letters(connection, seq, reason, last_error, now)
                    logger.warning("message %s dead-lettered: %s", message_id, reason)
                    dead_lettered.append((message_id, body, receive_count, last_error))
                    continue
                handle = f"{seq}.{handle_suffix}"
                connection.execute(
                    "UPDATE messages SET receive_count = receive_count + 1, receipt_handle = ?, visible_at = ?,"
                    " first_received_at = COALESCE(first_received_at, ?), last_received_at = ? WHERE seq = ?",
                    (handle, now + self.visibility_timeout, now, now, seq),
                )
                record = sqs_record(message_id, handle, body, receive_count + 1, sent_at, first_received_at or now)
                claimed.append(add_fifo_attributes(record, seq, group, dedup))
                if suspect:
                    self._suspect_handles.add(handle)
            return claimed

        claimed = self.transaction(claim)
        listener = self.on_claim_dead_letter
        for letter in dead_lettered if listener is not None else ():
            try:
                listener(*letter)
            except Exception:  # telling someone must not stop delivery
                logger.exception("the dead-letter listener failed for message %s", letter[0])
        return claimed

    def is_suspect(self, record: dict[str, Any]) -> bool:
        """Whether ``record``'s message was in flight when a process handling it crashed.

        Such a message comes alone from :meth:`receive`, and delivery runs it
        with nothing else in flight, so that a poison message (one that kills
        its process) cannot take healthy ones down with it.
        """
        return record.get("receiptHandle") in self._suspect_handles

    # -- settling --------------------------------------------------------------

    def settle(self, records: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Apply each outcome: delete the succeeded, back off the failed, dead-letter the rejected.

        A failed message that has reached the maximum receive count is
        dead-lettered with its last error. Records whose receipt handle is no
        longer the latest (the visibility timeout ran out and the message was
        received again) are left alone.
        """
        decisions = [
            decide(record, outcome, max_receive_count=self.max_receive_count, backoff_base=self.backoff_base,
                   backoff_max=self.backoff_max)
            for record, outcome in zip(records, outcomes, strict=True)
        ]

        now = time.time()
        prune = now - self._pruned_at > 600  # the outcomes per minute are pruned every ten minutes, not at each settle
        if prune:
            self._pruned_at = now
        stale = self.transaction(lambda connection: apply_decisions(connection, decisions, now, prune=prune))
        self._suspect_handles.difference_update(record.get("receiptHandle") for record in records)
        log_settled(decisions, stale, self.visibility_timeout)

    def release(self, records: list[dict[str, Any]]) -> int:
        """Make claimed records visible at once, keeping their receive counts (like visibility timeout 0)."""
        return self.change_visibility(records, 0)

    def change_visibility(self, records: list[dict[str, Any]], seconds: float) -> int:
        """Make claimed records visible again after ``seconds``; return how many were still claimed.

        As SQS's ``ChangeMessageVisibility``: with ``seconds > 0`` (the heartbeat) the
        receipt handles stay valid; 0 releases the records (visible now, no longer in flight).
        """
        handles = [record.get("receiptHandle") for record in records]

        def change(connection: sqlite3.Connection) -> int:
            visible_at = time.time() + seconds
            return sum(
                connection.execute(
                    "UPDATE messages SET visible_at = ?, receipt_handle = CASE WHEN ? > 0 THEN receipt_handle END"
                    " WHERE seq = ? AND receipt_handle = ?",
                    (visible_at, seconds, receipt_seq(handle), handle),
                ).rowcount
                for handle in handles
            )

        return self.transaction(change)

    def shift_times(self, seconds: float) -> int:
        """Move every message's visibility by ``seconds`` (after a wall-clock jump, see :mod:`host.local.clock`)."""
        return self.transaction(
            lambda connection: connection.execute("UPDATE messages SET visible_at = visible_at + ?", (seconds,)).rowcount
        )

    def reclaim_in_flight(self) -> int:
        """Make every claimed message visible now; return how many.

        Only for a server that knows it is the database's sole user (it holds
        the serve lock): whatever is still claimed was claimed by a server that
        has stopped, so waiting for its visibility timeout would only delay it.
        Graceful stops release what they claimed, so these were in flight when a
        server crashed: they are marked suspects (see :meth:`is_suspect`).
        """
        return self._release_where("receipt_handle IS NOT NULL", (), suspect=True)

    def release_claims_of(self, claimer: str, *, crashed: bool = True) -> int:
        """Make the messages claimed by the queue named ``claimer`` visible now (marked suspects if it ``crashed``)."""
        return self._release_where("receipt_handle LIKE ?", (f"%.{claimer}-%",), suspect=crashed)

    def _release_where(self, condition: str, parameters: tuple[Any, ...], *, suspect: bool) -> int:
        def release(connection: sqlite3.Connection) -> int:
            return connection.execute(
                f"UPDATE messages SET visible_at = ?, receipt_handle = NULL, suspect = MAX(suspect, ?) WHERE {condition}",
                (time.time(), int(suspect), *parameters),
            ).rowcount

        return self.transaction(release)

    # -- the dead-letter queue -------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered message, oldest first."""
        rows = self._read(
            "SELECT id, body, receive_count, reason, last_error, sent_at, first_received_at, dead_lettered_at"
            " FROM dead_letters ORDER BY seq"
        )
        return [DeadLetter(*row) for row in rows]

    def redrive(self, ids: Sequence[str] | None = None) -> int:
        """Move dead-lettered messages back to the queue, visible now with a fresh receive count.

        ``ids=None`` redrives every one. An id that is not in the dead-letter
        queue raises :class:`QueueError` naming it, and nothing moves.
        """

        return self.transaction(lambda connection: redrive_rows(connection, ids), durable=True)

    def purge_dead_letters(self) -> int:
        """Delete every dead-lettered message; return how many."""
        return self.transaction(lambda connection: connection.execute("DELETE FROM dead_letters").rowcount, durable=True)

    # -- inspection ------------------------------------------------------------

    def check_integrity(self) -> None:
        """Read every page once (SQLite's ``quick_check``); raise :class:`QueueError` saying what is damaged."""
        problems = [row[0] for row in self._read("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise QueueError(f"database disk image is malformed: {'; '.join(problems[:3])}")

    def counts(self) -> dict[str, int]:
        """How many messages are visible, in flight, waiting (delayed or backing off) and dead-lettered."""
        now = time.time()
        (visible, in_flight, waiting), = self._read(
            "SELECT COALESCE(SUM(visible_at <= ?), 0),"
            " COALESCE(SUM(visible_at > ? AND receipt_handle IS NOT NULL), 0),"
            " COALESCE(SUM(visible_at > ? AND receipt_handle IS NULL), 0) FROM messages",
            (now, now, now),
        )
        (dead,), = self._read("SELECT COUNT(*) FROM dead_letters")
        return {"visible": visible, "in_flight": in_flight, "waiting": waiting, "dead_letters": dead}

    def record_tick(self, name: str, fired_at: float, outcome: str, detail: str | None) -> None:
        """Keep the last tick of schedule ``name`` ("" is ``LETSGO_WORKER_SCHEDULE``) in the ``ticks`` table."""
        self._write(lambda connection: save_tick(connection, name, fired_at, outcome, detail))
