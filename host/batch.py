"""SQS batch semantics: run a batch's records through dispatch, report what failed.

The one place that knows the shape of an SQS record. Used by the Lambda entry
point and, with ``eventSource: "letsgo:local"``, by the local runtime.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.dispatch import Outcome, Status, dispatch

if TYPE_CHECKING:
    from host.worker import Worker


@dataclass
class BatchResult:
    """Outcomes of one batch, in record order."""

    outcomes: list[Outcome]

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The ReportBatchItemFailures response: every record that did not succeed."""
        return {
            "batchItemFailures": [
                {"itemIdentifier": outcome.message_id} for outcome in self.outcomes if not outcome.ok
            ]
        }


def record_receive_count(record: dict[str, Any]) -> int:
    """The record's ``ApproximateReceiveCount`` (1 when absent or unreadable)."""
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


async def process_records(worker: Worker, records: list[dict[str, Any]], lambda_context: Any = None) -> list[Outcome]:
    """Dispatch every record concurrently; return their outcomes in record order."""

    async def one(record: dict[str, Any]) -> Outcome:
        message_id = record.get("messageId")
        body = record.get("body")
        if not isinstance(body, str):
            return Outcome(Status.REJECTED, str(message_id), reason="SQS record has no string \"body\"")
        return await dispatch(
            worker, body, message_id=str(message_id), receive_count=record_receive_count(record),
            attributes=record.get("attributes"), lambda_context=lambda_context,
        )

    return list(await asyncio.gather(*(one(record) for record in records)))


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run(coro):
    """Run ``coro`` to completion on this thread's reusable event loop.

    Lambda reuses the process across warm invocations; one loop per thread
    avoids the cost of creating a loop per batch.
    """
    global _loop
    if threading.current_thread() is threading.main_thread():
        with _loop_lock:
            if _loop is None or _loop.is_closed():
                _loop = asyncio.new_event_loop()
        return _loop.run_until_complete(coro)
    return asyncio.run(coro)


def process_sqs_event(worker: Worker, event: dict[str, Any], lambda_context: Any = None) -> BatchResult:
    """Process an SQS event (``{"Records": [...]}``) and return its :class:`BatchResult`."""
    return BatchResult(run(process_records(worker, event["Records"], lambda_context)))
