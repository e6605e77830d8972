"""FIFO in the local queue: message groups delivered in order, deduplication ids honoured for 5 minutes.

As in an SQS FIFO queue:

* the messages of one ``MessageGroupId`` are received in the order they were
  sent, and a group with a message in flight (or waiting for its retry) is not
  received from: after a failure the group waits for that message's retry,
  and nothing later in the group overtakes it;
* a message whose ``MessageDeduplicationId`` was already sent in the last 5
  minutes is not stored again; the send answers with the first message's id;
* the records handed out carry ``attributes.MessageGroupId``,
  ``SequenceNumber`` and ``MessageDeduplicationId``, and an ``eventSourceARN``
  ending in ``.fifo``, so the batch processor keeps each group in order
  within a batch exactly as it does in Lambda (:func:`host.core.records.record_group`).

Messages without a group are delivered as from a standard queue, beside the groups.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from host.local.schema import EVENT_SOURCE_ARN

#: How long a deduplication id is remembered, as in SQS.
DEDUPLICATION_SECONDS = 300

#: The ``eventSourceARN`` of grouped records: a FIFO queue's ARN ends in ``.fifo``.
FIFO_EVENT_SOURCE_ARN = EVENT_SOURCE_ARN + ".fifo"

#: SQS's limit on group and deduplication ids: 1 to 128 printable ASCII characters.
MAX_ID_LENGTH = 128


class Row(NamedTuple):
    """A message to store: its id, body, delay in seconds, and FIFO group and deduplication id (or None)."""

    message_id: str
    body: str
    delay: float
    group_id: str | None = None
    deduplication_id: str | None = None


def fifo_id_problem(value: Any, name: str) -> str | None:
    """What is wrong with a group or deduplication id (None: it is fine, or absent)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH or not all("!" <= c <= "~" for c in value):
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        return f"{name} must be 1 to {MAX_ID_LENGTH} printable ASCII characters without spaces (as SQS takes), got {shown!r}"
    return None


def insert_rows(connection: sqlite3.Connection, rows: Sequence[Row], now: float) -> list[str]:
    """Store ``rows`` (one transaction is open); return each row's message id, a duplicate's being the first's."""
    if not any(row.group_id or row.deduplication_id for row in rows):  # the common case: one statement
        connection.executemany(
            "INSERT INTO messages (id, body, sent_at, visible_at) VALUES (?, ?, ?, ?)",
            [(row.message_id, row.body, now, now + row.delay) for row in rows],
        )
        return [row.message_id for row in rows]
    connection.execute("DELETE FROM deduplication WHERE expires_at <= ?", (now,))
    ids = []
    for row in rows:
        if row.deduplication_id:
            first = connection.execute(
                "SELECT message_id FROM deduplication WHERE key = ?", (row.deduplication_id,)
            ).fetchone()
            if first:
                ids.append(first[0])  # a duplicate: accepted, not stored again
                continue
            connection.execute(
                "INSERT INTO deduplication (key, message_id, expires_at) VALUES (?, ?, ?)",
                (row.deduplication_id, row.message_id, now + DEDUPLICATION_SECONDS),
            )
        connection.execute(
            "INSERT INTO messages (id, body, sent_at, visible_at, group_id, deduplication_id) VALUES (?, ?, ?, ?, ?, ?)",
            (row.message_id, row.body, now, now + row.delay, row.group_id, row.deduplication_id),
        )
        ids.append(row.message_id)
    return ids


def inserter(rows: Sequence[tuple]) -> Callable[[sqlite3.Connection], list[str]]:
    """A write that stores ``rows`` (:class:`Row` fields, as tuples), sent now, and returns their ids."""
    now, checked = time.time(), [Row(*row) for row in rows]
    return lambda connection: insert_rows(connection, checked, now)


def claimable(connection: sqlite3.Connection, columns: str, now: float, limit: int, group_limit: int) -> list[tuple]:
    """Rows (``columns``) a receive may claim now, in send order, at most ``limit``.

    Messages without a group: any visible one. A group's: from its first
    message on, while each is visible, at most ``group_limit`` (one batch)
    per group. A group whose first message is in flight, backing off, delayed
    or a crash suspect hands out nothing.
    """
    rows = connection.execute(
        f"SELECT {columns} FROM messages WHERE visible_at <= ? AND suspect = 0 AND group_id IS NULL"
        " ORDER BY seq LIMIT ?",
        (now, limit),
    ).fetchall()
    if not connection.execute("SELECT 1 FROM messages WHERE group_id IS NOT NULL LIMIT 1").fetchone():
        return rows
    # Each group's first message (an index-only scan of messages_by_group), where it may be claimed now...
    heads = connection.execute(
        "SELECT first.group_id, first.seq FROM"
        " (SELECT group_id, MIN(seq) AS seq FROM messages WHERE group_id IS NOT NULL GROUP BY group_id) AS first"
        " JOIN messages ON messages.seq = first.seq WHERE messages.visible_at <= ? AND messages.suspect = 0"
        " ORDER BY first.seq LIMIT ?",
        (now, limit),
    ).fetchall()
    grouped = []
    for group_id, head in heads:
        # ...then the group's next ones, while each may be claimed too.
        run = connection.execute(
            f"SELECT {columns}, visible_at, suspect FROM messages WHERE group_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (group_id, head, group_limit),
        ).fetchall()
        for *row, visible_at, suspect in run:
            if visible_at > now or suspect:
                break
            grouped.append(tuple(row))
    # Both lists are in seq order (the first column); a group cut short here just waits for the next receive.
    return sorted(rows + grouped, key=lambda row: row[0])[:limit]


def add_fifo_attributes(record: dict[str, Any], seq: int, group_id: str | None, deduplication_id: str | None) -> dict[str, Any]:
    """Give a grouped record the attributes and ARN of a record from an SQS FIFO queue; return it."""
    if group_id is not None:
        attributes = record["attributes"]
        attributes["MessageGroupId"] = group_id
        attributes["SequenceNumber"] = str(seq)
        if deduplication_id is not None:
            attributes["MessageDeduplicationId"] = deduplication_id
        record["eventSourceARN"] = FIFO_EVENT_SOURCE_ARN
    return record


def split_batches(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """``records`` in batches of up to ``size``, the records of one FIFO group together and in order.

    A group split over two batches would run in two at once, out of order. The
    local queue hands out at most one batch of a group per receive, so a group
    always fits one batch.
    """
    from host.core.records import record_group

    units: dict[Any, list[dict[str, Any]]] = {}
    for index, record in enumerate(records):
        group = record_group(record)
        units.setdefault(("group", group) if group is not None else index, []).append(record)
    batches: list[list[dict[str, Any]]] = []
    for unit in units.values():
        if batches and len(batches[-1]) + len(unit) <= size:
            batches[-1].extend(unit)
        else:
            batches.extend(unit[start : start + size] for start in range(0, len(unit), size))
    return batches
