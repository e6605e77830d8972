"""Idempotency: remember which pieces of work have been done, so a redelivered message does not redo them.

SQS delivers at least once: the same message may arrive twice, and a failed
batch is retried. A handler (or a plugin such as letsgo-stripe) claims a key
before doing work that must happen once::

    store = get_store(ctx.worker)
    key = f"order-email:{message.payload.orderId}"
    if store is not None and not store.claim(key):
        return  # done before (or being done right now by another delivery)
    try:
        send_email(...)
    except Exception:
        if store is not None:
            store.release(key)  # let the retry do it
        raise

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
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from host.errors import WorkerError

if TYPE_CHECKING:
    from host.core.worker import Worker

#: How long a claim lives unless the caller says otherwise: a week, longer than SQS keeps a message.
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
#: Claims between two purges of expired SQLite rows.
_PURGE_EVERY = 500


class IdempotencyError(WorkerError):
    """The idempotency store could not be read or written (the message fails and is retried)."""


@runtime_checkable
class IdempotencyStore(Protocol):
    """Where claims live. Implementations: :class:`SqliteIdempotencyStore`, :class:`DynamoIdempotencyStore`."""

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Claim ``key`` for ``ttl_seconds``: True for the first claimant only, while the claim lives."""
        ...

    def release(self, key: str) -> None:
        """Forget the claim on ``key``, so that a later delivery can claim it again."""
        ...


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key must be a non-empty string, got {key!r}")
    return key


class SqliteIdempotencyStore:
    """Claims in an SQLite file, atomic across threads and processes sharing the file.

    :param path: the database file (``":memory:"`` for one process's tests)
    :param clock: returns the current Unix time
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time):
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._claims = 0
        if path != ":memory:" and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # One connection, in autocommit mode, used under a lock: a claim is one
        # statement, so threads queue for microseconds; other processes are kept
        # out by SQLite's file lock (waiting up to the busy timeout).
        self._connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        with self._lock:
            if path != ":memory:":
                self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS idempotency_keys (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
            )

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Claim ``key``: True when it was free (never claimed, released or expired)."""
        _check_key(key)
        now = self.clock()
        with self._lock:
            # Insert, or take over an expired claim; a live claim makes the statement change nothing.
            changed = self._connection.execute(
                "INSERT INTO idempotency_keys (key, expires_at) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at"
                " WHERE idempotency_keys.expires_at <= ?",
                (key, now + ttl_seconds, now),
            ).rowcount
            self._claims += 1
            if self._claims % _PURGE_EVERY == 0:
                self._connection.execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,))
        return changed == 1

    def release(self, key: str) -> None:
        """Delete the claim on ``key`` (nothing happens if there is none)."""
        _check_key(key)
        with self._lock:
            self._connection.execute("DELETE FROM idempotency_keys WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._connection.close()


class DynamoIdempotencyStore:
    """Claims in a DynamoDB table, made with conditional writes; expired items are removed by DynamoDB's TTL.

    The table's partition key is ``id`` (string) and its TTL attribute
    ``expires_at`` (Unix seconds), as the SAM template creates it. DynamoDB
    deletes expired items only eventually, so a claim also checks expiry itself.

    :param table: the table name
    :param region: its AWS region (default: boto3's lookup)
    :param client: a boto3 DynamoDB client (default: a shared one)
    """

    def __init__(self, table: str, *, region: str | None = None, client: Any = None,
                 clock: Callable[[], float] = time.time):
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

    def claim(self, key: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> bool:
        """Claim ``key`` with a conditional ``PutItem``: True when no live claim existed."""
        _check_key(key)
        client = self.client
        now = self.clock()
        try:
            client.put_item(
                TableName=self.table,
                Item={"id": {"S": key}, "expires_at": {"N": str(math.ceil(now + ttl_seconds))}},
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
        """Delete the claim on ``key`` (nothing happens if there is none)."""
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
