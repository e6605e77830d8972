"""Delivery: the event source mapping. Batches from a message source, through the batch processor.

Any :class:`MessageSource` (the local SQLite queue, a real SQS queue) is driven
the way Lambda's SQS event source mapping drives a function: batches of up to
``batch_size`` records gathered within a batching window, up to ``concurrency``
batches in flight, each handed to :func:`host.batch.process_sqs_event` (the same
code ``lambda_entry.handler`` runs), then settled record by record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from host.dispatch import Outcome


@runtime_checkable
class MessageSource(Protocol):
    """Where delivered messages come from, and where their outcomes go back to.

    ``receive`` returns SQS-shaped records: ``messageId``, ``receiptHandle``,
    ``body`` (a string), ``attributes`` (``ApproximateReceiveCount``,
    ``SentTimestamp``, ``ApproximateFirstReceiveTimestamp``, ``MessageGroupId``
    for FIFO queues...), ``md5OfBody``, ``eventSource`` and ``eventSourceARN``.
    Each returned record is invisible to other receivers until it is settled or
    its visibility timeout passes.

    ``settle`` is called once per received batch with one outcome per record,
    in record order: a succeeded record is deleted; a failed one becomes visible
    again after a back-off driven by its receive count, and is dead-lettered
    after the maximum receive count; a rejected one is dead-lettered at once by
    the local queue (a real SQS queue backs it off and leaves dead-lettering to
    its redrive policy).
    """

    def receive(self, max_messages: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Claim up to ``max_messages`` visible records, waiting up to ``wait_seconds`` for the first."""
        ...

    def settle(self, records: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Apply each record's outcome: delete, retry later, or dead-letter."""
        ...
