"""The local queue seen through :class:`host.ops.inspector.Inspector`: queries on its SQLite file.

Reads go through a read-only connection of the inspector's own
(:func:`open_read_only`), so looking never takes the writer's lock and works
on a queue file, or in a folder, that may not be written. Writes (redrive, delete, purge) go through
the :class:`host.local.queue.LocalQueue`'s writer when one is given (under
``serve``), else through a short-lived connection of their own (the CLI).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from host.errors import QueueError
from host.local.dead_letters import redrive_rows
from host.local.schema import SCHEMA_VERSION
from host.ops.inspector import MessageView, QueueStats, State, TickView, check_state, message_type

if TYPE_CHECKING:
    from host.local.queue import LocalQueue

T = TypeVar("T")

#: How long a write from the command line waits for ``serve``'s lock before it fails.
LOCK_WAIT_SECONDS = 5.0

#: The condition on ``messages`` of each state but the dead letters (``?`` is now, once each).
_STATE_CONDITIONS = {
    "visible": "visible_at <= ?",
    "delayed": "visible_at > ? AND receipt_handle IS NULL",
    "in_flight": "visible_at > ? AND receipt_handle IS NOT NULL",
}

_MESSAGE_COLUMNS = (
    "id, body, receive_count, sent_at, first_received_at, last_received_at, NULL, last_error, last_traceback,"
    " group_id, NULL"
)
_DEAD_LETTER_COLUMNS = (
    "id, body, receive_count, sent_at, first_received_at, last_received_at, reason, last_error, last_traceback,"
    " group_id, dead_lettered_at"
)

#: A body's ``type``, or NULL when the body is not JSON (json_extract raises on malformed JSON).
_BODY_TYPE = "(CASE WHEN json_valid(body) THEN json_extract(body, '$.type') END)"


def open_read_only(path: str) -> tuple[sqlite3.Connection, tempfile.TemporaryDirectory | None]:
    """A read-only connection to the queue file ``path``, and the temporary copy it reads, if any.

    ``mode=ro`` first. A WAL file is read through its ``-shm`` file, which a
    read-only folder may not give: then, when the WAL holds writes not yet
    copied into the database (a server that was killed), the file and its WAL
    are copied to a temporary folder and read there, so nothing is missed;
    without such writes, ``immutable=1`` reads the file as it is. Raises
    :class:`QueueError` saying why when none works.
    """
    if not os.path.isfile(path):
        raise QueueError(f"no local queue database at {path}; run `letsgo-worker serve` first or pass --db PATH")
    try:
        return _connect_read_only(path, "mode=ro"), None
    except sqlite3.DatabaseError as error:
        problem: Exception = error
    wal = path + "-wal"
    try:
        if os.path.isfile(wal) and os.path.getsize(wal) > 0:
            snapshot = tempfile.TemporaryDirectory(prefix="letsgo-queue-")
            copy = os.path.join(snapshot.name, os.path.basename(path))
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, copy + "-wal")
            return _connect_read_only(copy, "mode=ro"), snapshot
        return _connect_read_only(path, "mode=ro&immutable=1"), None
    except (sqlite3.DatabaseError, OSError) as error:
        problem = error
    raise QueueError(f"cannot read the local queue database {path}: {problem}")


def _connect_read_only(path: str, options: str) -> sqlite3.Connection:
    connection = sqlite3.connect(f"file:{quote(path)}?{options}", uri=True, check_same_thread=False,
                                 isolation_level=None)
    try:
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return connection


class LocalInspector:
    """:class:`host.ops.inspector.Inspector` of the local queue in the SQLite file ``path``.

    :param queue: the open queue under ``serve``: writes then go through its writer
    :param read_only: refuse every write with :class:`QueueError` (``dlq list`` on a read-only file needs none)
    """

    can_peek = True
    peek_note = None

    def __init__(self, path: str | os.PathLike[str], *, queue: LocalQueue | None = None, read_only: bool = False):
        self.path = os.path.abspath(os.fspath(path))
        self.name = self.path
        self.queue = queue
        self.read_only = read_only
        self._lock = threading.Lock()
        self._connection, self._snapshot = open_read_only(self.path)
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise QueueError(f"{self.path} was written by a newer letsgo-worker (schema {version}); upgrade letsgo-worker")
        if version < SCHEMA_VERSION and queue is None:
            self._migrate(version)

    @classmethod
    def of_queue(cls, queue: LocalQueue) -> LocalInspector:
        """The inspector of an open queue (``serve``): its writes go through the queue's writer."""
        return cls(queue.path, queue=queue)

    def _migrate(self, version: int) -> None:
        """Bring a file of an older schema up to date, as ``serve`` would; a read-only one cannot be."""
        from host.local.queue import LocalQueue

        problem = "it is opened read-only"
        if not self.read_only:
            try:
                LocalQueue(self.path, create=False).close()  # opening a queue brings its file up to date
                return
            except QueueError as error:
                problem = str(error)
        raise QueueError(
            f"{self.path} has schema {version}, older than this letsgo-worker's {SCHEMA_VERSION}, and cannot be"
            f" brought up to date ({problem}); run `letsgo-worker serve` once on a writable copy of it"
        )

    def close(self) -> None:
        """Close the inspector's read connection (the queue, if one was given, stays open)."""
        with self._lock:
            self._connection.close()
        if self._snapshot is not None:
            self._snapshot.cleanup()

    def __enter__(self) -> LocalInspector:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def stats(self) -> QueueStats:
        """The counts of each state and the age of the first waiting message in queue order.

        Cheap with a long queue: the visible are counted on the visibility index
        alone, and only the messages not visible (usually few) are read.
        """
        now = time.time()
        (visible,), = self._read("SELECT COUNT(*) FROM messages WHERE visible_at <= ?", (now,))
        (hidden, in_flight), = self._read(
            "SELECT COUNT(*), COALESCE(SUM(receipt_handle IS NOT NULL), 0) FROM messages WHERE visible_at > ?", (now,)
        )
        first = self._read(
            "SELECT sent_at FROM messages WHERE visible_at <= ?1 OR receipt_handle IS NULL ORDER BY seq LIMIT 1", (now,)
        )
        (dead,), = self._read("SELECT COUNT(*) FROM dead_letters")
        return QueueStats(
            visible=visible, in_flight=in_flight, delayed=hidden - in_flight, dead_letter=dead,
            oldest_age_seconds=max(0.0, now - first[0][0]) if first else None, approximate=False,
        )

    def messages(self, state: State, *, type: str | None = None, text: str | None = None,
                 limit: int = 50, offset: int = 0) -> list[MessageView]:
        """Messages in ``state``, oldest first, of ``type`` and containing ``text`` when given."""
        where, parameters = self._where(check_state(state))
        if type is not None:
            where += f" AND {_BODY_TYPE} = ?"
            parameters.append(type)
        if text:
            where += " AND instr(body, ?) > 0"
            parameters.append(text)
        table, columns = self._table(state)
        rows = self._read(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY seq LIMIT ? OFFSET ?",
            [*parameters, max(0, int(limit)), max(0, int(offset))],
        )
        return [_view(state, row) for row in rows]

    def message(self, state: State, message_id: str) -> MessageView | None:
        """The message ``message_id`` in ``state``, or None."""
        where, parameters = self._where(check_state(state))
        table, columns = self._table(state)
        rows = self._read(f"SELECT {columns} FROM {table} WHERE {where} AND id = ? ORDER BY seq LIMIT 1",
                          [*parameters, message_id])
        return _view(state, rows[0]) if rows else None

    def outcome_minutes(self, minutes: int = 30) -> list[tuple[int, str, str, int]]:
        """``(minute start epoch, type, outcome, count)`` of the last ``minutes`` minutes, oldest first."""
        since = (int(time.time()) // 60 - max(0, minutes - 1)) * 60
        rows = self._read(
            "SELECT minute, type, outcome, count FROM outcome_minutes WHERE minute >= ? ORDER BY minute, type, outcome",
            (since,),
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def last_ticks(self) -> list[TickView]:
        """Each schedule's last tick, by name."""
        return [TickView(*row) for row in self._read("SELECT name, fired_at, outcome, detail FROM ticks ORDER BY name")]

    @staticmethod
    def _where(state: State) -> tuple[str, list[Any]]:
        if state == "dead_letter":
            return "1", []
        return _STATE_CONDITIONS[state], [time.time()]

    @staticmethod
    def _table(state: State) -> tuple[str, str]:
        if state == "dead_letter":
            return "dead_letters", _DEAD_LETTER_COLUMNS
        if state == "visible":
            return "messages", _MESSAGE_COLUMNS
        # The hidden (delayed, in flight) are usually few among many visible: find them on the
        # visibility index, rather than walk every message in queue order.
        return "messages INDEXED BY messages_by_visibility", _MESSAGE_COLUMNS

    # -- writing -------------------------------------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in a committed transaction: the queue's writer, or a connection of its own."""
        if self.read_only:
            raise QueueError(f"{self.path} is opened read-only: nothing can be changed")
        if self.queue is not None:
            return self.queue.transaction(work, durable=True)
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=LOCK_WAIT_SECONDS)
        except sqlite3.DatabaseError as error:
            raise QueueError(f"cannot write the local queue database {self.path}: {error}") from None
        try:
            connection.execute("BEGIN IMMEDIATE")
            result = work(connection)
            connection.execute("COMMIT")
            return result
        except sqlite3.OperationalError as error:
            raise QueueError(f"cannot write the local queue database {self.path}: {error}") from None
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()

    def redrive(self, ids: Sequence[str] | None) -> int:
        """Move dead letters back to the queue, visible now with a fresh receive count (None: every one)."""
        return self._write(lambda connection: redrive_rows(connection, ids))

    def delete(self, state: State, ids: Sequence[str]) -> int:
        """Delete the messages ``ids`` in ``state``; return how many (an in-flight one's settlement then finds nothing)."""
        check_state(state)
        wanted = list(dict.fromkeys(ids))

        def delete(connection: sqlite3.Connection) -> int:
            where, parameters = self._where(state)
            table = "dead_letters" if state == "dead_letter" else "messages"
            return sum(
                connection.execute(f"DELETE FROM {table} WHERE {where} AND id = ?", [*parameters, message_id]).rowcount
                for message_id in wanted
            )

        return self._write(delete)

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; return how many."""
        return self._write(lambda connection: connection.execute("DELETE FROM dead_letters").rowcount)


def _view(state: State, row: tuple) -> MessageView:
    (message_id, body, receive_count, sent_at, first_received_at, last_received_at,
     reason, last_error, last_traceback, group_id, dead_lettered_at) = row
    return MessageView(
        id=message_id, state=state, type=message_type(body), body=body, receive_count=receive_count,
        sent_at=sent_at, first_received_at=first_received_at, last_received_at=last_received_at,
        reason=reason, last_error=last_error, last_traceback=last_traceback, group_id=group_id,
        dead_lettered_at=dead_lettered_at,
    )
