"""The local queue's dead-letter table: moving a message there, and redriving it back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from host.errors import QueueError


def claim_reason(receive_count: int, visibility_timeout: float) -> str:
    """The dead-letter reason of a message claimed again after its last receive never settled."""
    return (
        f"received {receive_count} times (the maximum, LETSGO_WORKER_MAX_RECEIVE_COUNT) without"
        f" completing: the visibility timeout ({visibility_timeout:g}s) ran out or the"
        " worker stopped while it was being handled"
    )


def move_to_dead_letters(
    connection: sqlite3.Connection, seq: int | None, reason: str, error: str | None, now: float,
    receipt_handle: str | None = None,
) -> int:
    """Move the message ``seq`` (with ``receipt_handle``, when given) to the dead-letter table; return 1 or 0."""
    condition, parameters = "seq = ?", [seq]
    if receipt_handle is not None:
        condition, parameters = "seq = ? AND receipt_handle = ?", [seq, receipt_handle]
    moved = connection.execute(
        "INSERT INTO dead_letters (id, body, sent_at, receive_count, first_received_at, dead_lettered_at,"
        " reason, last_error, group_id, last_received_at, last_traceback) SELECT id, body, sent_at, receive_count,"
        f" first_received_at, ?, ?, COALESCE(?, last_error), group_id, last_received_at, last_traceback"
        f" FROM messages WHERE {condition}",
        [now, reason, error, *parameters],
    ).rowcount
    if moved:
        connection.execute(f"DELETE FROM messages WHERE {condition}", parameters)
    return moved


def redrive_rows(connection: sqlite3.Connection, ids: Sequence[str] | None) -> int:
    """Move dead letters back to the queue (every one when ``ids`` is None), visible now; return how many.

    An id that is not in the dead-letter table raises :class:`QueueError` naming it.
    """
    if ids is None:
        selected = [seq for (seq,) in connection.execute("SELECT seq FROM dead_letters ORDER BY seq")]
    else:
        selected, missing = [], []
        for message_id in dict.fromkeys(ids):
            found = [seq for (seq,) in connection.execute(
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
            "INSERT INTO messages (id, body, sent_at, visible_at, group_id) SELECT id, body, sent_at, ?, group_id"
            " FROM dead_letters WHERE seq = ?",
            (now, seq),
        )
        connection.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
    return len(selected)
