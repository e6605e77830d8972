"""Reading SQS records: the one place that knows their shape.

Lambda's SQS event, the local runtime's batches (``eventSource: "letsgo:local"``)
and ``serve --sqs`` all hand records of this shape to :mod:`host.core.batch`.
"""

from __future__ import annotations

import json
from typing import Any

#: Bodies longer than this are not parsed again just to name their type in a log line.
_PEEK_LIMIT = 256 * 1024


def record_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """The record's ``attributes`` object (empty when absent or not an object)."""
    attributes = record.get("attributes")
    return attributes if isinstance(attributes, dict) else {}


def record_receive_count(record: dict[str, Any]) -> int:
    """The record's ``ApproximateReceiveCount`` (1 when absent or unreadable)."""
    return receive_count_of(record_attributes(record))


def receive_count_of(attributes: dict[str, Any]) -> int:
    """``ApproximateReceiveCount`` in a record's ``attributes`` (1 when absent or unreadable)."""
    try:
        return max(1, int(attributes.get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


def record_group(record: Any) -> str | None:
    """The FIFO message group of ``record``, or None when its order does not matter.

    A standard queue may carry ``MessageGroupId`` too (fair queues), without any
    ordering promise; so a group counts only when the queue's ARN ends in
    ``.fifo`` or the record has no ARN (the local runtime).
    """
    if not isinstance(record, dict):
        return None
    group = record_attributes(record).get("MessageGroupId")
    if not isinstance(group, str) or not group:
        return None
    arn = record.get("eventSourceARN")
    if isinstance(arn, str) and arn and not arn.endswith(".fifo"):
        return None
    return group


def record_message_id(record: Any) -> str:
    """The record's ``messageId``, or "" when it has none (or ``record`` is not an object)."""
    if isinstance(record, dict):
        message_id = record.get("messageId")
        if isinstance(message_id, str) and message_id:
            return message_id
    return ""


def peek_type(record: Any) -> str | None:
    """The message type in ``record``'s body, if it can be read cheaply (for log lines)."""
    body = record.get("body") if isinstance(record, dict) else None
    if not isinstance(body, str) or len(body) > _PEEK_LIMIT:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    type_ = value.get("type") if isinstance(value, dict) else None
    return type_[:200] if isinstance(type_, str) else None
