"""Routing of Lambda events: an SQS batch or a scheduled tick; anything else is an error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from host.errors import WorkerError

if TYPE_CHECKING:
    from host.worker import Worker

SQS_SOURCES = ("aws:sqs", "letsgo:local")


class UnsupportedEvent(WorkerError):
    """The event is neither an SQS batch nor a scheduled tick."""


def handle_event(event: Any, context: Any = None, *, worker: Worker | None = None) -> Any:
    """Handle one Lambda invocation: ``lambda_entry.handler`` delegates here.

    ``worker`` defaults to the process's worker (:func:`host.worker.get_worker`).
    """
    if worker is None:
        from host.worker import get_worker

        worker = get_worker()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        from host.batch import process_sqs_event

        return process_sqs_event(worker, event, context).response()
    raise UnsupportedEvent(
        f"unsupported event: expected an SQS batch or a scheduled event, got {str(event)[:200]}"
    )
