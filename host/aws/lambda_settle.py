"""What Lambda does with a batch's outcomes before it answers the event source mapping.

The mapping deletes the messages a function does not list in
``batchItemFailures`` and leaves the others to come back after the queue's
visibility timeout, then to its redrive policy. Before answering, the worker:

1. sends each *rejected* message (it can never succeed) straight to the
   dead-letter queue ``LETSGO_WORKER_DLQ_URL``, with its reason and type as
   message attributes, and reports it succeeded so SQS deletes it; if the send
   fails it is reported failed as before (``LETSGO_WORKER_REJECTED_TO_DLQ=0``
   turns this off);
2. gives each message it reports failed a back-off with
   ``ChangeMessageVisibility``: the formula of the local queue and ``serve
   --sqs`` (:func:`host.core.backoff.visibility_seconds`). The receive count
   still grows, so the redrive policy still dead-letters. The records of a FIFO
   group after one that did not succeed keep their visibility: they come back
   after it, in order. ``LETSGO_WORKER_LAMBDA_BACKOFF`` (``auto``: only inside
   Lambda, where receipt handles are real) controls it;
3. deletes the S3 object of each large message that succeeded.

Every SQS error is logged once per batch and leaves the record reported
failed: nothing is lost. boto3 is imported only when there is a call to make.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from host.aws.large_messages import delete_payloads, is_pointer
from host.core.records import record_group, record_receive_count
from host.core.dispatch import Status

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.dispatch import Outcome
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.lambda")


def backoff_enabled(settings: Settings) -> bool:
    """``LETSGO_WORKER_LAMBDA_BACKOFF``: on, off, or (``auto``) on inside a Lambda execution environment.

    Outside Lambda (``letsgo-worker invoke``, tests) the records of an event
    file carry receipt handles no queue knows, so ``auto`` leaves them alone.
    """
    if settings.lambda_backoff is None:
        return bool(settings.lambda_runtime_api)
    return settings.lambda_backoff


def _from_sqs(record: Any) -> bool:
    return isinstance(record, dict) and record.get("eventSource") == "aws:sqs"


def settle_lambda_batch(worker: Worker, records: list[Any], outcomes: list[Outcome]) -> dict[str, list[dict[str, str]]]:
    """Dead-letter the rejected, back off the failed, clean up after large messages; return the batch response.

    ``records`` are the event's records as Lambda delivered them and
    ``outcomes`` theirs, in the same order. The response lists every record
    that did not succeed, except those now in the dead-letter queue.
    """
    settings = worker.settings
    failed = [index for index, outcome in enumerate(outcomes) if not outcome.ok and outcome.message_id]
    dead_lettered: set[int] = set()
    if settings.dlq_url and settings.rejected_to_dlq:
        rejected = [i for i in failed if outcomes[i].status is Status.REJECTED and _from_sqs(records[i])]
        if rejected:
            dead_lettered = _dead_letter(settings, records, outcomes, rejected)
    reported = [index for index in failed if index not in dead_lettered]
    if reported and backoff_enabled(settings):
        _back_off(settings, records, outcomes, reported)
    done = [record for record, outcome in zip(records, outcomes) if outcome.ok and _from_sqs(record)]
    if any(is_pointer(record.get("body")) for record in done):
        delete_payloads(done, region=settings.aws_region)
    return {"batchItemFailures": [{"itemIdentifier": outcomes[index].message_id} for index in reported]}


def _dead_letter(settings: Settings, records: list[Any], outcomes: list[Outcome], rejected: list[int]) -> set[int]:
    """Send the ``rejected`` records to the dead-letter queue; return the indexes that got there."""
    from host.aws.clients import aws_client, region_from_queue_url
    from host.aws.sqs_calls import send_to_dead_letter_queue

    dlq_url = settings.dlq_url
    assert dlq_url is not None
    try:
        client = aws_client("sqs", region_from_queue_url(dlq_url) or settings.aws_region)
        result = send_to_dead_letter_queue(client, dlq_url, [(records[i], outcomes[i]) for i in rejected])
    except Exception as error:  # no boto3, no region: the messages stay with the redrive policy
        logger.warning("could not send %d rejected message(s) to the dead-letter queue %s: %s; they are reported "
                       "failed and the redrive policy dead-letters them", len(rejected), dlq_url, error)
        return set()
    sent = {rejected[int(entry)] for entry in result.done}
    if result.error:
        logger.warning(
            "could not send %d rejected message(s) to the dead-letter queue %s: %s; they are reported failed and"
            " the redrive policy dead-letters them", len(rejected) - len(sent), dlq_url, result.error,
        )
    for index in sorted(sent):
        logger.info("message %s (%s) was rejected and sent to the dead-letter queue: %s",
                    outcomes[index].message_id, outcomes[index].type or "unknown type", outcomes[index].reason)
    return sent


def _back_off(settings: Settings, records: list[Any], outcomes: list[Outcome], reported: list[int]) -> None:
    """``ChangeMessageVisibility`` for each reported record but a FIFO group's later ones; errors logged once."""
    # Imported here: a batch where everything succeeded never needs them.
    from host.aws.clients import aws_client
    from host.aws.sqs_calls import batch_call, queue_url_from_arn
    from host.core.backoff import visibility_seconds

    blocked: set[str] = set()  # FIFO groups with a record that did not succeed before this one
    by_queue: dict[str, list[dict[str, Any]]] = {}
    for index, (record, outcome) in enumerate(zip(records, outcomes)):
        if outcome.ok:
            continue
        group = record_group(record)
        if group is not None and group in blocked:
            continue  # it did not run, or came after a failure: it comes back after that one, in order
        if group is not None:
            blocked.add(group)
        if index not in reported or not _from_sqs(record) or not record.get("receiptHandle"):
            continue
        url = queue_url_from_arn(record.get("eventSourceARN", ""), settings.aws_endpoint_url)
        if url is None:
            continue
        delay = visibility_seconds(record_receive_count(record), settings.backoff_base, settings.backoff_max)
        by_queue.setdefault(url, []).append(
            {"Id": str(index), "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": delay}
        )
    errors = []
    for url, entries in by_queue.items():
        arn = records[int(entries[0]["Id"])].get("eventSourceARN", "")
        region = arn.split(":")[3] if arn.count(":") == 5 else settings.aws_region
        try:
            result = batch_call(aws_client("sqs", region), "change_message_visibility_batch", url, entries)
        except Exception as error:  # no boto3 or no region: as good as unreachable
            errors.append(f"{type(error).__name__}: {error}")
            continue
        if result.error:
            errors.append(result.error)
        for entry in entries:
            if entry["Id"] in result.done:
                logger.debug("message %s is visible again in %d s", records[int(entry["Id"])].get("messageId"),
                             entry["VisibilityTimeout"])
    if errors:
        logger.warning(
            "could not set the back-off of failed messages with ChangeMessageVisibility: %s; they are reported failed"
            " and come back after the queue's visibility timeout", "; ".join(errors),
        )
