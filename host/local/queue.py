"""The local queue: SQLite with SQS semantics, and the ``letsgo-worker dlq`` commands.

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

Durability: the database is in WAL mode with ``synchronous=FULL``. WAL with
``NORMAL`` would survive a killed process but could lose the last commits on a
power cut or OS crash, and a 201 is a promise, so every commit is flushed to
disk. To keep that affordable, one writer thread runs every write and commits
all the writes waiting for it in a single transaction (group commit): under
load, many requests share one flush.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from host.errors import QueueError
from host.local.delivery import backoff_seconds
from host.local.writer import ROWS_PER_INSERT, GroupCommitWriter, WriteJob
from host.services.enqueue import MAX_DELAY_SECONDS  # SQS's limit, 15 minutes

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.local_queue")

#: ``eventSource`` and ``eventSourceARN`` of records delivered by the local queue.
EVENT_SOURCE = "letsgo:local"
EVENT_SOURCE_ARN = "arn:letsgo:local:queue"

#: The dead-letter reason of a rejected message; its ``last_error`` says what is wrong with it.
REJECTED_REASON = "rejected: the message can never be handled, so it was not retried"

#: Schema version stored in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

#: A receive that waits re-checks the database at least this often, so that
#: messages written by another process (``dlq redrive``) are noticed.
_POLL_SECONDS = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    sent_at           REAL    NOT NULL,
    visible_at        REAL    NOT NULL,
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt_handle    TEXT,
    last_error        TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    sent_at           REAL    NOT NULL,
    receive_count     INTEGER NOT NULL,
    first_received_at REAL,
    dead_lettered_at  REAL    NOT NULL,
    reason            TEXT    NOT NULL,
    last_error        TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_id ON dead_letters (id);
"""


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter table."""

    id: str
    body: str
    receive_count: int
    reason: str
    last_error: str | None
    sent_at: float
    first_received_at: float | None
    dead_lettered_at: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with times as ISO-8601 UTC instants."""
        data = asdict(self)
        for key in ("sent_at", "first_received_at", "dead_lettered_at"):
            data[key] = iso_time(data[key])
        return data


_VERSION_BITS_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS_SET = (0x4000 << 64) | (0x8000 << 48)


def new_message_id() -> str:
    """A new message id: a random (version 4) UUID, like SQS's.

    Drawn from :mod:`random` rather than ``uuid.uuid4()``: an id needs to be
    unique, not unpredictable, and ``os.urandom`` gives up the GIL on every
    call, which under load makes each request wait to get it back.
    """
    digits = f"{random.getrandbits(128) & _VERSION_BITS_CLEAR | _VERSION_BITS_SET:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_json_rows: bool | None = None


def _visible_rows(connection: sqlite3.Connection, now: float, limit: int) -> list[tuple]:
    """The oldest visible messages: ``(seq, id, body, sent_at, receive_count, first_received_at, last_error)``.

    Read as one JSON array in one row where SQLite has its JSON functions:
    reading row by row steps, and gives up the GIL, once per row, on the thread
    that every request waits for.
    """
    global _json_rows
    columns = "seq, id, body, sent_at, receive_count, first_received_at, last_error"
    query = f"SELECT {columns} FROM messages WHERE visible_at <= ? ORDER BY seq LIMIT ?"
    if _json_rows is not False:
        try:
            (packed,), = connection.execute(
                f"SELECT json_group_array(json_array({columns})) FROM ({query})", (now, limit)
            ).fetchall()
        except sqlite3.OperationalError as error:
            if "no such function" not in str(error):
                raise
            _json_rows = False  # an SQLite built without its JSON functions
        else:
            _json_rows = True
            return sorted(tuple(row) for row in json.loads(packed))
    return connection.execute(query, (now, limit)).fetchall()


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """``values`` in slices of at most ``size``: SQLite limits the parameters of one statement."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _receipt_seq(receipt_handle: Any) -> int | None:
    try:
        return int(str(receipt_handle).split(".", 1)[0])
    except ValueError:
        return None


class LocalQueue:
    """A durable queue in one SQLite file, with SQS semantics; also a :class:`host.local.delivery.MessageSource`.

    Thread-safe: any thread may enqueue, receive and settle.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        visibility_timeout: float = 360,
        max_receive_count: int = 5,
        backoff_base: float = 2,
        backoff_max: float = 300,
        create: bool = True,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        if not create and not os.path.isfile(self.path):
            raise QueueError(
                f"no local queue database at {self.path}; run `letsgo-worker serve` first or pass --db PATH"
            )
        if create:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._prepare()
        self._arrivals = threading.Condition()
        self._generation = 0
        self._reader_lock = threading.Lock()
        self._reader = self._connect()
        self._writer = GroupCommitWriter(self._connect, self._wake)

    @classmethod
    def from_settings(cls, settings: Settings, path: str | None = None, *, create: bool = True) -> LocalQueue:
        """A queue with the visibility timeout, maximum receive count and back-off of ``settings``."""
        return cls(
            path or settings.db_path,
            visibility_timeout=settings.visibility_timeout,
            max_receive_count=settings.max_receive_count,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            create=create,
        )

    # -- connections -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            # A statement cache large enough for every size of multi-row INSERT and the rest.
            self.path, isolation_level=None, check_same_thread=False, timeout=30, cached_statements=2 * ROWS_PER_INSERT
        )
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=30000")
        return connection

    def _prepare(self) -> None:
        try:
            connection = self._connect()
            try:
                mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    logger.warning("the local queue %s is in %s journal mode, not WAL", self.path, mode)
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise QueueError(
                        f"{self.path} was written by a newer letsgo-worker (schema {version}); upgrade letsgo-worker"
                    )
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise QueueError(f"cannot open the local queue database {self.path}: {error}") from None

    def close(self) -> None:
        """Finish pending writes and close the database."""
        self._writer.close()
        with self._reader_lock:
            self._reader.close()
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()

    def __enter__(self) -> LocalQueue:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self._reader_lock:
            return self._reader.execute(sql, parameters).fetchall()

    # -- sending ---------------------------------------------------------------

    def enqueue(self, body: str, delay_seconds: float = 0, message_id: str | None = None) -> str:
        """Durably store one message; return its id once it is on disk."""
        return self.enqueue_many([(message_id, body)], delay_seconds)[0]

    def enqueue_many(self, messages: Iterable[tuple[str | None, str]], delay_seconds: float = 0) -> list[str]:
        """Durably store ``(message_id or None, body)`` pairs in one transaction; return their ids.

        A missing id is replaced by a new UUID. The messages become visible
        after ``delay_seconds`` (0 to 900).
        """
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise QueueError(f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {delay_seconds!r}")
        rows = [(message_id or new_message_id(), body, delay_seconds) for message_id, body in messages]
        self._writer.submit(inserts=rows, wakes=True)
        return [message_id for message_id, _, _ in rows]

    def enqueue_many_then(
        self,
        messages: Iterable[tuple[str | None, str]],
        delay_seconds: float,
        then: Callable[[list[str] | None, BaseException | None], None],
    ) -> None:
        """Store like :meth:`enqueue_many` without waiting for the disk.

        Once the messages are on disk ``then(ids, None)`` is called, or
        ``then(None, error)`` if they could not be stored; it runs on the
        queue's writer thread, so it must only hand the result on. A server
        answering many requests thus needs no thread parked per request.
        """
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise QueueError(f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS}, got {delay_seconds!r}")
        rows = [(message_id or new_message_id(), body, delay_seconds) for message_id, body in messages]
        ids = [message_id for message_id, _, _ in rows]

        def settled(job: WriteJob) -> None:
            if job.ok:
                then(ids, None)
            else:
                then(None, job.value)

        self._writer.submit_then(settled, inserts=rows, wakes=True)

    def _wake(self) -> None:
        with self._arrivals:
            self._generation += 1
            self._arrivals.notify_all()

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
            records, next_visible_at = self._writer.submit(lambda connection: self._claim(connection, max_messages))
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            pause = min(remaining, _POLL_SECONDS)
            if next_visible_at is not None:
                pause = min(pause, max(0.0, next_visible_at - time.time()))
            with self._arrivals:
                self._arrivals.wait_for(lambda: self._generation != generation, timeout=pause)

    def _claim(self, connection: sqlite3.Connection, limit: int) -> tuple[list[dict[str, Any]], float | None]:
        now = time.time()
        token = secrets.token_hex(8)
        claimed: list[dict[str, Any]] = []
        claimed_seqs: list[int] = []
        seen: set[int] = set()
        while len(claimed) < limit:
            wanted = limit - len(claimed) + len(seen)
            visible = _visible_rows(connection, now, wanted)
            rows = [row for row in visible if row[0] not in seen]
            if not rows:
                break
            # Fewer than asked for: there are no more, so do not look again.
            exhausted = len(visible) < wanted
            for seq, message_id, body, sent_at, receive_count, first_received_at, last_error in rows:
                seen.add(seq)
                if len(claimed) >= limit:
                    break
                if receive_count >= self.max_receive_count:
                    reason = (
                        f"received {receive_count} times (the maximum, LETSGO_WORKER_MAX_RECEIVE_COUNT) without"
                        f" completing: the visibility timeout ({self.visibility_timeout:g}s) ran out or the"
                        " worker stopped while it was being handled"
                    )
                    self._move_to_dead_letters(connection, seq, reason, last_error, now)
                    logger.warning("message %s dead-lettered: %s", message_id, reason)
                    continue
                first_received_at = first_received_at or now
                claimed.append(
                    _record(message_id, f"{seq}.{token}", body, receive_count + 1, sent_at, first_received_at)
                )
                claimed_seqs.append(seq)
            if exhausted:
                break
        # One statement for the whole claim: each SQLite call lets other threads take the GIL.
        for chunk in _chunks(claimed_seqs):
            connection.execute(
                "UPDATE messages SET receive_count = receive_count + 1, receipt_handle = seq || '.' || ?,"
                " visible_at = ?, first_received_at = COALESCE(first_received_at, ?)"
                f" WHERE seq IN ({','.join('?' * len(chunk))})",
                (token, now + self.visibility_timeout, now, *chunk),
            )
        next_visible_at = None
        if not claimed:
            next_visible_at = connection.execute("SELECT MIN(visible_at) FROM messages").fetchone()[0]
        return claimed, next_visible_at

    # -- settling --------------------------------------------------------------

    def settle(self, records: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Apply each outcome: delete the succeeded, back off the failed, dead-letter the rejected.

        A failed message that has reached the maximum receive count is
        dead-lettered with its last error. Records whose receipt handle is no
        longer the latest (the visibility timeout ran out and the message was
        received again) are left alone.
        """
        from host.core.dispatch import Status

        decisions = []
        for record, outcome in zip(records, outcomes, strict=True):
            receive_count = int(record["attributes"]["ApproximateReceiveCount"])
            error = outcome.reason or (f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None)
            if outcome.status is Status.SUCCEEDED:
                decisions.append(("delete", record, None, None))
            elif outcome.status is Status.REJECTED:
                decisions.append(("dead-letter", record, REJECTED_REASON, error))
            elif receive_count >= self.max_receive_count:
                reason = (
                    f"failed on each of its {receive_count} receives"
                    f" (the maximum, LETSGO_WORKER_MAX_RECEIVE_COUNT={self.max_receive_count})"
                )
                decisions.append(("dead-letter", record, reason, error))
            else:
                delay = backoff_seconds(receive_count, self.backoff_base, self.backoff_max)
                decisions.append(("retry", record, delay, error))

        def apply(connection: sqlite3.Connection) -> list[str]:
            now = time.time()
            stale = []
            deletes = [record for action, record, _, _ in decisions if action == "delete"]
            if deletes:
                stale += self._delete_claimed(connection, deletes)
            for action, record, detail, error in decisions:
                if action == "delete":
                    continue
                seq, handle = _receipt_seq(record.get("receiptHandle")), record.get("receiptHandle")
                if action == "retry":
                    changed = connection.execute(
                        "UPDATE messages SET visible_at = ?, receipt_handle = NULL, last_error = ?"
                        " WHERE seq = ? AND receipt_handle = ?",
                        (now + detail, error, seq, handle),
                    ).rowcount
                else:
                    changed = self._move_to_dead_letters(connection, seq, detail, error, now, handle)
                if not changed:
                    stale.append(record["messageId"])
            return stale

        stale = self._writer.submit(apply)
        for action, record, detail, error in decisions:
            message_id = record["messageId"]
            if message_id in stale:
                continue
            count = record["attributes"]["ApproximateReceiveCount"]
            if action == "retry":
                logger.info("message %s failed on receive %s; visible again in %.1fs: %s", message_id, count, detail, error)
            elif action == "dead-letter":
                # A rejection was already logged by the batch processor; a spent retry budget was not.
                log = logger.info if detail == REJECTED_REASON else logger.warning
                log("message %s moved to the dead-letter queue: %s; last error: %s", message_id, detail, error)
        for message_id in stale:
            logger.warning(
                "message %s was handled after its visibility timeout (%gs) ran out; it is delivered again"
                " (raise LETSGO_WORKER_VISIBILITY_TIMEOUT if handlers need longer)",
                message_id, self.visibility_timeout,
            )

    @staticmethod
    def _delete_claimed(connection: sqlite3.Connection, records: list[dict[str, Any]]) -> list[str]:
        """Delete the messages whose receipt handles are still the latest; return the message ids of the others."""
        handles = {}
        for record in records:
            seq = _receipt_seq(record.get("receiptHandle"))
            if seq is not None:
                handles[seq] = record.get("receiptHandle")
        deleted = 0
        for chunk in _chunks(list(handles)):
            # The handle starts with its message's seq, so matching both lists matches each pair.
            placeholders = ",".join("?" * len(chunk))
            deleted += connection.execute(
                f"DELETE FROM messages WHERE seq IN ({placeholders}) AND receipt_handle IN ({placeholders})",
                [*chunk, *(handles[seq] for seq in chunk)],
            ).rowcount
        if deleted == len(handles) == len(records):
            return []
        # Some were received again after their visibility timeout: those still there have newer handles.
        # (One already gone was settled through its newer handle: it will not be delivered again.)
        newer = set()
        for chunk in _chunks(list(handles)):
            placeholders = ",".join("?" * len(chunk))
            newer.update(seq for (seq,) in connection.execute(f"SELECT seq FROM messages WHERE seq IN ({placeholders})", chunk))
        return [
            record["messageId"] for record in records
            if _receipt_seq(record.get("receiptHandle")) is None or _receipt_seq(record.get("receiptHandle")) in newer
        ]

    def release(self, records: list[dict[str, Any]]) -> int:
        """Make claimed records visible at once, keeping their receive counts (like visibility timeout 0)."""
        return self.change_visibility(records, 0)

    def change_visibility(self, records: list[dict[str, Any]], seconds: float) -> int:
        """Make claimed records visible again after ``seconds``; return how many were still claimed."""
        handles = [(record.get("receiptHandle"),) for record in records]

        def change(connection: sqlite3.Connection) -> int:
            visible_at = time.time() + seconds
            changed = 0
            for (handle,) in handles:
                changed += connection.execute(
                    "UPDATE messages SET visible_at = ?, receipt_handle = NULL WHERE seq = ? AND receipt_handle = ?",
                    (visible_at, _receipt_seq(handle), handle),
                ).rowcount
            return changed

        changed = self._writer.submit(change, wakes=True)
        return changed

    def reclaim_in_flight(self) -> int:
        """Make every claimed message visible now; return how many.

        Only for a server that knows it is the database's sole user (it holds
        the serve lock): whatever is still claimed was claimed by a server that
        has stopped, so waiting for its visibility timeout would only delay it.
        """

        def reclaim(connection: sqlite3.Connection) -> int:
            return connection.execute(
                "UPDATE messages SET visible_at = ?, receipt_handle = NULL WHERE receipt_handle IS NOT NULL",
                (time.time(),),
            ).rowcount

        return self._writer.submit(reclaim)

    @staticmethod
    def _move_to_dead_letters(
        connection: sqlite3.Connection, seq: int | None, reason: str, error: str | None, now: float,
        receipt_handle: str | None = None,
    ) -> int:
        condition, parameters = "seq = ?", [seq]
        if receipt_handle is not None:
            condition, parameters = "seq = ? AND receipt_handle = ?", [seq, receipt_handle]
        moved = connection.execute(
            "INSERT INTO dead_letters (id, body, sent_at, receive_count, first_received_at, dead_lettered_at,"
            " reason, last_error) SELECT id, body, sent_at, receive_count, first_received_at, ?, ?,"
            f" COALESCE(?, last_error) FROM messages WHERE {condition}",
            [now, reason, error, *parameters],
        ).rowcount
        if moved:
            connection.execute(f"DELETE FROM messages WHERE {condition}", parameters)
        return moved

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

        def move(connection: sqlite3.Connection) -> int:
            if ids is None:
                selected = [row[0] for row in connection.execute("SELECT seq FROM dead_letters ORDER BY seq")]
            else:
                selected = []
                missing = []
                for message_id in dict.fromkeys(ids):
                    found = [row[0] for row in connection.execute(
                        "SELECT seq FROM dead_letters WHERE id = ? ORDER BY seq", (message_id,)
                    )]
                    selected.extend(found)
                    if not found:
                        missing.append(message_id)
                if missing:
                    raise QueueError(
                        f"not in the dead-letter queue: {', '.join(missing)} (see `letsgo-worker dlq list`)"
                    )
            now = time.time()
            for seq in selected:
                connection.execute(
                    "INSERT INTO messages (id, body, sent_at, visible_at) SELECT id, body, sent_at, ?"
                    " FROM dead_letters WHERE seq = ?",
                    (now, seq),
                )
                connection.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
            return len(selected)

        moved = self._writer.submit(move, wakes=True)
        return moved

    def purge_dead_letters(self) -> int:
        """Delete every dead-lettered message; return how many."""
        return self._writer.submit(lambda connection: connection.execute("DELETE FROM dead_letters").rowcount)

    # -- inspection ------------------------------------------------------------

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


def _record(
    message_id: str, receipt_handle: str, body: str, receive_count: int, sent_at: float, first_received_at: float
) -> dict[str, Any]:
    """An SQS-shaped record, as the event source mapping hands it to Lambda."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(int(sent_at * 1000)),
            "SenderId": EVENT_SOURCE,
            "ApproximateFirstReceiveTimestamp": str(int(first_received_at * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode("utf-8", "surrogatepass")).hexdigest(),
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": EVENT_SOURCE_ARN,
        "awsRegion": "local",
    }
