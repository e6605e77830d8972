"""What a message's outcome does to it in the local queue: delete, retry after a back-off, or dead-letter.

The settle transaction also keeps what the dashboard shows: the last failure's
traceback (without the host's own frames) and the outcomes per minute and type.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sysconfig
import traceback
from typing import TYPE_CHECKING, Any, NamedTuple

from host.core.backoff import backoff_seconds
from host.local.dead_letters import move_to_dead_letters

if TYPE_CHECKING:
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.local_queue")

#: The dead-letter reason of a rejected message; its ``last_error`` says what is wrong with it.
REJECTED_REASON = "rejected: the message can never be handled, so it was not retried"

#: How long the outcomes per minute are kept, in seconds: the dashboard's chart shows less.
OUTCOME_MINUTES_KEPT = 60 * 60

#: The folder of the host package: its frames are left out of a failure's traceback.
_HOST_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: The standard library's folder: its frames above the plugin's first one are how the host called it.
_STDLIB_FOLDER = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
#: Where installed distributions live, which may be inside the standard library's folder.
_SITE_FOLDERS = tuple({os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("purelib", "platlib")})


class Decision(NamedTuple):
    """``action`` is ``delete``, ``retry`` (``detail``: seconds until visible) or ``dead-letter`` (``detail``: the reason).

    ``status`` and ``type`` are counted in the outcomes per minute; ``traceback``
    is the failure's, kept beside its one-line ``error``.
    """

    action: str
    record: dict[str, Any]
    detail: Any
    error: str | None
    status: str = "failed"
    type: str | None = None
    traceback: str | None = None


def plugin_traceback(error: BaseException | None) -> str | None:
    """``error``'s traceback without the frames of the host's own files: what the plugin's author needs.

    The frames of the host package are dropped, and so are the standard
    library's above the plugin's first frame (the thread pool or event loop
    that ran the handler); the standard library's frames the plugin called
    stay. A chained exception (``raise ... from``) keeps its causes, each
    filtered the same way.
    """
    if error is None:
        return None
    exception = traceback.TracebackException.from_exception(error)
    for link in _chain(exception):
        frames = [frame for frame in link.stack if not os.path.abspath(frame.filename).startswith(_HOST_FOLDER)]
        while frames and _in_stdlib(frames[0].filename):
            frames.pop(0)
        link.stack = traceback.StackSummary.from_list(frames)
    return "".join(exception.format()).rstrip("\n")


def _in_stdlib(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_STDLIB_FOLDER) and not path.startswith(_SITE_FOLDERS)


def _chain(exception: traceback.TracebackException) -> list[traceback.TracebackException]:
    links, seen = [], set()
    current: traceback.TracebackException | None = exception
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        links.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return links


def decide(record: dict[str, Any], outcome: Outcome, *, max_receive_count: int, backoff_base: float,
           backoff_max: float) -> Decision:
    """The decision for one settled record: the succeeded are deleted, the rejected dead-lettered at once,
    the failed retried with back-off until their last receive, then dead-lettered with their error."""
    from host.core.dispatch import Status

    receive_count = int(record["attributes"]["ApproximateReceiveCount"])
    error = outcome.reason or (f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None)
    status, type_ = outcome.status.value, outcome.type
    if outcome.status is Status.SUCCEEDED:
        return Decision("delete", record, None, None, status, type_)
    if outcome.status is Status.REJECTED:
        return Decision("dead-letter", record, REJECTED_REASON, error, status, type_)
    trace = plugin_traceback(outcome.error)
    if receive_count >= max_receive_count:
        reason = (
            f"failed on each of its {receive_count} receives"
            f" (the maximum, LETSGO_WORKER_MAX_RECEIVE_COUNT={max_receive_count})"
        )
        return Decision("dead-letter", record, reason, error, status, type_, trace)
    return Decision("retry", record, backoff_seconds(receive_count, backoff_base, backoff_max), error, status, type_, trace)


def apply_decisions(connection: sqlite3.Connection, decisions: list[Decision], now: float, *, prune: bool) -> list[str]:
    """Apply ``decisions`` in the writer's transaction; return the ids of the records no longer claimed (stale).

    The outcomes are counted per minute and type in the same transaction;
    ``prune`` also drops the minutes older than :data:`OUTCOME_MINUTES_KEPT`.
    """
    stale = []
    for decision in decisions:
        record = decision.record
        handle = record.get("receiptHandle")
        seq = receipt_seq(handle)
        if decision.action == "delete":
            changed = connection.execute("DELETE FROM messages WHERE seq = ? AND receipt_handle = ?", (seq, handle)).rowcount
        elif decision.action == "retry":
            changed = connection.execute(  # it failed without a crash: no longer a suspect
                "UPDATE messages SET visible_at = ?, receipt_handle = NULL, last_error = ?, last_traceback = ?,"
                " suspect = 0 WHERE seq = ? AND receipt_handle = ?",
                (now + decision.detail, decision.error, decision.traceback, seq, handle),
            ).rowcount
        else:
            if decision.traceback is not None:
                connection.execute("UPDATE messages SET last_traceback = ? WHERE seq = ? AND receipt_handle = ?",
                                   (decision.traceback, seq, handle))
            changed = move_to_dead_letters(connection, seq, decision.detail, decision.error, now, handle)
        if not changed:
            stale.append(record["messageId"])
    _count_outcomes(connection, decisions, now, prune)
    return stale


def _count_outcomes(connection: sqlite3.Connection, decisions: list[Decision], now: float, prune: bool) -> None:
    minute = int(now) // 60 * 60
    counts: dict[tuple[str, str], int] = {}
    for decision in decisions:
        key = (decision.type or "(unknown)", decision.status)
        counts[key] = counts.get(key, 0) + 1
    connection.executemany(
        "INSERT INTO outcome_minutes (minute, type, outcome, count) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (minute, type, outcome) DO UPDATE SET count = count + excluded.count",
        [(minute, type_, status, number) for (type_, status), number in counts.items()],
    )
    if prune:
        connection.execute("DELETE FROM outcome_minutes WHERE minute < ?", (minute - OUTCOME_MINUTES_KEPT,))


def receipt_seq(receipt_handle: Any) -> int | None:
    """The message's ``seq`` in a local receipt handle (``<seq>.<claimer>-<n>``), or None for another handle."""
    try:
        return int(str(receipt_handle).split(".", 1)[0])
    except ValueError:
        return None


def log_settled(decisions: list[Decision], stale: list[str], visibility_timeout: float) -> None:
    """One line per retry and dead-letter; a warning for each record settled after its visibility timeout."""
    for decision in decisions:
        message_id = decision.record["messageId"]
        if message_id in stale:
            continue
        receives = decision.record["attributes"]["ApproximateReceiveCount"]
        if decision.action == "retry":
            logger.info("message %s failed on receive %s; visible again in %.1fs: %s",
                        message_id, receives, decision.detail, decision.error)
        elif decision.action == "dead-letter":
            # A rejection was already logged by the batch processor; a spent retry budget was not.
            log = logger.info if decision.detail == REJECTED_REASON else logger.warning
            log("message %s moved to the dead-letter queue: %s; last error: %s", message_id, decision.detail, decision.error)
    for message_id in stale:
        logger.warning(
            "message %s was handled after its visibility timeout (%gs) ran out; it is delivered again"
            " (raise LETSGO_WORKER_VISIBILITY_TIMEOUT if handlers need longer)",
            message_id, visibility_timeout,
        )
