"""Dispatch: one message body in, one :class:`Outcome` out. The single path of both runtimes.

parse JSON -> look up the type -> validate the payload -> ``handler(message, ctx)``.
A handler that returns has *succeeded*; one that raises has *failed* and the
message is retried; a body that can never succeed (bad JSON, not an object, no
type, unknown type, invalid payload) is *rejected*: a permanent failure that
goes to the dead-letter queue with its reason.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.core.context import MessageContext, MessageLogger
from host.core.plugins import call_impl
from host.core.registry import Message

if TYPE_CHECKING:
    from host.core.registry import MessageType
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.dispatch")

#: The type a message is counted under in metrics when no installed plugin registered its type
#: (or it has none): a client sending made-up types cannot grow the number of series.
UNKNOWN_TYPE = "(unknown)"

#: How many known types an "unknown type" reason lists before eliding.
_KNOWN_TYPES_SHOWN = 20


class Status(str, enum.Enum):
    """What became of a message."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # transient: retry
    REJECTED = "rejected"  # permanent: dead-letter at once


@dataclass(slots=True)
class Outcome:
    """The result of dispatching one message.

    ``reason`` says, for a person, why a message failed or was rejected;
    ``error`` keeps the handler's exception for logs; ``duration_ms`` is how
    long the message took, 0 for one that never started (a FIFO group's message
    after a failure, one the Lambda deadline left out).
    """

    status: Status
    message_id: str
    type: str | None = None
    plugin: str | None = None
    reason: str | None = None
    error: BaseException | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the message was handled."""
        return self.status is Status.SUCCEEDED

    @property
    def metric_type(self) -> str:
        """The type to count this message under: its type when a plugin registered it, else :data:`UNKNOWN_TYPE`."""
        return self.type if self.plugin is not None and self.type is not None else UNKNOWN_TYPE

    @property
    def handler_seconds(self) -> float | None:
        """How long its handler ran, in seconds; None when no handler ran (rejected, or never started)."""
        if self.status is Status.REJECTED or self.plugin is None or self.duration_ms <= 0:
            return None
        return self.duration_ms / 1000


class Rejected(Exception):
    """Raised while reading a message that can never be handled; carries the reason."""

    def __init__(self, reason: str, type_: str | None = None, plugin: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.type = type_
        self.plugin = plugin


def refuse_json_constant(name: str) -> Any:
    """``parse_constant`` for :mod:`json`: NaN and Infinity are not JSON, so refuse them."""
    raise ValueError(f"{name} is not allowed in JSON")


# One decoder for every body: json.loads with an option would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=refuse_json_constant)


def _loads(body: str | bytes) -> Any:
    if type(body) is str and not body.startswith("\ufeff"):
        return _DECODER.decode(body)
    return json.loads(body, parse_constant=refuse_json_constant)  # bytes, or json.loads' own BOM error


def parse_body(body: str | bytes) -> dict[str, Any]:
    """Parse a message body into a JSON object with a valid ``type``; raise :class:`Rejected`."""
    try:
        value = _loads(body)
    except RecursionError:
        raise Rejected("body is not valid JSON: nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Rejected(f"body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise Rejected(f"body must be a JSON object with \"type\" and \"payload\", got {json_kind(value)}")
    if "type" not in value:
        raise Rejected("message has no \"type\"; expected {\"type\": \"...\", \"payload\": ...}")
    type_ = value["type"]
    if not isinstance(type_, str) or not type_:
        raise Rejected(f"message \"type\" must be a non-empty string, got {json.dumps(type_)[:80]}")
    return value


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, for error messages: "an array", "null"..."""
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def validation_reason(type_: str, error: Any) -> str:
    """A one-line account of a pydantic ``ValidationError``: each field and what is wrong."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "payload"
        problems.append(f"{where}: {item['msg']}")
    return f"payload of {type_!r} is invalid: " + "; ".join(problems)


def resolve(worker: Worker, body: dict[str, Any]) -> tuple[MessageType, Any]:
    """Find the registered type of ``body`` and validate its payload; raise :class:`Rejected`."""
    type_ = body["type"]
    entry = worker.registry.get(type_)
    if entry is None:
        known = [e.type for e in worker.registry]
        shown = ", ".join(known[:_KNOWN_TYPES_SHOWN]) + (", ..." if len(known) > _KNOWN_TYPES_SHOWN else "")
        reason = f"unknown message type {type_[:200]!r}: no installed plugin handles it (known: {shown or 'none'})"
        if worker.problems:
            # The type may belong to a plugin that did not load: say so, so the DLQ entry points at the fix.
            reason += "; plugins with load problems: " + ", ".join(sorted({p.plugin for p in worker.problems}))
        raise Rejected(reason, type_)
    payload = body.get("payload")
    if entry.payload is not None:
        try:
            payload = entry.payload.model_validate(payload)
        except _validation_error() as error:  # the except expression is evaluated only when something was raised
            raise Rejected(validation_reason(type_, error), type_, entry.plugin) from None
    return entry, payload


def _validation_error() -> type[Exception]:
    from pydantic import ValidationError

    return ValidationError


_plugin_loggers: dict[str, logging.Logger] = {}


def _plugin_logger(plugin: str) -> logging.Logger:
    """``letsgo.plugin.<plugin>``, looked up once per plugin (``logging.getLogger`` takes a lock)."""
    found = _plugin_loggers.get(plugin)
    if found is None:
        found = _plugin_loggers[plugin] = logging.getLogger(f"letsgo.plugin.{plugin}")
    return found


def message_context(
    worker: Worker, *, message_id: str, receive_count: int, type: str | None, plugin: str | None,
    attributes: dict[str, Any] | None, lambda_context: Any,
) -> MessageContext:
    """The ``ctx`` of one message, its logger bound to the message's fields (the plugin's logger, if known)."""
    bound = MessageLogger(
        _plugin_logger(plugin) if plugin is not None else logger,
        {"message_id": message_id, "message_type": type, "plugin": plugin},
    )
    return MessageContext(
        worker, bound, message_id=message_id, receive_count=receive_count, type=type,  # type: ignore[arg-type]
        plugin=plugin, attributes=attributes, lambda_context=lambda_context,  # type: ignore[arg-type]
    )


async def dispatch(
    worker: Worker,
    body: str | bytes,
    *,
    message_id: str,
    receive_count: int = 1,
    attributes: dict[str, Any] | None = None,
    lambda_context: Any = None,
) -> Outcome:
    """Handle one message body and return its :class:`Outcome`; never raises for bad input.

    Async handlers are awaited on the running loop; sync handlers run in the
    worker's bounded thread pool so that a batch's messages overlap.
    """
    started = time.perf_counter()
    try:
        parsed = parse_body(body)
        entry, payload = resolve(worker, parsed)
    except Rejected as rejection:
        outcome = Outcome(
            Status.REJECTED, message_id, rejection.type, rejection.plugin, rejection.reason,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        await notify_rejection(worker, outcome, receive_count)
        return outcome

    ctx = message_context(
        worker, message_id=message_id, receive_count=receive_count, type=entry.type,
        plugin=entry.plugin, attributes=attributes, lambda_context=lambda_context,
    )
    message = Message(entry.type, payload, message_id, parsed)
    try:
        if entry.is_async:
            await entry.handler(message, ctx)
        else:
            result = await asyncio.get_running_loop().run_in_executor(worker.executor, entry.handler, message, ctx)
            if inspect.isawaitable(result):
                await result
    except (Exception, SystemExit) as error:  # a handler's sys.exit() fails its message, not the worker
        return Outcome(
            Status.FAILED, message_id, entry.type, entry.plugin,
            f"{type(error).__name__}: {error}", error, (time.perf_counter() - started) * 1000,
        )
    return Outcome(Status.SUCCEEDED, message_id, entry.type, entry.plugin, duration_ms=(time.perf_counter() - started) * 1000)


def message_done(worker: Worker, hooks: list[Any], outcome: Outcome, context: Callable[[], MessageContext]) -> None:
    """Call each ``letsgo_message_done`` implementation in ``hooks`` with ``outcome`` and the message's ``ctx``.

    ``context()`` makes the ``ctx``, once, for the first implementation that
    takes one. Each implementation is called even when one before it raised;
    what one raises is logged naming its plugin, and changes neither the
    outcome nor the batch.
    """
    ctx = None
    for impl in hooks:
        if ctx is None and "ctx" in impl.argnames:
            ctx = context()
        try:
            result = call_impl(impl, outcome=outcome, ctx=ctx)
        except (Exception, SystemExit):  # as for handlers: a sys.exit() here must not end the batch's thread
            logger.exception(
                "plugin %r failed in letsgo_message_done for message %s; the message's outcome (%s) stands",
                impl.plugin_name, outcome.message_id or "without an id", outcome.status.value,
            )
            continue
        if result is not None and inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: closing it spares a "was never awaited" warning per message
            logger.error("plugin %r implements letsgo_message_done with async def; it must be a plain def", impl.plugin_name)


def rejection_text(outcome: Outcome) -> str:
    """The notification text sent when a message is rejected (Slack mrkdwn, values escaped).

    An unknown type opens with LetsGo's own warning, which said "ignoring"
    where this worker dead-letters.
    """
    from host.services.mrkdwn import escape_line

    unknown_type = outcome.type is not None and outcome.plugin is None  # how resolve() rejects an unknown type
    if unknown_type:
        head = (
            ":warning: Worker received an unsupported message type (it goes to the dead-letter queue): "
            f"'{escape_line(outcome.type[:200])}'"
        )
    else:
        head = ":warning: Worker rejected a message (it goes to the dead-letter queue)"
    lines = [head, f"*Message Id:* {escape_line(outcome.message_id)}"]
    if outcome.type is not None and not unknown_type:
        lines.append(f"*Type:* {escape_line(outcome.type[:200])}")
    lines.append(f"*Reason:* {escape_line(outcome.reason or '')}")
    return "\n".join(lines)


async def notify_rejection(worker: Worker, outcome: Outcome, receive_count: int) -> None:
    """Tell a person that a message was rejected, once per message (on its first receive).

    A failing sink is logged, not raised: the message is already going to the
    dead-letter queue, where it stays with its reason.
    """
    if receive_count > 1 or not worker.notifies:
        return
    try:
        await worker.anotify(rejection_text(outcome), level="warning", source="letsgo-worker")
    except Exception:
        logger.warning("could not send the rejection notification for message %s", outcome.message_id, exc_info=True)

