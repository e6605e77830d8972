"""Enqueueing work for the worker, from handlers (``ctx.enqueue``) and from the app's other components.

``LETSGO_LOCAL_QUEUE_URL`` set: the message is POSTed to the local server in the
body LetsGo's queue client sends (an SQS-shaped ``{"Records": [...]}``).
Otherwise it is sent to the SQS queue ``LETSGO_WORKER_QUEUE_URL`` with boto3.
Both paths check the size and delay SQS accepts before sending, so a message
that works locally also works in AWS. A body over SQS's 256 KiB goes to SQS
only with ``LETSGO_WORKER_LARGE_MESSAGE_BUCKET``: it is stored in that S3 bucket
and the message carries a pointer in the SQS Extended Client's format
(:mod:`host.aws.large_messages`). Under ``serve``, ``ctx.enqueue`` stores big
bodies inline in the local queue (up to :data:`MAX_LOCAL_BODY_BYTES`).
"""

from __future__ import annotations

import getpass
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from host.config import Settings
from host.errors import WorkerError

if TYPE_CHECKING:
    import argparse

#: The largest message body enqueue sends: SQS's classic 256 KiB limit (LetsGo documents the same).
MAX_MESSAGE_BYTES = 256 * 1024
#: The largest body sent to SQS through S3 (LETSGO_WORKER_LARGE_MESSAGE_BUCKET): the extended clients' 2 GiB.
MAX_LARGE_MESSAGE_BYTES = 2 * 1024**3
#: The largest body the local queue stores inline (``ctx.enqueue`` under ``serve``).
MAX_LOCAL_BODY_BYTES = 64 * 1024**2
#: The longest delay SQS allows, in seconds (15 minutes).
MAX_DELAY_SECONDS = 900
#: Where ``letsgo-worker send`` posts when neither ``--url`` nor ``LETSGO_LOCAL_QUEUE_URL`` says.
DEFAULT_LOCAL_URL = "http://127.0.0.1:3002"
#: Seconds to wait for the local server.
LOCAL_TIMEOUT_SECONDS = 10.0


class EnqueueError(WorkerError):
    """A message could not be enqueued: the queue is unreachable or refused it."""


class InvalidMessageError(EnqueueError, ValueError):
    """The message or its delay can never be enqueued (not JSON, too large, bad delay...)."""


def _json_default(value: Any) -> Any:
    # Payloads may be pydantic models, as handlers receive them.
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def message_body(message: dict[str, Any], max_bytes: int = MAX_MESSAGE_BYTES) -> str:
    """The JSON body of ``message``, checked: an object with a non-empty string ``type``, at most ``max_bytes``.

    ``max_bytes`` is the enqueuer's (its ``max_body_bytes``): 256 KiB unless it
    can carry more (SQS with a large-message bucket, the local queue).
    """
    if not isinstance(message, dict):
        raise InvalidMessageError(
            f"a message must be a dict like {{'type': 'order:new', 'payload': {{...}}}}, got {type(message).__name__}"
        )
    type_ = message.get("type")
    if not isinstance(type_, str) or not type_:
        raise InvalidMessageError(f"a message needs a non-empty string 'type', got {type_!r}")
    try:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as error:
        raise InvalidMessageError(f"message {type_!r} cannot be sent as JSON: {error}") from None
    size = len(body.encode())
    if size > max_bytes:
        if max_bytes == MAX_MESSAGE_BYTES:
            raise InvalidMessageError(
                f"message {type_!r} is {size:,} bytes as JSON; a queue message may be at most {MAX_MESSAGE_BYTES:,} "
                "(256 KiB): set LETSGO_WORKER_LARGE_MESSAGE_BUCKET to send it to SQS through S3, or store the data"
                " elsewhere (a database, S3) and send its key instead"
            )
        raise InvalidMessageError(f"message {type_!r} is {size:,} bytes as JSON; this queue takes at most {max_bytes:,}")
    return body


def check_delay(delay_seconds: Any) -> float:
    """``delay_seconds`` checked: a number of seconds from 0 to 900, or :class:`InvalidMessageError`.

    The one delay rule of every enqueue path (``ctx.enqueue``, plugin routes,
    ``POST /``, ``letsgo-worker send``). Fractions are kept: the local queue
    delays to the millisecond, and SQS, which takes whole seconds, gets the
    delay rounded up, so a message is never delivered early.
    """
    if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)) or delay_seconds != delay_seconds:
        raise InvalidMessageError(f"delay_seconds must be a number of seconds, got {delay_seconds!r}")
    if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
        raise InvalidMessageError(
            f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS} (15 minutes), got {delay_seconds}; "
            "for longer delays, re-enqueue the message with the remaining delay when it arrives"
        )
    return float(delay_seconds)


class Enqueuer(Protocol):
    """Where a worker's messages go: the local queue, the local server over HTTP, or SQS.

    An enqueuer that takes bodies over 256 KiB says so with a ``max_body_bytes`` attribute.
    """

    def send(self, body: str, delay_seconds: float, *, group_id: str | None, deduplication_id: str | None) -> str:
        """Durably enqueue one checked message body; return its message id."""
        ...


@dataclass(frozen=True)
class HttpEnqueuer:
    """POSTs to a local server at ``url``: for the app's own processes, and ``send``."""

    url: str
    region: str | None = None

    def send(self, body: str, delay_seconds: float, *, group_id: str | None = None,
             deduplication_id: str | None = None) -> str:
        return post_local(self.url, body, delay_seconds, region=self.region, group_id=group_id,
                          deduplication_id=deduplication_id)


@dataclass(frozen=True)
class SqsEnqueuer:
    """``SendMessage`` to the SQS queue ``queue_url``; a body over 256 KiB through the S3 bucket ``bucket``."""

    queue_url: str
    region: str | None = None
    bucket: str | None = None

    @property
    def max_body_bytes(self) -> int:
        """2 GiB with a large-message bucket, else SQS's 256 KiB."""
        return MAX_LARGE_MESSAGE_BYTES if self.bucket else MAX_MESSAGE_BYTES

    def send(self, body: str, delay_seconds: float, *, group_id: str | None = None,
             deduplication_id: str | None = None) -> str:
        return send_sqs(self.queue_url, body, delay_seconds, region=self.region, group_id=group_id,
                        deduplication_id=deduplication_id, bucket=self.bucket)


def enqueuer_from_settings(settings: Settings) -> Enqueuer | None:
    """The enqueuer configured by ``settings``: the local server's URL, else the SQS queue URL, else None."""
    if settings.local_queue_url:
        return HttpEnqueuer(settings.local_queue_url, settings.aws_region)
    if settings.queue_url:
        return SqsEnqueuer(settings.queue_url, settings.aws_region, settings.large_message_bucket)
    return None


def enqueue(
    message: dict[str, Any],
    delay_seconds: float = 0,
    *,
    settings: Settings | None = None,
    enqueuer: Enqueuer | None = None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
) -> str:
    """Enqueue ``message`` (``{"type": ..., "payload": ...}``) for the worker; return its message id.

    :param delay_seconds: hold the message back this long, 0 to 900 (see :func:`check_delay`)
    :param settings: where the queue is configured when no ``enqueuer`` is given (default: the environment)
    :param enqueuer: where to send it (a worker passes its own, see ``Worker.enqueue``)
    :param group_id: the ``MessageGroupId`` of a FIFO queue (required there)
    :param deduplication_id: the ``MessageDeduplicationId`` of a FIFO queue without content-based deduplication

    Raises :class:`InvalidMessageError` before sending anything when the message
    or the delay can never be accepted, and :class:`EnqueueError` when the
    queue cannot be reached or refuses it.
    """
    if enqueuer is None:
        enqueuer = enqueuer_from_settings(settings if settings is not None else Settings.from_env())
    body = message_body(message, getattr(enqueuer, "max_body_bytes", MAX_MESSAGE_BYTES))
    delay = check_delay(delay_seconds)
    if enqueuer is None:
        raise EnqueueError(
            "nowhere to enqueue: set LETSGO_LOCAL_QUEUE_URL (the local server, e.g. http://127.0.0.1:3002) "
            "or LETSGO_WORKER_QUEUE_URL (the SQS queue URL)"
        )
    return enqueuer.send(body, delay, group_id=group_id, deduplication_id=deduplication_id)


async def enqueue_async(message: dict[str, Any], delay_seconds: float = 0, **options: Any) -> str:
    """:func:`enqueue` for ``async def`` code: the call runs in a thread, the event loop stays free."""
    import asyncio

    return await asyncio.to_thread(enqueue, message, delay_seconds, **options)


def local_request_body(
    body: str, delay_seconds: float = 0, *, message_id: str | None = None, region: str | None = None,
    group_id: str | None = None, deduplication_id: str | None = None,
) -> dict[str, Any]:
    """The POST body LetsGo's queue client sends to a local worker, plus a top-level ``delaySeconds``.

    A FIFO group and deduplication id go where SQS records carry them: ``attributes.MessageGroupId``
    and ``attributes.MessageDeduplicationId``.
    """
    now = str(int(time.time() * 1000))
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    sender = f"letsgo:local:{user}"
    record: dict[str, Any] = {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": str(uuid.uuid4()),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "SenderId": sender,
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": "{md5}",
        "eventSource": "letsgo:local",
        "eventSourceARN": sender,
        "awsRegion": region or "us-east-1",
    }
    if group_id:
        record["attributes"]["MessageGroupId"] = group_id
    if deduplication_id:
        record["attributes"]["MessageDeduplicationId"] = deduplication_id
    request: dict[str, Any] = {"Records": [record]}
    if delay_seconds:
        request["delaySeconds"] = delay_seconds  # read by our local server; LetsGo's ignores it
    return request


def post_local(url: str, body: str, delay_seconds: float = 0, *, region: str | None = None,
               group_id: str | None = None, deduplication_id: str | None = None) -> str:
    """POST one message to the local server at ``url``; return its message id (a duplicate's: the first's)."""
    import httpx

    request = local_request_body(body, delay_seconds, region=region, group_id=group_id,
                                 deduplication_id=deduplication_id)
    message_id = request["Records"][0]["messageId"]
    try:
        response = httpx.post(url, json=request, timeout=LOCAL_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise EnqueueError(
            f"cannot reach the local queue at {url}: {error}; is `letsgo-worker serve` running there?"
        ) from None
    if not response.is_success:
        excerpt = " ".join(response.text.split())[:300]
        raise EnqueueError(f"the local queue at {url} refused the message: HTTP {response.status_code}: {excerpt}")
    try:
        ids = response.json().get("messageIds")
    except (ValueError, AttributeError):
        ids = None
    return ids[0] if isinstance(ids, list) and ids and isinstance(ids[0], str) else message_id


def send_sqs(
    queue_url: str,
    body: str,
    delay_seconds: float = 0,
    *,
    region: str | None = None,
    group_id: str | None = None,
    deduplication_id: str | None = None,
    bucket: str | None = None,
) -> str:
    """``SendMessage`` to the SQS queue ``queue_url``; return the SQS message id.

    A body over SQS's 256 KiB (message attributes counted, as SQS does) is
    stored in the S3 ``bucket`` and sent as an SQS Extended Client pointer
    with its ``ExtendedPayloadSize`` attribute; without a bucket it is an
    :class:`InvalidMessageError`. If the send then fails, the object is deleted.
    """
    from host.aws.clients import aws_client, region_from_queue_url
    from host.aws.large_messages import MAX_SQS_MESSAGE_BYTES, sqs_size

    fifo = queue_url.endswith(".fifo")
    if fifo and not group_id:
        raise InvalidMessageError(f"{queue_url} is a FIFO queue: pass group_id (the message group)")
    if fifo and delay_seconds:
        raise InvalidMessageError(f"{queue_url} is a FIFO queue: SQS does not delay single messages on FIFO queues")
    request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if delay_seconds:
        request["DelaySeconds"] = math.ceil(delay_seconds)  # SQS takes whole seconds; never deliver early
    if group_id:
        request["MessageGroupId"] = group_id
    if deduplication_id:
        request["MessageDeduplicationId"] = deduplication_id
    region = region or region_from_queue_url(queue_url)
    client = aws_client("sqs", region)
    from botocore.exceptions import BotoCoreError, ClientError

    size = sqs_size(body)
    offloaded = None
    if size > MAX_SQS_MESSAGE_BYTES:
        offloaded = _offload(body, size, bucket, region, request)
    try:
        return client.send_message(**request)["MessageId"]
    except (BotoCoreError, ClientError) as error:
        if offloaded:
            _discard(offloaded, region)
        raise EnqueueError(f"SQS SendMessage to {queue_url} failed: {error}") from None


def _offload(body: str, size: int, bucket: str | None, region: str | None, request: dict[str, Any]) -> str:
    """Store ``body`` in S3 and make ``request`` send its pointer instead; return the pointer body."""
    from botocore.exceptions import BotoCoreError, ClientError

    from host.aws.large_messages import offload

    if not bucket:
        raise InvalidMessageError(
            f"the message is {size:,} bytes; SQS takes at most 262,144 (256 KiB): set LETSGO_WORKER_LARGE_MESSAGE_BUCKET"
            " to an S3 bucket to send larger ones"
        )
    try:
        pointer_body, attributes = offload(body, bucket, region=region)
    except (BotoCoreError, ClientError) as error:
        raise EnqueueError(f"storing a {size:,}-byte message in S3 bucket {bucket!r} failed: {error}") from None
    request["MessageBody"] = pointer_body
    request["MessageAttributes"] = attributes
    return pointer_body


def _discard(pointer_body: str, region: str | None) -> None:
    """Delete the S3 object of a pointer whose message was never sent."""
    from host.aws.large_messages import delete_payloads

    delete_payloads([{"body": pointer_body, "messageId": "(not sent)"}], region=region)


# -- command line -------------------------------------------------------------


def _usage_error(text: str) -> int:
    print(f"letsgo-worker send: error: {text}", file=sys.stderr)
    return 2


def check_against_registry(body: str) -> str | None:
    """Why the worker would reject ``body``, judged by the plugins installed here; None when it would take it.

    The same check as a delivery's (:func:`host.core.dispatch.resolve`): the type must be
    registered and the payload valid for its model. Plugins that fail to load are reported on stderr.
    """
    from host.core.dispatch import Rejected, parse_body, resolve
    from host.core.plugins import report_problems
    from host.core.worker import get_worker

    worker = get_worker()
    report_problems(worker.problems)
    try:
        resolve(worker, parse_body(body))
    except Rejected as rejection:
        return rejection.reason
    return None


def cli_send(args: argparse.Namespace) -> int:
    """``letsgo-worker send TYPE PAYLOAD_JSON|--file F [--delay N] [--group G] [--dedup-id D] [--url URL | --sqs QUEUE_URL] [--no-check]``.

    Posts to the local server (``--url``, else ``LETSGO_LOCAL_QUEUE_URL``, else
    http://127.0.0.1:3002) or, with ``--sqs``, sends to that SQS queue. Prints
    the message id (for a duplicate deduplication id, the first message's).
    Unless ``--no-check``, the type and payload are first checked against the
    installed plugins (:func:`check_against_registry`): exit 2 when the worker
    would reject the message.
    """
    if args.payload is not None and args.file:
        return _usage_error("give the payload as an argument or with --file, not both")
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as file:
                text, source = file.read(), args.file
        except OSError as error:
            return _usage_error(f"cannot read {args.file}: {error.strerror or error}")
    else:
        text, source = args.payload, "PAYLOAD"
    if text is None:
        # Sending null by accident fails on the worker, far from here: ask for it to be written.
        return _usage_error("no payload: give it as JSON after the type, or with --file (write null to send none)")
    try:
        payload = json.loads(text)
    except ValueError as error:
        return _usage_error(f"{source} is not valid JSON: {error}")
    sqs_url = getattr(args, "sqs", None)
    if sqs_url and args.url:
        return _usage_error("give --url (local server) or --sqs (SQS queue), not both")
    from host.local.fifo import fifo_id_problem

    fifo = {"group_id": getattr(args, "group", None), "deduplication_id": getattr(args, "dedup_id", None)}
    for flag, value in zip(("--group", "--dedup-id"), fifo.values()):
        if problem := fifo_id_problem(value, flag):
            return _usage_error(problem)
    try:
        settings = Settings.from_env() if sqs_url else None
        bucket = settings.large_message_bucket if settings else None
        body = message_body({"type": args.type, "payload": payload}, MAX_LARGE_MESSAGE_BYTES if bucket else MAX_MESSAGE_BYTES)
        delay = check_delay(args.delay)
        url = None
        if settings is None:
            url = args.url or Settings.from_env().local_queue_url or DEFAULT_LOCAL_URL
            if not url.startswith(("http://", "https://")):
                return _usage_error(f"--url {url!r} is not an http:// or https:// URL")
        # Last, as it loads the plugins: what the worker would reject is refused here, where it was typed.
        refused = None if getattr(args, "no_check", False) else check_against_registry(body)
        if refused:
            return _usage_error(f"{refused} (nothing was sent; --no-check sends it anyway)")
        if settings is not None:
            message_id = send_sqs(sqs_url, body, delay, region=settings.aws_region, bucket=bucket, **fifo)
        else:
            message_id = post_local(url, body, delay, **fifo)
    except InvalidMessageError as error:
        return _usage_error(str(error))
    except EnqueueError as error:
        print(f"letsgo-worker send: {error}", file=sys.stderr)
        return 1
    print(message_id)
    return 0
