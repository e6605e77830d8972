"""SQS calls shared by Lambda's settlement and ``serve --sqs``: batch calls, queue URLs, dead-lettering.

Nothing here imports boto3: the callers pass a client (made by
:func:`host.aws.clients.aws_client` only once there is something to send), so
a batch where every message succeeded never loads it.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.sqs")

#: SQS's limit of entries per batch call (DeleteMessageBatch, SendMessageBatch...).
SQS_MAX_BATCH = 10
#: SQS's limit of message attributes per message.
SQS_MAX_ATTRIBUTES = 10

#: The message attributes a rejected message carries into the dead-letter queue.
REASON_ATTRIBUTE = "letsgo.reason"
TYPE_ATTRIBUTE = "letsgo.type"
MESSAGE_ID_ATTRIBUTE = "letsgo.message_id"
#: A reason longer than this is cut: an attribute counts towards the message's 256 KiB.
_REASON_LIMIT = 2000


def queue_url_from_arn(arn: str, endpoint_url: str | None = None) -> str | None:
    """The URL of the queue ``arn:aws:sqs:<region>:<account>:<name>``, or None when it is not one.

    With ``endpoint_url`` (``AWS_ENDPOINT_URL``, e.g. a local emulator) the URL
    is ``<endpoint>/<account>/<name>``; otherwise SQS's own
    ``https://sqs.<region>.amazonaws.com/<account>/<name>``.
    """
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not all(parts[3:]):
        return None
    _, partition, _, region, account, name = parts
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{account}/{name}"
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def sibling_queue_url(queue_url: str, arn: str) -> str | None:
    """The URL of the queue ``arn`` on the same endpoint as ``queue_url`` (a redrive policy's dead-letter queue)."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    base = queue_url.rstrip("/").rsplit("/", 2)[0]
    return f"{base}/{parts[4]}/{parts[5]}"


class BatchCall(NamedTuple):
    """What one batch call did: the ``Id`` of each entry that succeeded, and the error that stopped it, if any."""

    done: set[str]
    error: str | None = None


def batch_call(client: Any, method: str, queue_url: str, entries: list[dict[str, Any]]) -> BatchCall:
    """Run ``client.<method>`` over ``entries`` in chunks of ten; say which entries succeeded.

    An entry SQS refuses is logged with its code. A call that cannot be made
    at all (network, credentials, throttling) stops there: the result carries
    its error, for the caller to log once for its batch, and the entries of
    the chunks already done.
    """
    done: set[str] = set()
    for start in range(0, len(entries), SQS_MAX_BATCH):
        chunk = entries[start:start + SQS_MAX_BATCH]
        try:
            response = getattr(client, method)(QueueUrl=queue_url, Entries=chunk)
        except Exception as error:  # botocore's errors: endpoint unreachable, no credentials, throttled...
            return BatchCall(done, f"{type(error).__name__}: {error}")
        done.update(item["Id"] for item in response.get("Successful", []))
        for failure in response.get("Failed", []):
            logger.warning(
                "SQS %s refused entry %s on %s: %s %s", method, failure.get("Id"), queue_url,
                failure.get("Code"), failure.get("Message"),
            )
    return BatchCall(done)


def boto3_message_attributes(attributes: Any) -> dict[str, dict[str, Any]]:
    """A record's ``messageAttributes`` (Lambda's shape) in the shape ``SendMessage`` takes."""
    converted: dict[str, dict[str, Any]] = {}
    if not isinstance(attributes, dict):
        return converted
    for name, value in attributes.items():
        if not isinstance(value, dict) or not value.get("dataType"):
            continue
        item: dict[str, Any] = {"DataType": value["dataType"]}
        if value.get("stringValue") is not None:
            item["StringValue"] = value["stringValue"]
        elif value.get("binaryValue") is not None:
            item["BinaryValue"] = base64.b64decode(value["binaryValue"])
        else:
            continue
        converted[name] = item
    return converted


def dead_letter_entry(entry_id: str, record: dict[str, Any], outcome: Outcome, *, fifo: bool) -> dict[str, Any]:
    """The ``SendMessageBatch`` entry that moves a rejected ``record`` to a dead-letter queue.

    The body is the record's, unchanged (a large message's S3 pointer stays a
    pointer), with its own message attributes, plus ``letsgo.reason``,
    ``letsgo.type`` and ``letsgo.message_id`` (the id it had in its queue).
    """
    reason = (outcome.reason or "rejected")[:_REASON_LIMIT]
    ours = {
        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason},
        MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": outcome.message_id or "unknown"},
    }
    if outcome.type:
        ours[TYPE_ATTRIBUTE] = {"DataType": "String", "StringValue": outcome.type[:200]}
    theirs = boto3_message_attributes(record.get("messageAttributes"))
    # SQS takes at most ten attributes: ours come first, then as many of the message's own as fit.
    kept = dict(list(theirs.items())[: SQS_MAX_ATTRIBUTES - len(ours)])
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": record.get("body") or "", "MessageAttributes": {**kept, **ours}}
    if fifo:
        attributes = record.get("attributes") if isinstance(record.get("attributes"), dict) else {}
        entry["MessageGroupId"] = attributes.get("MessageGroupId") or "letsgo-rejected"
        entry["MessageDeduplicationId"] = (outcome.message_id or entry_id)[:128]
    return entry


def send_to_dead_letter_queue(client: Any, dlq_url: str, rejected: list[tuple[dict[str, Any], Outcome]]) -> BatchCall:
    """Send each rejected ``(record, outcome)`` to ``dlq_url``; entry ``Id`` ``"3"`` is ``rejected[3]``.

    Whatever is not in the result's ``done`` stays in its queue: the caller
    reports it failed, and the redrive policy dead-letters it later.
    """
    fifo = dlq_url.endswith(".fifo")
    entries = [dead_letter_entry(str(index), record, outcome, fifo=fifo) for index, (record, outcome) in enumerate(rejected)]
    return batch_call(client, "send_message_batch", dlq_url, entries)
