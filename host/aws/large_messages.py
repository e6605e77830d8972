"""Large messages: bodies over SQS's 256 KiB kept in S3, in the SQS Extended Client's pointer format.

The Java ``amazon-sqs-java-extended-client-lib`` and the Python
``amazon-sqs-extended-client`` store a body too large for SQS as an S3 object
and send this pointer as the message body instead::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"my-bucket","s3Key":"0b6c..."}]

with the message attribute ``ExtendedPayloadSize`` (``Number``, the body's size
in bytes; older clients used ``SQSLargePayloadSize`` and the pointer class
``com.amazon.sqs.javamessaging.MessageS3Pointer``). This module speaks the same
format both ways, so those producers and this worker interoperate:

- :func:`offload` stores a body and returns the pointer and its attribute
  (``ctx.enqueue`` and ``send --sqs`` with ``LETSGO_WORKER_LARGE_MESSAGE_BUCKET``);
- :func:`resolve` gives the batch processor the body a pointer stands for
  (Lambda, ``serve --sqs`` and the local queue all go through it);
- :func:`delete_payloads` removes the objects of messages that succeeded.

boto3 is imported only when a pointer is met or a large body is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.core.dispatch import Outcome
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.large_messages")

#: The pointer class current clients write, then the one of older Java clients (still read).
POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
#: The message attribute holding the stored body's size, then its older name (still read).
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
#: SQS's limit on a message, body and attributes together (256 KiB), as the extended clients count it.
MAX_SQS_MESSAGE_BYTES = 256 * 1024
#: The largest body stored in S3, the extended clients' own limit (2 GiB).
MAX_LARGE_MESSAGE_BYTES = 2 * 1024**3

#: What a pointer body starts with (after the bracket and the quote): the cheap test before parsing.
_PREFIXES = tuple(f'["{name}"' for name in (POINTER_CLASS, LEGACY_POINTER_CLASS))


class PayloadMissing(Exception):
    """The S3 object a pointer names does not exist (or its bucket does not): the message can never succeed."""


def pointer(body: Any) -> tuple[str, str] | None:
    """``(bucket, key)`` when ``body`` is an extended-client pointer, else None."""
    if not isinstance(body, str) or not body.startswith(_PREFIXES):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict)):
        return None
    bucket, key = value[1].get("s3BucketName"), value[1].get("s3Key")
    if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
        return None
    return bucket, key


def is_pointer(body: Any) -> bool:
    """True when ``body`` looks like a pointer (a prefix test: nothing is parsed)."""
    return isinstance(body, str) and body.startswith(_PREFIXES)


def sqs_size(body: str, attributes: dict[str, dict[str, Any]] | None = None) -> int:
    """The size SQS counts for a message: the body's UTF-8 bytes plus each attribute's name, type and value."""
    size = len(body.encode())
    for name, value in (attributes or {}).items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "StringValue" in value:
            size += len(str(value["StringValue"]).encode())
        if "BinaryValue" in value:
            size += len(value["BinaryValue"])
    return size


def _s3(region: str | None) -> Any:
    from host.aws.clients import aws_client

    return aws_client("s3", region)


def offload(body: str, bucket: str, *, region: str | None = None) -> tuple[str, dict[str, dict[str, str]]]:
    """Store ``body`` in ``bucket`` under a new random key; return the pointer body and its message attributes."""
    data = body.encode()
    key = str(uuid.uuid4())
    _s3(region).put_object(Bucket=bucket, Key=key, Body=data)
    pointer_body = json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}], separators=(",", ":"))
    return pointer_body, {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(len(data))}}


def fetch(bucket: str, key: str, *, region: str | None = None) -> str:
    """The body stored at ``s3://bucket/key``.

    Raises :class:`PayloadMissing` when the object or its bucket does not
    exist, ``UnicodeDecodeError`` when it is not UTF-8 text, and botocore's
    error for anything else (S3 unreachable, access denied: worth a retry).
    """
    client = _s3(region)
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        raise PayloadMissing(f"the S3 object s3://{bucket}/{key} it points to does not exist") from None
    except client.exceptions.NoSuchBucket:
        raise PayloadMissing(f"the S3 bucket {bucket!r} it points to does not exist") from None
    return response["Body"].read().decode("utf-8")


async def resolve(worker: Worker, message_id: str, body: str) -> str | Outcome:
    """The body a pointer ``body`` stands for, fetched in a thread; or the message's outcome when it cannot be.

    A body that is not a well-formed pointer is returned as it is (dispatch
    then rejects it as it would any body that is not a message). A missing
    object is a rejection: it can never succeed. Any other S3 error fails the
    message, which is retried.
    """
    from host.core.dispatch import Outcome, Status

    location = pointer(body)
    if location is None:
        return body
    bucket, key = location
    try:
        return await asyncio.to_thread(fetch, bucket, key, region=worker.settings.aws_region)
    except PayloadMissing as error:
        return Outcome(Status.REJECTED, message_id, reason=f"large message: {error}; it can never be read")
    except UnicodeDecodeError:
        return Outcome(Status.REJECTED, message_id, reason=f"large message: s3://{bucket}/{key} is not UTF-8 text")
    except Exception as error:  # botocore's: S3 unreachable, throttled, access denied
        return Outcome(
            Status.FAILED, message_id, error=error,
            reason=f"large message: cannot read s3://{bucket}/{key}: {type(error).__name__}: {error}; it is retried",
        )


def delete_payloads(records: list[dict[str, Any]], *, region: str | None = None) -> int:
    """Delete the S3 object of each record whose body is a pointer (call it once they succeeded); return how many.

    A failed delete is logged and left to the bucket's lifecycle rule: the
    message itself has succeeded.
    """
    deleted = 0
    for record in records:
        location = pointer(record.get("body"))
        if location is None:
            continue
        bucket, key = location
        try:
            _s3(region).delete_object(Bucket=bucket, Key=key)
            deleted += 1
        except Exception as error:  # botocore's; the lifecycle rule removes it later
            logger.warning(
                "could not delete s3://%s/%s of message %s, which succeeded: %s: %s (the bucket's lifecycle rule"
                " expires it)", bucket, key, record.get("messageId"), type(error).__name__, error,
            )
    return deleted
