"""Routing of Lambda events: an SQS batch or a scheduled tick; anything else is an error.

Accepted:

- an SQS batch: ``{"Records": [...]}`` whose records come from ``aws:sqs`` (an
  event source mapping) or ``letsgo:local`` (the local runtime). Returns
  ``{"batchItemFailures": [...]}``.
- a scheduled tick: ``"detail-type": "Scheduled Event"``, from EventBridge
  Scheduler (``detail`` is the string ``"{}"``) or an EventBridge rule
  (``detail`` is an object). Returns None; raises if a scheduled hook failed.

Anything else raises :class:`UnsupportedEvent`, so the invocation is never
reported as a success for work that was not done.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from host.errors import WorkerError

if TYPE_CHECKING:
    from host.core.worker import Worker

SQS_SOURCES = ("aws:sqs", "letsgo:local")
SCHEDULED_DETAIL_TYPE = "Scheduled Event"

ACCEPTED = (
    "expected an SQS batch or a scheduled event: "
    "{\"Records\": [...]} whose records have \"eventSource\": \"aws:sqs\" or \"letsgo:local\", "
    "or an EventBridge event with \"detail-type\": \"Scheduled Event\""
)


class UnsupportedEvent(WorkerError):
    """The event is neither an SQS batch nor a scheduled tick."""


def _preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_event(event: Any) -> str:
    """A short account of an event for an error message: its kind, keys and telling fields."""
    if not isinstance(event, dict):
        from host.core.dispatch import json_kind

        return f"{json_kind(event)} {_preview(event)}"
    keys = sorted(str(key) for key in event)
    shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} keys)" if len(keys) > 12 else "")
    parts = [f"an object with keys [{shown}]" if keys else "an empty object"]
    for key in ("source", "detail-type"):
        if key in event:
            parts.append(f"{key} {_preview(event[key], 60)}")
    records = event.get("Records")
    if "Records" in event and not isinstance(records, list):
        parts.append(f"\"Records\" is {_preview(records, 40)}, not an array")
    elif isinstance(records, list):
        sources = sorted({_preview(_record_source(r), 40) for r in records[:100]})
        parts.append(f"record eventSource {', '.join(sources[:5])}")
    return "; ".join(parts)


def _record_source(record: Any) -> Any:
    if not isinstance(record, dict):
        return None
    return record.get("eventSource", record.get("EventSource"))


def is_sqs_event(event: Any) -> bool:
    """True for ``{"Records": [...]}`` from SQS or the local runtime (an empty list counts)."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return False
    sources = {_record_source(record) for record in event["Records"] if isinstance(record, dict)}
    # A malformed record (not an object) is rejected alone later; it does not make the batch foreign.
    return sources <= set(SQS_SOURCES)


def is_scheduled_event(event: Any) -> bool:
    """True for an EventBridge scheduled tick, whatever its ``detail`` (the original checks only this)."""
    return isinstance(event, dict) and event.get("detail-type") == SCHEDULED_DETAIL_TYPE


def handle_event(event: Any, context: Any = None, *, worker: Worker | None = None) -> Any:
    """Handle one Lambda invocation: ``lambda_entry.handler`` delegates here.

    ``worker`` defaults to the process's worker (:func:`host.core.worker.get_worker`).
    Returns ``{"batchItemFailures": [...]}`` for an SQS batch and None for a
    scheduled tick. Raises :class:`UnsupportedEvent` for any other event and
    :class:`host.core.ticks.ScheduledError` when a scheduled hook failed.
    """
    if is_sqs_event(event):
        from host.core.batch import process_sqs_event

        return process_sqs_event(_worker(worker), event, context).response()
    if is_scheduled_event(event):
        from host.core.ticks import run_scheduled

        run_scheduled(_worker(worker), event, context)
        return None
    raise UnsupportedEvent(f"unsupported event: received {describe_event(event)}; {ACCEPTED}")


def _worker(worker: Worker | None) -> Worker:
    if worker is not None:
        return worker
    from host.core.worker import get_worker

    return get_worker()
