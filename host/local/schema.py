"""The local queue's SQLite file: its tables, and the shapes its rows are handed out in."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from host.errors import QueueError

logger = logging.getLogger("letsgo.local_queue")

#: ``eventSource`` and ``eventSourceARN`` of records delivered by the local queue.
EVENT_SOURCE = "letsgo:local"
EVENT_SOURCE_ARN = "arn:letsgo:local:queue"

#: Schema version stored in ``PRAGMA user_version``.
SCHEMA_VERSION = 3

#: What turns a file of an older schema into the current one, by the version it has.
MIGRATIONS = {
    1: "ALTER TABLE messages ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;"
       "CREATE INDEX IF NOT EXISTS messages_suspect ON messages (seq) WHERE suspect = 1;",
    2: "ALTER TABLE messages ADD COLUMN group_id TEXT;"
       "ALTER TABLE messages ADD COLUMN deduplication_id TEXT;"
       "ALTER TABLE messages ADD COLUMN last_received_at REAL;"
       "ALTER TABLE messages ADD COLUMN last_traceback TEXT;"
       "ALTER TABLE dead_letters ADD COLUMN group_id TEXT;"
       "ALTER TABLE dead_letters ADD COLUMN last_received_at REAL;"
       "ALTER TABLE dead_letters ADD COLUMN last_traceback TEXT;",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    sent_at           REAL    NOT NULL,
    visible_at        REAL    NOT NULL,
    receive_count     INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    receipt_handle    TEXT,
    last_error        TEXT,
    -- 1: its last receive ended in a crash of the process handling it; it is next tried alone
    suspect           INTEGER NOT NULL DEFAULT 0,
    -- FIFO: a group's messages are delivered in order, one batch of the group in flight
    group_id          TEXT,
    deduplication_id  TEXT,
    last_received_at  REAL,
    -- the traceback of the last failure, without the host's frames (last_error is its one line)
    last_traceback    TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at);
CREATE INDEX IF NOT EXISTS messages_suspect ON messages (seq) WHERE suspect = 1;
CREATE TABLE IF NOT EXISTS dead_letters (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL,
    body              TEXT    NOT NULL,
    sent_at           REAL    NOT NULL,
    receive_count     INTEGER NOT NULL,
    first_received_at REAL,
    dead_lettered_at  REAL    NOT NULL,
    reason            TEXT    NOT NULL,
    last_error        TEXT,
    group_id          TEXT,
    last_received_at  REAL,
    last_traceback    TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_id ON dead_letters (id);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, seq) WHERE group_id IS NOT NULL;
-- FIFO deduplication: an id seen in the last 5 minutes is not enqueued again
CREATE TABLE IF NOT EXISTS deduplication (
    key               TEXT    PRIMARY KEY,
    message_id        TEXT    NOT NULL,
    expires_at        REAL    NOT NULL
);
-- outcomes per minute and type, for the dashboard's chart (old minutes are pruned)
CREATE TABLE IF NOT EXISTS outcome_minutes (
    minute            INTEGER NOT NULL,
    type              TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    count             INTEGER NOT NULL,
    PRIMARY KEY (minute, type, outcome)
);
-- the last tick of each schedule (the unnamed LETSGO_WORKER_SCHEDULE is "")
CREATE TABLE IF NOT EXISTS ticks (
    name              TEXT    PRIMARY KEY,
    fired_at          REAL    NOT NULL,
    outcome           TEXT    NOT NULL,
    detail            TEXT
);
"""


def prepare(connection: sqlite3.Connection, path: str) -> None:
    """Put the file in WAL mode and bring its schema to :data:`SCHEMA_VERSION` (a new file gets it whole)."""
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        logger.warning("the local queue %s is in %s journal mode, not WAL", path, mode)
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise QueueError(f"{path} was written by a newer letsgo-worker (schema {version}); upgrade letsgo-worker")
    for older in range(version, SCHEMA_VERSION) if version else ():  # 0: a new file
        connection.executescript(MIGRATIONS[older])
    connection.executescript(SCHEMA)
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def save_tick(connection: sqlite3.Connection, name: str, fired_at: float, outcome: str, detail: str | None) -> None:
    """Replace the ``ticks`` row of schedule ``name`` with this tick's instant, outcome and detail."""
    connection.execute(
        "INSERT OR REPLACE INTO ticks (name, fired_at, outcome, detail) VALUES (?, ?, ?, ?)",
        (name, fired_at, outcome, detail),
    )


def iso_time(epoch: float | None) -> str | None:
    """``epoch`` seconds as an ISO-8601 UTC instant to the millisecond (``...Z``), or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def sqs_record(
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
