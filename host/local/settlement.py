"""What a message's outcome does to it in the local queue: delete, retry after a back-off, or dead-letter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from host.core.backoff import backoff_seconds

if TYPE_CHECKING:
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.local_queue")

#: The dead-letter reason of a rejected message; its ``last_error`` says what is wrong with it.
REJECTED_REASON = "rejected: the message can never be handled, so it was not retried"


class Decision(NamedTuple):
    """``action`` is ``delete``, ``retry`` (``detail``: seconds until visible) or ``dead-letter`` (``detail``: the reason)."""

    action: str
    record: dict[str, Any]
    detail: Any
    error: str | None


def decide(record: dict[str, Any], outcome: Outcome, *, max_receive_count: int, backoff_base: float,
           backoff_max: float) -> Decision:
    """The decision for one settled record: the succeeded are deleted, the rejected dead-lettered at once,
    the failed retried with back-off until their last receive, then dead-lettered with their error."""
    from host.core.dispatch import Status

    receive_count = int(record["attributes"]["ApproximateReceiveCount"])
    error = outcome.reason or (f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None)
    if outcome.status is Status.SUCCEEDED:
        return Decision("delete", record, None, None)
    if outcome.status is Status.REJECTED:
        return Decision("dead-letter", record, REJECTED_REASON, error)
    if receive_count >= max_receive_count:
        reason = (
            f"failed on each of its {receive_count} receives"
            f" (the maximum, LETSGO_WORKER_MAX_RECEIVE_COUNT={max_receive_count})"
        )
        return Decision("dead-letter", record, reason, error)
    return Decision("retry", record, backoff_seconds(receive_count, backoff_base, backoff_max), error)


def log_settled(decisions: list[Decision], stale: list[str], visibility_timeout: float) -> None:
    """One line per retry and dead-letter; a warning for each record settled after its visibility timeout."""
    for action, record, detail, error in decisions:
        message_id = record["messageId"]
        if message_id in stale:
            continue
        receives = record["attributes"]["ApproximateReceiveCount"]
        if action == "retry":
            logger.info("message %s failed on receive %s; visible again in %.1fs: %s", message_id, receives, detail, error)
        elif action == "dead-letter":
            # A rejection was already logged by the batch processor; a spent retry budget was not.
            log = logger.info if detail == REJECTED_REASON else logger.warning
            log("message %s moved to the dead-letter queue: %s; last error: %s", message_id, detail, error)
    for message_id in stale:
        logger.warning(
            "message %s was handled after its visibility timeout (%gs) ran out; it is delivered again"
            " (raise LETSGO_WORKER_VISIBILITY_TIMEOUT if handlers need longer)",
            message_id, visibility_timeout,
        )
