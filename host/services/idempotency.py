"""Idempotency: records of work in progress and work done, so a redelivered message does not redo it.

SQS delivers at least once: the same message may arrive twice, and a failed
batch is retried. Each piece of work that must happen once has a key, and the
store keeps one record per key, in one of two states (as Powertools'
idempotency records have them):

- **in progress**, with an expiry: one delivery is doing the work now. The
  expiry is how long that delivery can live (the remaining Lambda time, or
  the visibility timeout), so a crash mid-work never wedges the key: once
  it passes, the next delivery takes over.
- **completed**, kept forever or for an optional TTL: later deliveries skip.

Every transition is one atomic write (an SQLite statement, a DynamoDB
conditional write), so two deliveries never both start, and finishing or
giving up never erases another delivery's record: :meth:`IdempotencyStore.begin`,
then ``complete`` or ``abandon`` (docs/idempotency.md shows the pattern).
:func:`host.run_once` and :func:`host.idempotent` (:mod:`host.services.run_once`)
wrap it for handlers.

Which store :func:`get_store` returns:

1. ``worker.idempotency_store``, when set (embedding, tests);
2. DynamoDB when ``LETSGO_WORKER_IDEMPOTENCY_TABLE`` names a table (AWS);
3. SQLite beside the local queue when the local runtime runs the worker
   (``serve`` sets ``worker.local_db_path``);
4. otherwise None: no store, no deduplication.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from host.errors import WorkerError

if TYPE_CHECKING:
    from host.core.worker import Worker

#: How long a claim lives unless the caller says otherwise: a week, longer than SQS keeps a message.
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
#: Writes between two purges of expired SQLite rows.
_PURGE_EVERY = 500

IN_PROGRESS = "in_progress"
COMPLETED = "completed"


class IdempotencyError(WorkerError):
    """The idempotency store could not be read or written (the message fails and is retried)."""


@dataclass(frozen=True)
class IdempotencyRecord:
    """One key's record: ``status`` is :data:`IN_PROGRESS` or :data:`COMPLETED`.

    ``expires_at`` is Unix time (None: a completed record kept forever);
    ``owner`` names who started the work (a message id), ``token`` that start.
    """

    key: str
    status: str
    expires_at: float | None
    owner: str | None = None
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class Begun:
    """What :meth:`IdempotencyStore.begin` found: ``started`` (go ahead, with ``token``) or the live record."""

    started: bool
    record: IdempotencyRecord

    @property
    def token(self) -> str:
        """Pass it to ``complete`` or ``abandon``; it tells this start from a later takeover."""
        return self.record.token

    @property
    def completed(self) -> bool:
        """True when the work was done before: skip it."""
        return not self.started and self.record.status == COMPLETED

    @property
    def in_progress(self) -> bool:
        """True when another delivery is doing the work now."""
        return not self.started and self.record.status == IN_PROGRESS


@runtime_checkable
class IdempotencyStore(Protocol):
    """Where records live. Implementations: :class:`SqliteIdempotencyStore`, :class:`DynamoIdempotencyStore`."""

    def begin(self, key: str, *, expires_in: float, owner: str | None = None) -> Begun:
        """Start the work of ``key`` unless it is completed or in progress (see :class:`Begun`).

        A record in progress whose expiry passed is taken over, and so is one
        started by the same ``owner`` (its own earlier attempt, which died).
        """

    def complete(self, key: str, token: str, *, ttl_seconds: float | None = None) -> None:
        """Mark the work of ``key`` done, kept ``ttl_seconds`` (None: forever)."""

    def abandon(self, key: str, token: str) -> None:
        """Give up the start ``token`` of ``key``, so a retry can begin; a completed record stays."""

    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key``, or None (never written, abandoned or expired)."""

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Mark ``key`` completed for ``ttl_seconds`` if it is free: True for the first claimant only."""

    def release(self, key: str) -> None:
        """Forget ``key``'s record whatever its state (prefer :meth:`abandon`, which keeps a completed one)."""


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key must be a non-empty string, got {key!r}")
    return key


def _check_expiry(expires_in: Any) -> float:
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or not expires_in > 0:
        raise ValueError(f"an in-progress expiry must be a positive number of seconds, got {expires_in!r}")
    return float(expires_in)


def _new_token() -> str:
    return uuid.uuid4().hex


class SqliteIdempotencyStore:
    """Records in an SQLite file, atomic across threads and processes sharing the file.

    :param path: the database file (``":memory:"`` for one process's tests)
    :param clock: returns the current Unix time
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time):
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        if path != ":memory:" and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # One connection, in autocommit mode, used under a lock: a transition is one
        # statement, so threads queue for microseconds; other processes are kept
        # out by SQLite's file lock (waiting up to the busy timeout).
        self._connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        with self._lock:
            if path != ":memory:":
                self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS idempotency_records (key TEXT PRIMARY KEY, status TEXT NOT NULL,"
                " expires_at REAL, owner TEXT, token TEXT NOT NULL)"
            )

    def begin(self, key: str, *, expires_in: float, owner: str | None = None) -> Begun:
        """Start ``key`` with one upsert that only overwrites an expired record or ``owner``'s own."""
        _check_key(key)
        now = self.clock()
        mine = IdempotencyRecord(key, IN_PROGRESS, now + _check_expiry(expires_in), owner, _new_token())
        with self._lock:
            # One transaction: the upsert and the read of the record that won are one view.
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                changed = self._connection.execute(
                    "INSERT INTO idempotency_records (key, status, expires_at, owner, token) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at,"
                    " owner = excluded.owner, token = excluded.token"
                    " WHERE idempotency_records.expires_at <= ?"
                    " OR (idempotency_records.status = ? AND idempotency_records.owner = ?)",
                    (key, IN_PROGRESS, mine.expires_at, owner, mine.token, now, IN_PROGRESS, owner),
                ).rowcount
                current = mine if changed == 1 else self._read(key)
                self._purge_now_and_then(now)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return Begun(changed == 1, current)

    def complete(self, key: str, token: str, *, ttl_seconds: float | None = None) -> None:
        """Write the completed record, whoever holds the key now: the work was done."""
        _check_key(key)
        expires_at = None if ttl_seconds is None else self.clock() + ttl_seconds
        with self._lock:
            self._connection.execute(
                "INSERT INTO idempotency_records (key, status, expires_at, owner, token) VALUES (?, ?, ?, NULL, ?)"
                " ON CONFLICT(key) DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at,"
                " owner = NULL, token = excluded.token",
                (key, COMPLETED, expires_at, token),
            )

    def abandon(self, key: str, token: str) -> None:
        """Delete ``key``'s record only while it is the in-progress record of start ``token``."""
        _check_key(key)
        with self._lock:
            self._connection.execute(
                "DELETE FROM idempotency_records WHERE key = ? AND status = ? AND token = ?", (key, IN_PROGRESS, token)
            )

    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key``, or None."""
        _check_key(key)
        with self._lock:
            record = self._read(key)
        return _live(record, self.clock())

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Claim ``key``: True when it was free (never claimed, released or expired)."""
        _check_key(key)
        now = self.clock()
        with self._lock:
            # Insert, or take over an expired record; a live one makes the statement change nothing.
            changed = self._connection.execute(
                "INSERT INTO idempotency_records (key, status, expires_at, owner, token) VALUES (?, ?, ?, NULL, ?)"
                " ON CONFLICT(key) DO UPDATE SET status = excluded.status, expires_at = excluded.expires_at,"
                " owner = NULL, token = excluded.token WHERE idempotency_records.expires_at <= ?",
                (key, COMPLETED, now + ttl_seconds, _new_token(), now),
            ).rowcount
            self._purge_now_and_then(now)
        return changed == 1

    def release(self, key: str) -> None:
        """Delete the record of ``key`` (nothing happens if there is none)."""
        _check_key(key)
        with self._lock:
            self._connection.execute("DELETE FROM idempotency_records WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._connection.close()

    def _read(self, key: str) -> IdempotencyRecord | None:
        row = self._connection.execute(
            "SELECT status, expires_at, owner, token FROM idempotency_records WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else IdempotencyRecord(key, *row)

    def _purge_now_and_then(self, now: float) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            self._connection.execute("DELETE FROM idempotency_records WHERE expires_at <= ?", (now,))


class DynamoIdempotencyStore:
    """Records in a DynamoDB table, written with conditional writes; DynamoDB's TTL removes expired items.

    The table's partition key is ``id`` (string) and its TTL attribute
    ``expires_at`` (Unix seconds), as the SAM template creates it; a completed
    record kept forever has no ``expires_at``. DynamoDB deletes expired items
    only eventually, so every condition checks expiry itself.

    :param table: the table name
    :param region: its AWS region (default: boto3's lookup)
    :param client: a boto3 DynamoDB client (default: a shared one)
    """

    def __init__(self, table: str, *, region: str | None = None, client: Any = None, clock: Callable[[], float] = time.time):
        self.table = table
        self.region = region
        self.clock = clock
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client (created on first use)."""
        if self._client is None:
            from host.aws.clients import aws_client

            self._client = aws_client("dynamodb", self.region)
        return self._client

    def begin(self, key: str, *, expires_in: float, owner: str | None = None) -> Begun:
        """Start ``key`` with a conditional ``PutItem``; a failed condition returns the record that won."""
        _check_key(key)
        now = self.clock()
        mine = IdempotencyRecord(key, IN_PROGRESS, math.ceil(now + _check_expiry(expires_in)), owner, _new_token())
        condition = "attribute_not_exists(#id) OR #expires_at <= :now"
        names = {"#id": "id", "#expires_at": "expires_at"}
        values = {":now": {"N": str(int(now))}}
        if owner is not None:
            condition += " OR (#status = :in_progress AND #owner = :owner)"
            names.update({"#status": "status", "#owner": "owner"})
            values.update({":in_progress": {"S": IN_PROGRESS}, ":owner": {"S": owner}})
        client = self.client
        for _ in range(3):
            try:
                client.put_item(
                    TableName=self.table, Item=_item(mine), ConditionExpression=condition,
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except client.exceptions.ConditionalCheckFailedException as failed:
                old = failed.response.get("Item")
                record = _record(key, old) if old is not None else self.get(key)
                if record is not None:
                    return Begun(False, record)
                # The item that failed the condition is gone already (abandoned, expired): try again.
                continue
            except Exception as error:
                raise self._error("begin", key, error) from error
            return Begun(True, mine)
        raise self._error("begin", key, RuntimeError("its record kept changing between the write and the read"))

    def complete(self, key: str, token: str, *, ttl_seconds: float | None = None) -> None:
        """Write the completed record, whoever holds the key now: the work was done."""
        _check_key(key)
        expires_at = None if ttl_seconds is None else math.ceil(self.clock() + ttl_seconds)
        try:
            record = IdempotencyRecord(key, COMPLETED, expires_at, None, token)
            self.client.put_item(TableName=self.table, Item=_item(record))
        except Exception as error:
            raise self._error("complete", key, error) from error

    def abandon(self, key: str, token: str) -> None:
        """Delete ``key``'s item only while it is the in-progress record of start ``token``."""
        _check_key(key)
        client = self.client
        try:
            client.delete_item(
                TableName=self.table, Key={"id": {"S": key}},
                ConditionExpression="#status = :in_progress AND #token = :token",
                ExpressionAttributeNames={"#status": "status", "#token": "token"},
                ExpressionAttributeValues={":in_progress": {"S": IN_PROGRESS}, ":token": {"S": token}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return  # completed meanwhile, or taken over after our expiry: not ours to delete
        except Exception as error:
            raise self._error("abandon", key, error) from error

    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key`` (a strongly consistent read), or None."""
        _check_key(key)
        try:
            item = self.client.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
        except Exception as error:
            raise self._error("read", key, error) from error
        return _live(None if item is None else _record(key, item), self.clock())

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Claim ``key`` with a conditional ``PutItem``: True when no live record existed."""
        _check_key(key)
        client = self.client
        now = self.clock()
        record = IdempotencyRecord(key, COMPLETED, math.ceil(now + ttl_seconds), None, _new_token())
        try:
            client.put_item(
                TableName=self.table, Item=_item(record),
                ConditionExpression="attribute_not_exists(#id) OR #expires_at <= :now",
                ExpressionAttributeNames={"#id": "id", "#expires_at": "expires_at"},
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception as error:
            raise self._error("claim", key, error) from error
        return True

    def release(self, key: str) -> None:
        """Delete the record of ``key`` (nothing happens if there is none)."""
        _check_key(key)
        try:
            self.client.delete_item(TableName=self.table, Key={"id": {"S": key}})
        except Exception as error:
            raise self._error("release", key, error) from error

    def _error(self, action: str, key: str, error: Exception) -> IdempotencyError:
        hint = ""
        if type(error).__name__ == "ResourceNotFoundException":
            hint = " (does the table LETSGO_WORKER_IDEMPOTENCY_TABLE names exist in this region?)"
        return IdempotencyError(
            f"could not {action} idempotency key {key!r} in DynamoDB table {self.table!r}: {error}{hint}"
        )


def _live(record: IdempotencyRecord | None, now: float) -> IdempotencyRecord | None:
    expired = record is not None and record.expires_at is not None and record.expires_at <= now
    return None if expired else record


def _item(record: IdempotencyRecord) -> dict[str, Any]:
    item: dict[str, Any] = {"id": {"S": record.key}, "status": {"S": record.status}, "token": {"S": record.token}}
    if record.expires_at is not None:
        item["expires_at"] = {"N": str(int(record.expires_at))}
    if record.owner is not None:
        item["owner"] = {"S": record.owner}
    return item


def _record(key: str, item: dict[str, Any]) -> IdempotencyRecord:
    expires_at = item.get("expires_at", {}).get("N")
    return IdempotencyRecord(
        key,
        item.get("status", {}).get("S", COMPLETED),  # an item written by claim() of an older release
        None if expires_at is None else float(expires_at),
        item.get("owner", {}).get("S"),
        item.get("token", {}).get("S", ""),
    )


def sqlite_path_beside(queue_db_path: str) -> str:
    """The idempotency database next to the local queue's: ``.letsgo/worker.db`` -> ``.letsgo/worker.idempotency.db``."""
    if queue_db_path == ":memory:":
        return ":memory:"
    stem, extension = os.path.splitext(queue_db_path)
    return f"{stem}.idempotency{extension or '.db'}"


_stores: weakref.WeakKeyDictionary[Any, IdempotencyStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def get_store(worker: Worker) -> IdempotencyStore | None:
    """The worker's idempotency store, or None when none is configured (then nothing is deduplicated).

    See the module's documentation for the order in which stores are chosen.
    The store is made once per worker.
    """
    explicit = getattr(worker, "idempotency_store", None)
    if explicit is not None:
        return explicit
    store = _stores.get(worker)
    if store is not None:
        return store
    settings = worker.settings
    local_db_path = worker.local_db_path
    if not settings.idempotency_table and not local_db_path:
        return None
    with _stores_lock:
        store = _stores.get(worker)
        if store is None:
            if settings.idempotency_table:
                store = DynamoIdempotencyStore(settings.idempotency_table, region=settings.aws_region)
            else:
                store = SqliteIdempotencyStore(sqlite_path_beside(local_db_path))
            _stores[worker] = store
    return store
