"""An SQS queue and its dead-letter queue seen through :class:`host.ops.inspector.Inspector`.

Counts come from ``GetQueueAttributes`` (SQS's approximate numbers). SQS has
no peek: the dead letters are looked at with ``ReceiveMessage`` and a short
visibility timeout, then made visible again at once; each look adds one to a
message's receive count, which :attr:`SqsInspector.peek_note` says plainly.
The live queue's messages are not looked at (a look there would count toward
their ``maxReceiveCount`` and could send them to the dead-letter queue).

Redriving every dead letter uses SQS's message-move task
(``StartMessageMoveTask``); where the endpoint lacks it (moto, some emulators)
and for chosen messages, each is received, sent to the queue and deleted.
boto3 is imported on first use only (:mod:`host.aws.clients`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from host.aws.sqs_calls import MESSAGE_ID_ATTRIBUTE, REASON_ATTRIBUTE, TYPE_ATTRIBUTE
from host.errors import QueueError
from host.ops.inspector import MessageView, QueueStats, State, TickView, check_state, message_type

logger = logging.getLogger("letsgo.ops")

#: How long a looked-at dead letter stays hidden at most, should making it visible again fail.
LOOK_SECONDS = 5

#: The most dead letters one look gathers (SQS hands out 10 per call).
LOOK_LIMIT = 1000

#: Error codes with which an endpoint says it does not know ``StartMessageMoveTask`` (moto answers 500),
#: or fails it on its side: the messages are then moved one by one.
_UNSUPPORTED = {"UnsupportedOperation", "InvalidAction", "NotImplemented", "UnknownOperation", "InternalError",
                "500", "501"}

#: The attributes the worker adds to a message it sends to the dead-letter queue itself.
_OUR_ATTRIBUTES = (REASON_ATTRIBUTE, TYPE_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE)

REDRIVE_BY_MOVE_TASK = "SQS message-move task (StartMessageMoveTask)"
REDRIVE_BY_MESSAGE = "one message at a time (ReceiveMessage, SendMessage, DeleteMessage)"


class SqsInspector:
    """:class:`host.ops.inspector.Inspector` of the SQS queue ``queue_url`` and its dead-letter queue.

    :param dlq_url: the dead-letter queue; None: the one named by the queue's ``RedrivePolicy``
    :param client: a boto3 SQS client (default: the shared one of the queue's region)
    :raises QueueError: the queue cannot be read

    A queue without a dead-letter queue (and none given) can still be counted;
    :attr:`dlq_problem` says why there are no dead letters, and each action on
    them raises :class:`QueueError` saying it.
    """

    can_peek = False

    def __init__(self, queue_url: str, dlq_url: str | None = None, *, client: Any = None, region: str | None = None):
        from host.aws.clients import region_from_queue_url

        self.queue_url = queue_url
        self.name = queue_url
        self.region = region or region_from_queue_url(queue_url)
        self._client = client
        #: How the last :meth:`redrive` moved the messages: :data:`REDRIVE_BY_MOVE_TASK` or :data:`REDRIVE_BY_MESSAGE`.
        self.redrive_method: str | None = None
        attributes = self._attributes(queue_url, ["QueueArn", "RedrivePolicy", "FifoQueue"])
        self.queue_arn = attributes.get("QueueArn", "")
        self.fifo = attributes.get("FifoQueue") == "true"
        policy = _redrive_policy(attributes.get("RedrivePolicy"))
        self.max_receive_count: int | None = policy.get("maxReceiveCount")
        #: Why there is no dead-letter queue to look at, or None.
        self.dlq_problem: str | None = None
        if dlq_url is None and policy.get("deadLetterTargetArn"):
            dlq_url = self._url_of(policy["deadLetterTargetArn"])
        elif dlq_url is None:
            self.dlq_problem = f"the SQS queue {queue_url} has no dead-letter queue (no RedrivePolicy); pass --dlq DLQ_URL"
        self.dlq_url = dlq_url
        self.dlq_arn = self._attributes(dlq_url, ["QueueArn"]).get("QueueArn", "") if dlq_url else ""
        self.peek_note = (
            "SQS has no true peek: looking at a dead-lettered message receives it, which adds one to its receive"
            f" count; it is hidden from other readers for a moment (at most {LOOK_SECONDS} s)."
        )

    @property
    def client(self) -> Any:
        """The boto3 SQS client (created on first use)."""
        if self._client is None:
            from host.aws.clients import aws_client

            self._client = aws_client("sqs", self.region)
        return self._client

    def _call(self, method: str, **arguments: Any) -> dict[str, Any]:
        """One SQS call; its failure becomes a :class:`QueueError` naming the call and the queue."""
        try:
            return getattr(self.client, method)(**arguments)
        except QueueError:
            raise
        except Exception as error:  # botocore's errors: no such queue, access denied, throttling...
            queue = arguments.get("QueueUrl") or arguments.get("QueueName") or arguments.get("SourceArn", "")
            raise QueueError(f"SQS {_action(method)} failed for {queue}: {error}") from None

    def _attributes(self, url: str, names: list[str]) -> dict[str, str]:
        return self._call("get_queue_attributes", QueueUrl=url, AttributeNames=names).get("Attributes", {})

    def _url_of(self, arn: str) -> str:
        parts = arn.split(":")  # arn:aws:sqs:<region>:<account>:<name>
        if len(parts) < 6:
            raise QueueError(f"the queue's RedrivePolicy names {arn!r}, which is not an SQS queue ARN; pass --dlq DLQ_URL")
        return self._call("get_queue_url", QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]

    # -- reading -------------------------------------------------------------------

    def stats(self) -> QueueStats:
        """SQS's approximate counts of the queue and of its dead-letter queue (no oldest age: SQS does not say)."""
        main = self._attributes(self.queue_url, [
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
        ])
        return QueueStats(
            visible=int(main.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(main.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(main.get("ApproximateNumberOfMessagesDelayed", 0)),
            dead_letter=self.stats_of_dlq() if self.dlq_url else 0,
            oldest_age_seconds=None,
            approximate=True,
        )

    def messages(self, state: State, *, type: str | None = None, text: str | None = None,
                 limit: int = 50, offset: int = 0) -> list[MessageView]:
        """Dead letters, by a look that receives them (see :attr:`peek_note`); [] for the other states.

        SQS hands messages out in no set order: those looked at are sorted by
        when they were sent, and a search looks at up to :data:`LOOK_LIMIT` of them.
        """
        if check_state(state) != "dead_letter" or not self.dlq_url:
            return []
        # Without a filter, a page needs no more than its own messages and those before it.
        wanted = LOOK_LIMIT if type is not None or text else min(LOOK_LIMIT, max(0, offset) + max(0, limit))
        looked = self._look(wanted)
        self._put_back(looked)
        views = [self._view(message) for message in looked]
        views = [v for v in views if (type is None or v.type == type) and (not text or text in v.body)]
        views.sort(key=lambda view: view.sent_at or 0)
        return views[max(0, offset):max(0, offset) + max(0, limit)]

    def message(self, state: State, message_id: str) -> MessageView | None:
        """The dead letter ``message_id``, by a look (see :attr:`peek_note`); None for the other states."""
        if check_state(state) != "dead_letter" or not self.dlq_url:
            return None
        looked = self._look(LOOK_LIMIT, until={message_id})
        self._put_back(looked)
        found = [message for message in looked if message["MessageId"] == message_id]
        return self._view(found[0]) if found else None

    def outcome_minutes(self, minutes: int = 30) -> list[tuple[int, str, str, int]]:
        """Unknown for SQS: [] (the worker's own ``/metrics`` and CloudWatch count outcomes)."""
        return []

    def last_ticks(self) -> list[TickView]:
        """Unknown for SQS: [] (EventBridge Scheduler fires the ticks)."""
        return []

    def _look(self, most: int, until: set[str] | None = None) -> list[dict[str, Any]]:
        """Receive up to ``most`` distinct dead letters (stopping once every id of ``until`` is seen)."""
        expected = self.stats_of_dlq()
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < min(most, max(expected, 1)):
            response = self._call(
                "receive_message", QueueUrl=self.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=LOOK_SECONDS,
                WaitTimeSeconds=1 if expected else 0, AttributeNames=["All"], MessageAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            fresh = [message for message in batch if message["MessageId"] not in seen]
            for message in batch:
                seen[message["MessageId"]] = message  # the latest receipt handle is the one that counts
            if not fresh or (until is not None and until <= seen.keys()):
                break
        return list(seen.values())

    def stats_of_dlq(self) -> int:
        """How many messages the dead-letter queue holds, approximately (visible and hidden)."""
        dead = self._attributes(self._dead_letter_queue(), ["ApproximateNumberOfMessages",
                                                            "ApproximateNumberOfMessagesNotVisible"])
        return int(dead.get("ApproximateNumberOfMessages", 0)) + int(dead.get("ApproximateNumberOfMessagesNotVisible", 0))

    def _dead_letter_queue(self) -> str:
        """The dead-letter queue's URL; :class:`QueueError` saying why when there is none."""
        if not self.dlq_url:
            raise QueueError(self.dlq_problem or "no dead-letter queue")
        return self.dlq_url

    def _put_back(self, messages: list[dict[str, Any]]) -> None:
        """Make looked-at messages visible again at once (failing that, they return after :data:`LOOK_SECONDS`)."""
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                       for index, message in enumerate(messages[start:start + 10])]
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)
            except Exception as error:  # they come back by themselves after LOOK_SECONDS
                logger.warning("could not make %d looked-at dead letters visible again: %s", len(entries), error)

    def _view(self, message: dict[str, Any]) -> MessageView:
        attributes = message.get("Attributes", {})
        body = message.get("Body", "")
        receives = int(attributes.get("ApproximateReceiveCount", 0))
        limit = f" after {self.max_receive_count} receives" if self.max_receive_count else ""
        reason = f"moved to the dead-letter queue by the queue's redrive policy{limit}"
        # A rejected message the worker sent here itself carries why (host.aws.sqs_calls.dead_letter_entry).
        rejected = _string_attribute(message, REASON_ATTRIBUTE)
        if rejected is not None:
            reason = "rejected: the message can never be handled, so the worker sent it to the dead-letter queue"
        return MessageView(
            id=message["MessageId"], state="dead_letter", type=message_type(body), body=body, receive_count=receives,
            sent_at=_seconds(attributes.get("SentTimestamp")),
            first_received_at=_seconds(attributes.get("ApproximateFirstReceiveTimestamp")),
            last_received_at=None,  # SQS does not say; the look itself was the last receive
            reason=reason, last_error=rejected, last_traceback=None, group_id=attributes.get("MessageGroupId"),
        )

    # -- writing -------------------------------------------------------------------

    def redrive(self, ids: Sequence[str] | None) -> int:
        """Move dead letters back to the queue; return how many (for a move task: how many were there).

        Every one (``ids=None``): SQS's message-move task, or message by message
        where the endpoint lacks it. Chosen ids: message by message; an id not
        found in the dead-letter queue raises :class:`QueueError` naming it, and nothing moves.
        """
        self._dead_letter_queue()
        if ids is None:
            count = self.stats_of_dlq()
            try:
                self.client.start_message_move_task(SourceArn=self.dlq_arn, DestinationArn=self.queue_arn)
            except Exception as error:
                if _error_code(error) not in _UNSUPPORTED and not isinstance(error, AttributeError):
                    raise QueueError(f"SQS StartMessageMoveTask failed for {self.dlq_url}: {error}") from None
                logger.info("the SQS endpoint has no StartMessageMoveTask (%s): redriving message by message",
                            _error_code(error))
            else:
                self.redrive_method = REDRIVE_BY_MOVE_TASK
                return count
            looked = self._look(LOOK_LIMIT)
        else:
            wanted = set(ids)
            looked = self._look(LOOK_LIMIT, until=wanted)
            missing = sorted(wanted - {message["MessageId"] for message in looked})
            if missing:
                self._put_back(looked)
                raise QueueError(f"not in the dead-letter queue: {', '.join(missing)} (see `letsgo-worker dlq list --sqs`)")
            chosen = [message for message in looked if message["MessageId"] in wanted]
            self._put_back([message for message in looked if message["MessageId"] not in wanted])
            looked = chosen
        self.redrive_method = REDRIVE_BY_MESSAGE
        return sum(self._move_back(message) for message in looked)

    def _move_back(self, message: dict[str, Any]) -> int:
        """Send one dead letter to the queue, then delete it from the dead-letter queue."""
        attributes = message.get("Attributes", {})
        send: dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": message.get("Body", "")}
        # The message's own attributes go back with it; the worker's notes on why it was rejected do not.
        own = {name: value for name, value in message.get("MessageAttributes", {}).items() if name not in _OUR_ATTRIBUTES}
        if own:
            send["MessageAttributes"] = own
        if self.fifo:
            send["MessageGroupId"] = attributes.get("MessageGroupId", "redrive")
            send["MessageDeduplicationId"] = attributes.get("MessageDeduplicationId") or message["MessageId"]
        self._call("send_message", **send)
        self._call("delete_message", QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"])
        return 1

    def delete(self, state: State, ids: Sequence[str]) -> int:
        """Delete the dead letters ``ids`` (by the receipt handles of a fresh look); return how many.

        Only dead letters can be deleted here: a message of the live queue may be in a worker's hands.
        """
        if check_state(state) != "dead_letter":
            raise QueueError(f"only dead letters can be deleted from SQS here, not {state.replace('_', '-')} messages")
        self._dead_letter_queue()
        wanted = set(ids)
        looked = self._look(LOOK_LIMIT, until=wanted)
        chosen = [message for message in looked if message["MessageId"] in wanted]
        self._put_back([message for message in looked if message["MessageId"] not in wanted])
        for message in chosen:
            self._call("delete_message", QueueUrl=self.dlq_url, ReceiptHandle=message["ReceiptHandle"])
        return len(chosen)

    def purge_dead_letters(self) -> int:
        """``PurgeQueue`` on the dead-letter queue; return how many it held, approximately."""
        count = self.stats_of_dlq()  # raises when there is no dead-letter queue
        self._call("purge_queue", QueueUrl=self.dlq_url)
        return count


def _string_attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return value.get("StringValue") if isinstance(value, dict) else None


def _redrive_policy(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        policy = json.loads(text)
        return {"deadLetterTargetArn": policy.get("deadLetterTargetArn"),
                "maxReceiveCount": int(policy["maxReceiveCount"]) if "maxReceiveCount" in policy else None}
    except (ValueError, TypeError, AttributeError):
        return {}


def _seconds(milliseconds: str | None) -> float | None:
    try:
        return int(milliseconds) / 1000 if milliseconds else None
    except ValueError:
        return None


def _error_code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code") or str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code or type(error).__name__


def _action(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))

