"""Routing of Lambda events: an SQS batch, a scheduled tick or a partner event; anything else is an error.

Accepted:

- an SQS batch: ``{"Records": [...]}`` whose records come from ``aws:sqs`` (an
  event source mapping) or ``letsgo:local`` (the local runtime). Returns
  ``{"batchItemFailures": [...]}``.
- a scheduled tick: ``"detail-type": "Scheduled Event"``, from EventBridge
  Scheduler (``detail`` is the string ``"{}"``) or an EventBridge rule
  (``detail`` is an object). Returns None; raises if a scheduled hook failed.
  A tick whose ``detail`` carries ``"letsgo:schedule": NAME`` runs that named
  schedule's handler only, and raises when no plugin registered ``NAME``.
- an event from an EventBridge partner event source of :data:`PARTNER_MESSAGE_TYPES`
  (``"source": "aws.partner/stripe.com/..."``, the partner's event in
  ``detail``), invoked directly by an EventBridge rule: handled as the message
  ``{"type": <its type>, "payload": detail}``. Returns None; raises if the
  message failed, so that Lambda retries the invocation. The same envelope as
  the body of an SQS record (a rule whose target is the queue) is handled as
  that message too, with the queue's retries and dead-letter queue.

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
#: EventBridge partner event sources (``source`` prefix) whose events are messages of a type.
#: Stripe's event destinations name theirs ``aws.partner/stripe.com/<destination id>``; the
#: ``letsgo-stripe`` plugin registers the type (without it such a message is an unknown type).
PARTNER_MESSAGE_TYPES = {"aws.partner/stripe.com/": "letsgo:stripe"}
#: Cheap test of an SQS body before parsing it: only envelopes from partner sources hold it.
_PARTNER_MARK = "aws.partner/"

ACCEPTED = (
    "expected an SQS batch, a scheduled event or a partner event: "
    "{\"Records\": [...]} whose records have \"eventSource\": \"aws:sqs\" or \"letsgo:local\", "
    "an EventBridge event with \"detail-type\": \"Scheduled Event\", "
    "or an EventBridge event whose \"source\" starts with " + " or ".join(map(repr, PARTNER_MESSAGE_TYPES))
)


class UnsupportedEvent(WorkerError):
    """The event is neither an SQS batch, a scheduled tick nor a partner event."""


class PartnerEventFailed(WorkerError):
    """A directly invoked partner event's message failed or was rejected; Lambda retries the invocation."""


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


def partner_message(event: Any) -> dict[str, Any] | None:
    """The message ``{"type", "payload"}`` an EventBridge partner event stands for, or None if it is not one."""
    if not isinstance(event, dict) or "detail" not in event:
        return None
    source = event.get("source")
    if not isinstance(source, str):
        return None
    for prefix, message_type in PARTNER_MESSAGE_TYPES.items():
        if source.startswith(prefix):
            return {"type": message_type, "payload": event["detail"]}
    return None


def _unwrap_partner_bodies(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with each record whose body is a partner event's envelope carrying that event's message instead."""
    records = event["Records"]
    unwrapped = None
    for index, record in enumerate(records):
        body = record.get("body") if isinstance(record, dict) else None
        if not isinstance(body, str) or _PARTNER_MARK not in body:
            continue
        try:
            message = partner_message(json.loads(body))
        except ValueError:
            continue  # not JSON: rejected later with the usual reason
        if message is not None:
            unwrapped = unwrapped or list(records)  # the caller's event stays as it was
            unwrapped[index] = {**record, "body": json.dumps(message)}
    return event if unwrapped is None else {**event, "Records": unwrapped}


def _handle_partner_event(worker: Worker, event: dict[str, Any], message: dict[str, Any], context: Any) -> None:
    from host.core.batch import process_sqs_event

    # A one-record batch, so the message takes the path of every other: validation, dispatch, outcome hooks.
    # EventBridge keeps the event's id across Lambda's retries: it is the message id.
    record = {
        "messageId": str(event.get("id") or "eventbridge-event"),
        "body": json.dumps(message),
        "attributes": {"ApproximateReceiveCount": "1"},
        "eventSource": "aws:events",
    }
    outcome = process_sqs_event(worker, {"Records": [record]}, context).outcomes[0]
    if not outcome.ok:
        raise PartnerEventFailed(
            f"{message['type']} message from EventBridge event {record['messageId']} "
            f"(source {event.get('source')!r}, detail-type {event.get('detail-type')!r}) "
            f"was not handled: {outcome.reason}"
        )


def handle_event(event: Any, context: Any = None, *, worker: Worker | None = None) -> Any:
    """Handle one Lambda invocation: ``lambda_entry.handler`` delegates here.

    ``worker`` defaults to the process's worker (:func:`host.core.worker.get_worker`).
    For an SQS batch, rejected records go to the dead-letter queue and failed
    ones get their back-off before the answer (:mod:`host.aws.lambda_settle`).
    Returns ``{"batchItemFailures": [...]}`` for an SQS batch and None for a
    scheduled tick or a partner event. Raises :class:`UnsupportedEvent` for any
    other event, :class:`host.core.ticks.ScheduledError` when a scheduled hook
    or a named schedule's handler failed, :class:`host.core.ticks.UnknownSchedule`
    when a tick names a schedule no plugin registered and :class:`PartnerEventFailed` when a partner event's message did.
    """
    if is_sqs_event(event):
        from host.aws.lambda_settle import settle_lambda_batch
        from host.core.batch import process_sqs_event

        worker = _worker(worker)
        outcomes = process_sqs_event(worker, _unwrap_partner_bodies(event), context).outcomes
        # Dead-lettering and back-off see the records as SQS delivered them (a partner envelope unchanged).
        return settle_lambda_batch(worker, event["Records"], outcomes)
    if is_scheduled_event(event):
        from host.core.ticks import run_scheduled

        run_scheduled(_worker(worker), event, context)
        return None
    message = partner_message(event)
    if message is not None:
        _handle_partner_event(_worker(worker), event, message, context)
        return None
    raise UnsupportedEvent(f"unsupported event: received {describe_event(event)}; {ACCEPTED}")


def _worker(worker: Worker | None) -> Worker:
    if worker is not None:
        return worker
    from host.core.logs import log_startup
    from host.core.worker import get_worker

    worker = get_worker()
    log_startup(worker)  # once per worker: the first invocation of an execution environment says what it runs
    return worker
