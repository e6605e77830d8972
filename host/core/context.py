"""What a handler or scheduled hook receives besides its message: ``ctx``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.core.worker import Worker


class MessageLogger(logging.LoggerAdapter):
    """``ctx.logger`` of a message: every record carries the message's fields (``extra``).

    The same as :class:`logging.LoggerAdapter`, by a shorter path: handlers
    log on every message.
    """

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log ``msg % args`` at ``level`` with the message's fields."""
        if not isinstance(level, int):
            self.logger.log(level, msg, *args, **kwargs)  # raises the usual TypeError
        elif self.logger.isEnabledFor(level):
            kwargs["extra"] = self.extra
            # One frame more than Logger.log: this one is skipped to name the caller as the record's origin.
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            self.logger._log(level, msg, args, **kwargs)


class Context:
    """Context of a scheduled tick, and the base of :class:`MessageContext`.

    :ivar worker: the running :class:`host.core.worker.Worker`
    :ivar logger: a logger bound to this unit of work
    :ivar lambda_context: the AWS Lambda context object, or None outside Lambda
    """

    __slots__ = ("worker", "logger", "lambda_context")

    def __init__(self, worker: Worker, logger: logging.LoggerAdapter | logging.Logger, lambda_context: Any = None):
        self.worker = worker
        self.logger = logger
        self.lambda_context = lambda_context

    def remaining_time_ms(self) -> int | None:
        """Milliseconds left before Lambda stops this invocation; None outside Lambda."""
        if self.lambda_context is None:
            return None
        return int(self.lambda_context.get_remaining_time_in_millis())

    @property
    def notifies(self) -> bool:
        """True when :meth:`notify` would reach anyone (a sink, or the DEBUG log).

        Check it before building a costly text::

            if ctx.notifies:
                await ctx.anotify(summary_of(order))
        """
        return self.worker.notifies

    def notify(self, text: str, **options: Any) -> None:
        """Send a notification through every installed sink; for ``def`` code (see :meth:`host.core.worker.Worker.notify`).

        Options: ``blocks``, ``level``, ``source``, and ``required=False`` to log
        a failed delivery instead of failing the message.
        """
        self.worker.notify(text, **options)

    async def anotify(self, text: str, **options: Any) -> None:
        """:meth:`notify` for ``async def`` code: ``await ctx.anotify(text)`` keeps the event loop free."""
        await self.worker.anotify(text, **options)

    def enqueue(self, message: dict[str, Any], delay_seconds: float = 0, **options: Any) -> str:
        """Enqueue a follow-up message through the worker; return its id (see :meth:`host.core.worker.Worker.enqueue`).

        Options: ``group_id`` and ``deduplication_id`` for FIFO queues.
        """
        return self.worker.enqueue(message, delay_seconds, **options)

    async def aenqueue(self, message: dict[str, Any], delay_seconds: float = 0, **options: Any) -> str:
        """:meth:`enqueue` for ``async def`` code: the call runs in a thread, the event loop stays free."""
        import asyncio

        return await asyncio.to_thread(self.worker.enqueue, message, delay_seconds, **options)


class MessageContext(Context):
    """Context of one message delivery.

    :ivar message_id: the SQS (or local queue) message id
    :ivar receive_count: how many times this message has been received, 1 on first delivery
    :ivar type: the message type
    :ivar plugin: the plugin that registered the type
    :ivar attributes: the SQS record's ``attributes`` (``MessageGroupId``...)
    """

    __slots__ = ("message_id", "receive_count", "type", "plugin", "attributes")

    def __init__(
        self,
        worker: Worker,
        logger: logging.LoggerAdapter | logging.Logger,
        *,
        message_id: str,
        receive_count: int,
        type: str,
        plugin: str,
        attributes: dict[str, Any] | None = None,
        lambda_context: Any = None,
    ):
        # The base's attributes set here, not through super().__init__: this runs for every message.
        self.worker = worker
        self.logger = logger
        self.lambda_context = lambda_context
        self.message_id = message_id
        self.receive_count = receive_count
        self.type = type
        self.plugin = plugin
        self.attributes = attributes or {}
