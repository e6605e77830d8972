"""A real SQS queue as a message source: ``letsgo-worker serve --sqs QUEUE_URL``.

The delivery loop (:mod:`host.local.delivery`) drives this source the way Lambda's
event source mapping drives a function, so the same worker also runs on ECS,
EC2, Kubernetes or a laptop, beside or instead of Lambda:

* ``receive`` long-polls ``ReceiveMessage`` and turns each message into the
  record shape of a Lambda SQS event (``eventSource: aws:sqs``);
* ``settle`` deletes what succeeded, in batches (and the S3 object of a large
  message once its message is deleted), sends what was rejected straight to the
  dead-letter queue (``LETSGO_WORKER_DLQ_URL``, else the one of the queue's
  redrive policy) with its reason, and gives what failed a back-off with
  ``ChangeMessageVisibility``, growing with ``ApproximateReceiveCount``. Nothing
  is deleted on failure, so the queue's own redrive policy still moves a poison
  message to its dead-letter queue; a rejected message that could not be sent
  there is backed off the same way.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from host.aws.large_messages import delete_payloads, is_pointer
from host.aws.sqs_calls import send_to_dead_letter_queue, sibling_queue_url
from host.core.backoff import SQS_MAX_VISIBILITY_SECONDS, visibility_seconds
from host.core.records import record_receive_count
from host.config import Settings
from host.errors import SourceUnavailable, StartupError

if TYPE_CHECKING:
    from host.core.dispatch import Outcome

logger = logging.getLogger("letsgo.sqs")

#: SQS limits: messages per receive and per batch call, long-poll seconds (visibility: host.core.backoff).
SQS_MAX_BATCH = 10
SQS_MAX_WAIT_SECONDS = 20

#: The back-off of a failed message, in whole seconds: the one formula of every runtime.
retry_delay_seconds = visibility_seconds


def _lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """boto3's ``MessageAttributes`` in the shape Lambda gives them to a function."""
    converted = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        converted[name] = item
    return converted


class SqsSource:
    """Reads an SQS queue for the delivery loop (contract: :class:`host.local.delivery.MessageSource`).

    :param queue_url: the queue's URL, e.g. ``https://sqs.us-east-1.amazonaws.com/123456789012/my-queue``
    :param settings: back-off base and maximum, AWS region (default: the environment)
    :param client: a boto3 SQS client (default: a shared one for the queue's region)
    :param check: read the queue's attributes now, so that a wrong URL, region or
        credentials stop start-up with a :class:`StartupError` instead of failing every poll
    """

    def __init__(self, queue_url: str, settings: Settings | None = None, *, client: Any = None, check: bool = True):
        from host.aws.clients import region_from_queue_url

        self.queue_url = queue_url
        self.settings = settings if settings is not None else Settings.from_env()
        self.region = self.settings.aws_region or region_from_queue_url(queue_url)
        self._client = client
        self._queue_attributes: dict[str, str] | None = None
        #: Since when (monotonic) calls to SQS fail, None while they succeed; and the last failure.
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        if check:
            try:
                self.describe()
            except StartupError:
                raise
            except Exception as error:  # botocore's errors: no such queue, no credentials, access denied...
                raise StartupError(
                    f"cannot read the SQS queue {queue_url}: {error}; check the queue URL, AWS_REGION and credentials"
                ) from None

    @property
    def client(self) -> Any:
        """The boto3 SQS client (created on first use)."""
        if self._client is None:
            from host.aws.clients import aws_client

            self._client = aws_client("sqs", self.region)
        return self._client

    # -- the queue ---------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        """The queue's attributes (ARN, redrive policy...), read once; warns when there is no dead-letter queue.

        Raises the boto3 error when the queue does not exist or cannot be read,
        so ``serve --sqs`` fails at start rather than at the first message.
        """
        if self._queue_attributes is None:
            attributes = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])
            self._queue_attributes = attributes.get("Attributes", {})
            if not self.max_receive_count:
                logger.warning(
                    "SQS queue %s has no redrive policy: a message that always fails is retried until it"
                    " expires; give the queue a dead-letter queue (RedrivePolicy with maxReceiveCount)",
                    self.queue_url,
                )
        return self._queue_attributes

    @property
    def arn(self) -> str:
        """The queue's ARN, the ``eventSourceARN`` of its records."""
        attributes = self._queue_attributes or {}
        if "QueueArn" in attributes:
            return attributes["QueueArn"]
        # Without permission to read the queue's attributes, build it from the URL: .../<account>/<name>.
        account, name = ([""] + self.queue_url.rstrip("/").split("/"))[-2:]
        return f"arn:aws:sqs:{self.region or 'unknown'}:{account}:{name}"

    @property
    def dead_letter_url(self) -> str | None:
        """Where rejected messages go at once: ``LETSGO_WORKER_DLQ_URL``, else the redrive policy's queue.

        None when ``LETSGO_WORKER_REJECTED_TO_DLQ`` is off or no dead-letter queue is known.
        """
        if not self.settings.rejected_to_dlq:
            return None
        if self.settings.dlq_url:
            return self.settings.dlq_url
        policy = (self._queue_attributes or {}).get("RedrivePolicy")
        try:
            target = json.loads(policy)["deadLetterTargetArn"] if policy else None
        except (ValueError, KeyError, TypeError):
            return None
        return sibling_queue_url(self.queue_url, target) if isinstance(target, str) else None

    @property
    def max_receive_count(self) -> int | None:
        """``maxReceiveCount`` of the queue's redrive policy, None without one."""
        policy = (self._queue_attributes or {}).get("RedrivePolicy")
        if not policy:
            return None
        try:
            return int(json.loads(policy)["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            return None

    # -- MessageSource -------------------------------------------------------------

    def receive(self, max_messages: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Long-poll up to ``wait_seconds`` (at most 20) for messages; return up to ``max_messages`` records.

        More than 10 (SQS's limit per call) are gathered with further calls
        that do not wait.
        """
        if self._queue_attributes is None:
            self.describe()
        wanted = max(1, max_messages)
        wait = min(SQS_MAX_WAIT_SECONDS, max(0, math.ceil(wait_seconds)))
        records: list[dict[str, Any]] = []
        while len(records) < wanted:
            try:
                response = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(SQS_MAX_BATCH, wanted - len(records)),
                    WaitTimeSeconds=wait if not records else 0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
            except Exception as error:  # botocore's errors: unreachable endpoint, throttling, credentials...
                self._unreachable("ReceiveMessage", error)
                if records:
                    return records  # what was received is handled; the next receive backs off
                raise SourceUnavailable(str(error)) from None
            self._reached()
            messages = response.get("Messages", [])
            records.extend(self._record(message) for message in messages)
            if not messages:
                break
        return records

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": self.region,
        }

    def settle(self, records: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Delete the records that succeeded, dead-letter the rejected, back the others off by their receive counts.

        A rejected record is sent to :attr:`dead_letter_url` with its reason,
        then deleted; when that fails, or no dead-letter queue is known, it is
        backed off like a failed one and the queue's redrive policy moves it
        later, so nothing is ever dropped here. Errors from SQS are logged, not
        raised: a record that could not be settled is delivered again after its
        visibility timeout.
        """
        from host.core.dispatch import Status

        succeeded, rejected, unsettled = [], [], []
        dead_letter_url = self.dead_letter_url
        for record, outcome in zip(records, outcomes, strict=True):
            if outcome.status is Status.SUCCEEDED:
                succeeded.append(record)
            elif outcome.status is Status.REJECTED and dead_letter_url:
                rejected.append((record, outcome))
            else:
                unsettled.append((record, outcome))
        dead_lettered = self._dead_letter(rejected)
        unsettled += [(record, outcome) for record, outcome in rejected if record["messageId"] not in dead_lettered]
        retries = []
        for record, outcome in unsettled:
            count = record_receive_count(record)
            delay = retry_delay_seconds(count, self.settings.backoff_base, self.settings.backoff_max)
            retries.append((record, delay))
            self._log_retry(record, outcome, count, delay)
        deleted = self._delete(succeeded + [record for record, _ in rejected if record["messageId"] in dead_lettered])
        # A large message's S3 object goes only once its message is gone: until then it may be received again.
        done = [record for record in deleted if record["messageId"] not in dead_lettered]
        if any(is_pointer(record.get("body")) for record in done):
            delete_payloads(done, region=self.region)
        self._change_visibility(retries)

    def _dead_letter(self, rejected: list[tuple[dict[str, Any], Outcome]]) -> set[str]:
        """Send rejected records to the dead-letter queue; return the message ids that got there."""
        if not rejected:
            return set()
        dlq_url = self.dead_letter_url
        assert dlq_url is not None
        result = send_to_dead_letter_queue(self.client, dlq_url, rejected)
        sent = {rejected[int(entry)][0]["messageId"] for entry in result.done}
        if result.error:
            logger.warning(
                "could not send %d rejected message(s) to the dead-letter queue %s: %s; they are backed off and"
                " the redrive policy dead-letters them", len(rejected) - len(sent), dlq_url, result.error,
            )
        for record, outcome in rejected:
            if record["messageId"] in sent:
                logger.warning("message %s was rejected: %s; sent to the dead-letter queue %s",
                               record["messageId"], outcome.reason, dlq_url)
        return sent

    def release(self, records: list[dict[str, Any]]) -> int:
        """Make received records visible again at once (the delivery loop calls this when it stops)."""
        return len(self._change_visibility([(record, 0) for record in records]))

    def change_visibility(self, records: list[dict[str, Any]], seconds: float) -> int:
        """Make received records visible again after ``seconds`` (rounded up to whole seconds, at most 12 h).

        Returns how many changed. The heartbeat (:mod:`host.local.heartbeat`) calls this for records
        whose handlers still run.
        """
        delay = max(0, min(SQS_MAX_VISIBILITY_SECONDS, math.ceil(seconds)))
        return len(self._change_visibility([(record, delay) for record in records]))

    # -- SQS calls -----------------------------------------------------------------

    def _delete(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Delete ``records`` from the queue; return those that were deleted."""
        done = []
        for start in range(0, len(records), SQS_MAX_BATCH):
            chunk = records[start:start + SQS_MAX_BATCH]
            entries = [{"Id": str(index), "ReceiptHandle": r["receiptHandle"]} for index, r in enumerate(chunk)]
            done += self._batch_call("delete_message_batch", "DeleteMessageBatch", chunk, entries)
        return done

    def _change_visibility(self, retries: list[tuple[dict[str, Any], int]]) -> list[dict[str, Any]]:
        done = []
        for start in range(0, len(retries), SQS_MAX_BATCH):
            chunk = retries[start:start + SQS_MAX_BATCH]
            entries = [
                {"Id": str(index), "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": delay}
                for index, (record, delay) in enumerate(chunk)
            ]
            done += self._batch_call(
                "change_message_visibility_batch", "ChangeMessageVisibilityBatch", [r for r, _ in chunk], entries
            )
        return done

    def _batch_call(self, method: str, action: str, records: list[dict[str, Any]], entries: list[dict]) -> list[dict[str, Any]]:
        """Run one batch call; return the records it settled, log what failed (it comes back after its visibility timeout)."""
        if not entries:
            return []
        try:
            response = getattr(self.client, method)(QueueUrl=self.queue_url, Entries=entries)
        except Exception as error:  # botocore's errors; the messages simply come back later
            self._unreachable(action, error, f" ({len(entries)} message(s) are delivered again after their visibility timeout)")
            return []
        self._reached()
        for failure in response.get("Failed", []):
            record = records[int(failure["Id"])]
            logger.warning(
                "SQS %s failed for message %s: %s %s (its visibility timeout may have run out:"
                " it is delivered again)", action, record.get("messageId"), failure.get("Code"), failure.get("Message"),
            )
        return [records[int(item["Id"])] for item in response.get("Successful", [])]

    # -- reachability: one line when SQS cannot be reached, one when it can again ------------

    def _unreachable(self, action: str, error: Exception, consequence: str = "") -> None:
        self.last_error = f"{action}: {error}"
        self._failed_calls = getattr(self, "_failed_calls", 0) + 1
        if self.unreachable_since is None:
            self.unreachable_since, self._failed_calls = time.monotonic(), 1
            logger.warning("cannot reach SQS: %s failed: %s%s; retrying with back-off (further failures are not"
                           " logged until it is reachable again)", action, error, consequence)
        else:
            logger.debug("SQS %s failed again: %s%s", action, error, consequence)

    def _reached(self) -> None:
        if self.unreachable_since is not None:
            logger.warning("SQS is reachable again, after %.1fs and %d failed call(s)",
                           time.monotonic() - self.unreachable_since, self._failed_calls)
            self.unreachable_since = None

    def readiness(self) -> str | None:
        """Why this source cannot deliver now (its last call to SQS failed), or None when it can."""
        return None if self.unreachable_since is None else f"cannot reach SQS: {self.last_error}"

    def _log_retry(self, record: dict[str, Any], outcome: Outcome, count: int, delay: int) -> None:
        from host.core.dispatch import Status

        reason = outcome.reason or (f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else "failed")
        limit = self.max_receive_count
        if limit is not None and count >= limit:
            logger.warning(
                "message %s failed on receive %d of %d: %s; the queue's redrive policy moves it to the"
                " dead-letter queue on its next receive", record["messageId"], count, limit, reason,
            )
        elif outcome.status is Status.REJECTED:
            logger.warning(
                "message %s was rejected: %s; backed off %ds until the queue's redrive policy dead-letters it",
                record["messageId"], reason, delay,
            )
        else:
            logger.info("message %s failed on receive %d: %s; visible again in %ds", record["messageId"], count, reason, delay)
