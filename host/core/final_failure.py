"""Nothing fails silently: a message dead-lettered after its last retry notifies once, as a rejection does.

A rejected message notifies on its first receive (:func:`host.core.dispatch.notify_rejection`).
A message that fails on its last allowed receive goes to the dead-letter queue
too, and notifies here, naming its type, its receive count and its last error.
The maximum receive count comes from the message source the delivery loop
drives: the local queue's ``LETSGO_WORKER_MAX_RECEIVE_COUNT``, or the
``maxReceiveCount`` of an SQS queue's redrive policy under ``serve --sqs``
(SQS moves such a message to its dead-letter queue on its next receive).
Both runtimes go through :func:`notify_final_failures`, called by the batch
processor. The local queue also dead-letters, when it next claims it, a message
received the maximum number of times without ever settling (its handler hung,
or its process died, each time); :func:`watch_claim_dead_letters` notifies those.

A notification that cannot be sent is logged, never raised: the message is in
the dead-letter queue already, with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.core.dispatch import Outcome
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.notify")


def final_failure_text(message_id: str, type_: str | None, receive_count: int, last_error: str | None,
                       how: str = "failed on its last retry") -> str:
    """The notification text of a message dead-lettered after its retries (Slack mrkdwn, values escaped)."""
    from host.services.mrkdwn import escape_line

    return "\n".join([
        f":x: A message {how} and goes to the dead-letter queue",
        f"*Message Id:* {escape_line(message_id)}",
        f"*Type:* {escape_line((type_ or 'unknown')[:200])}",
        f"*Receive count:* {receive_count}",
        f"*Last error:* {escape_line((last_error or 'none recorded')[:1000])}",
    ])


def is_final_failure(outcome: Outcome, receive_count: int, max_receive_count: int | None) -> bool:
    """True when ``outcome`` failed (not rejected) on the last receive ``max_receive_count`` allows."""
    from host.core.dispatch import Status

    return bool(max_receive_count) and outcome.status is Status.FAILED and receive_count >= max_receive_count


async def notify_final_failures(worker: Worker, records: Sequence[Any], outcomes: Sequence[Outcome],
                                max_receive_count: int | None) -> int:
    """Notify once for each record of a batch that failed on its last allowed receive; return how many.

    ``max_receive_count`` is the source's (None: unknown, as in Lambda, which
    is not told its queue's redrive policy; nothing is sent).
    """
    if not max_receive_count or not worker.notifies:
        return 0
    from host.core.records import record_receive_count

    sent = 0
    for record, outcome in zip(records, outcomes):
        receives = record_receive_count(record) if isinstance(record, dict) else 1
        if not is_final_failure(outcome, receives, max_receive_count):
            continue
        error = outcome.reason or (f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None)
        text = final_failure_text(outcome.message_id, outcome.type, receives, error)
        try:
            await worker.anotify(text, level="error", source="letsgo-worker")
            sent += 1
        except Exception:
            logger.warning("could not send the dead-letter notification for message %s", outcome.message_id,
                           exc_info=True)
    return sent


def watch_claim_dead_letters(worker: Worker, source: Any) -> None:
    """Have ``source`` (a local queue) notify each message it dead-letters when claiming it; others: nothing.

    The notification is sent from the worker's thread pool, so the delivery
    loop that claimed goes on while the sinks post.
    """
    if not hasattr(source, "on_claim_dead_letter"):
        return

    def tell(message_id: str, body: str, receive_count: int, last_error: str | None) -> None:
        from host.core.dispatch import Rejected, parse_body

        try:
            type_ = parse_body(body)["type"]
        except Rejected:
            type_ = None
        text = final_failure_text(message_id, type_, receive_count, last_error,
                                  how="never completed in its allowed receives (it hung or its process died)")
        try:
            worker.executor.submit(_send, worker, text, message_id)
        except RuntimeError:  # the pool is shut down: the worker is stopping, so send it from here
            _send(worker, text, message_id)

    source.on_claim_dead_letter = tell


def _send(worker: Worker, text: str, message_id: str) -> None:
    try:
        worker.notify(text, level="error", source="letsgo-worker")
    except Exception:
        logger.warning("could not send the dead-letter notification for message %s", message_id, exc_info=True)
