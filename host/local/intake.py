"""What ``POST /`` accepts: the envelope of LetsGo's queue client, or a bare message.

``POST /`` takes what LetsGo's queue client sends (an SQS-shaped
``{"Records": [...]}``) or a bare ``{"type", "payload"}`` message with an
optional ``delaySeconds`` (0-900). FIFO: a record's
``attributes.MessageGroupId`` and ``attributes.MessageDeduplicationId`` (as SQS
records carry them), or a bare message's ``groupId`` and ``deduplicationId``
(see :mod:`host.local.fifo`). Intake checks the envelope only; what is
inside a message (its type, its payload, even whether a record's body is JSON)
is dispatch's business, so such messages are stored and then rejected into the
dead-letter queue with their reason: nothing is dropped unrecorded.

Sizes: each message body may be up to 256 KiB (SQS's limit, so a body SQS takes
is never refused here); a request, up to ten such records and their framing
(:data:`MAX_REQUEST_BYTES`, 2,686,976 bytes).
"""

from __future__ import annotations

import json
from typing import Any

from host.core.dispatch import json_kind, refuse_json_constant
from host.local.fifo import fifo_id_problem
from host.services.enqueue import MAX_DELAY_SECONDS, InvalidMessageError, check_delay

#: The largest message body accepted, per record: SQS's message size limit (256 KiB).
MAX_BODY_BYTES = 256 * 1024
#: The largest request: an SQS batch of ten records of 256 KiB each, plus 64 KiB for their JSON framing.
MAX_REQUEST_BYTES = 10 * MAX_BODY_BYTES + 64 * 1024
_TOO_LARGE = f"the limit is {MAX_BODY_BYTES} bytes per message (256 KiB, the SQS message size limit)"

#: Keys of a bare message that tell intake how to store it, and are not part of the stored body.
_ENVELOPE_KEYS = frozenset({"delaySeconds", "groupId", "deduplicationId"})

_SHAPES = '{"Records": [...]} (as LetsGo\'s queue client sends) or {"type": "...", "payload": ...}'
_NO_CONTENT_TYPE = (
    "send the message with Content-Type: application/json (only the {\"Records\": [...]} body of"
    " LetsGo's queue client, which sets no Content-Type, is accepted without one)"
)


class IntakeError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the message says what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_delay(value: Any) -> float:
    """A ``delaySeconds`` value, checked by the one delay validator; raise :class:`IntakeError`."""
    try:
        return check_delay(value)
    except InvalidMessageError:
        raise IntakeError(
            400, f"delaySeconds must be a number of seconds from 0 to {MAX_DELAY_SECONDS}, got {json.dumps(value)[:40]}"
        ) from None


def encode_message(message: Any) -> str:
    """The body stored for a bare message: the object as compact JSON; raise :class:`IntakeError`."""
    if not isinstance(message, dict):
        raise IntakeError(400, f"a message must be a JSON object {{\"type\": \"...\", \"payload\": ...}}, got {json_kind(message)}")
    if not isinstance(message.get("type"), str):
        raise IntakeError(400, f"a message's \"type\" must be a string, got {json_kind(message.get('type'))}")
    return json.dumps(message, separators=(",", ":"))


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _fifo_ids(source: Any, group_key: str, dedup_key: str, where: str) -> tuple[str | None, str | None]:
    """The FIFO group and deduplication ids in ``source`` (absent: None); raise :class:`IntakeError`."""
    if not isinstance(source, dict):
        return None, None
    ids = source.get(group_key), source.get(dedup_key)
    for value, key in zip(ids, (group_key, dedup_key)):
        problem = fifo_id_problem(value, f"{where}{key}")
        if problem:
            raise IntakeError(400, problem)
    return ids


def parse_intake(data: bytes, *, typed: bool = True) -> tuple[list[tuple[str | None, str, str | None, str | None]], float]:
    """Read a ``POST /`` body: return ``[(message id or None, body, group id, deduplication id)]`` and the delay.

    ``typed`` says the request had a ``Content-Type`` (checked by
    :func:`check_sender`); without one only LetsGo's ``{"Records": [...]}`` is
    accepted. Raises :class:`IntakeError` saying what is wrong with the envelope.
    """
    if not data.strip():
        raise IntakeError(400, f"request body is empty; send {_SHAPES}")
    try:
        value = json.loads(data, parse_constant=refuse_json_constant, parse_float=_finite_float)
    except RecursionError:
        raise IntakeError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise IntakeError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise IntakeError(400, f"expected a JSON object, {_SHAPES}; got {json_kind(value)}")
    delay = parse_delay(value["delaySeconds"]) if "delaySeconds" in value else 0.0
    if "Records" in value:
        records = value["Records"]
        if not isinstance(records, list) or not records:
            raise IntakeError(400, f"\"Records\" must be a non-empty array of SQS records, got {json_kind(records) if records != [] else 'an empty array'}")
        messages = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise IntakeError(400, f"Records[{index}] must be an object with a string \"body\", got {json_kind(record)}")
            body = record.get("body")
            if not isinstance(body, str):
                raise IntakeError(
                    400, f"Records[{index}].body must be a string (the message as JSON text), got {json_kind(body)}"
                )
            try:
                size = len(body.encode("utf-8"))
            except UnicodeEncodeError as error:
                raise IntakeError(400, f"Records[{index}].body is not valid Unicode: {error.reason} at {error.start}") from None
            if size > MAX_BODY_BYTES:
                raise IntakeError(413, f"Records[{index}].body is {size} bytes; {_TOO_LARGE}")
            message_id = record.get("messageId")
            usable = isinstance(message_id, str) and 0 < len(message_id) <= 256
            if usable:
                try:
                    message_id.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise IntakeError(
                        400, f"Records[{index}].messageId is not valid Unicode: {error.reason} at {error.start}"
                    ) from None
            group, dedup = _fifo_ids(record.get("attributes"), "MessageGroupId", "MessageDeduplicationId",
                                     f"Records[{index}].attributes.")
            messages.append((message_id if usable else None, body, group, dedup))
        return messages, delay
    if "type" in value:
        if not typed:
            raise IntakeError(415, _NO_CONTENT_TYPE)
        if not isinstance(value["type"], str):
            encode_message(value)  # raises, saying what is wrong with "type"
        fifo = _fifo_ids(value, "groupId", "deduplicationId", "")
        if not _ENVELOPE_KEYS.intersection(value):
            try:
                return [(None, _checked_size(data.decode("utf-8")), *fifo)], delay  # stored exactly as sent
            except UnicodeDecodeError:  # JSON in UTF-16 or UTF-32
                pass
        message = {key: item for key, item in value.items() if key not in _ENVELOPE_KEYS}
        return [(None, _checked_size(encode_message(message)), *fifo)], delay
    raise IntakeError(400, f"expected {_SHAPES}; the object has neither \"Records\" nor \"type\"")


def _checked_size(body: str) -> str:
    """``body``, when it is within :data:`MAX_BODY_BYTES`; else :class:`IntakeError` 413."""
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise IntakeError(413, f"the message is {size} bytes; {_TOO_LARGE}")
    return body


def check_sender(headers: Any) -> None:
    """Refuse what a web page could send to this port; raise :class:`IntakeError`.

    Browsers add ``Origin`` to every cross-origin POST (and a page that rebinds
    its DNS name to 127.0.0.1 sends it too), while API servers and tools do
    not; and a page can post without a CORS preflight only as ``text/plain``,
    a form, or with no ``Content-Type``.
    """
    origin = headers.get("Origin")
    if origin is not None:
        raise IntakeError(
            403, f"requests from web pages are refused (Origin: {origin[:100]}): enqueue from your API or a tool"
        )
    content_type = headers.get("Content-Type")
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise IntakeError(415, f"send the message as JSON with Content-Type: application/json, not {content_type[:100]!r}")
