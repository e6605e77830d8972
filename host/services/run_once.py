"""Run a piece of work once per key: :func:`run_once` (a context manager) and :func:`idempotent` (a decorator).

Both use the worker's idempotency store (:func:`host.idempotency_store`)::

    from host import idempotent, run_once

    @idempotent(key=lambda message, ctx: f"order-email:{message.payload.orderId}")
    async def handle_order_new(message, ctx):
        await send_confirmation_email(message.payload)

    def handle_refund(message, ctx):
        with run_once(ctx, f"refund:{message.payload.refundId}") as first_time:
            if first_time:
                issue_refund(message.payload)

The work is marked *in progress* when it starts, *completed* when the block
(or the handler) returns, and given up when it raises, so the retry does it.
A key whose work another delivery is doing right now raises
:class:`IdempotencyInProgressError`: the message fails and is retried later,
when the work is completed (then skipped) or that delivery died (its record
expired; then this one does it). Without a store everything simply runs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from host.services.idempotency import DEFAULT_TTL_SECONDS, IdempotencyError, get_store

if TYPE_CHECKING:
    from host.core.context import Context
    from host.core.worker import Worker


class IdempotencyInProgressError(IdempotencyError):
    """Another delivery is doing the work of this key right now; the message is retried later."""


def default_expiry(ctx: Context | None, worker: Worker) -> float:
    """How long an in-progress record lives: the remaining Lambda time, else the visibility timeout.

    No delivery outlives either, so a crashed one's record has expired by
    the time its message is delivered again: a crash never wedges a key.
    """
    remaining = ctx.remaining_time_ms() if ctx is not None else None
    seconds = remaining / 1000 if remaining is not None else float(worker.settings.visibility_timeout)
    return max(seconds, 1.0)


class run_once:  # noqa: N801 (used like a function: ``with run_once(ctx, key) as first_time``)
    """``with run_once(ctx, key) as first_time:`` (or ``async with``): True when this caller must do the work.

    :param ctx: the handler's ``ctx`` (or a :class:`host.Worker`, for code outside handlers)
    :param key: what identifies the work, e.g. ``f"order-email:{order_id}"``
    :param expires_in: seconds the in-progress record lives (default: :func:`default_expiry`)
    :param ttl_seconds: seconds the completed record is kept (default a week; None: forever)
    """

    def __init__(self, ctx: Any, key: str, *, expires_in: float | None = None,
                 ttl_seconds: float | None = DEFAULT_TTL_SECONDS):
        self.ctx = ctx if hasattr(ctx, "worker") else None
        self.worker = ctx.worker if self.ctx is not None else ctx
        self.key = key
        self.expires_in = expires_in
        self.ttl_seconds = ttl_seconds
        self._store: Any = None
        self._token: str | None = None

    def __enter__(self) -> bool:
        self._store = get_store(self.worker)
        if self._store is None:
            return True  # no store: no deduplication
        expires_in = self.expires_in if self.expires_in is not None else default_expiry(self.ctx, self.worker)
        # The owner lets a redelivery of the same message take over its own crashed attempt at once.
        begun = self._store.begin(self.key, expires_in=expires_in, owner=getattr(self.ctx, "message_id", None))
        if begun.started:
            self._token = begun.token
            return True
        if begun.completed:
            return False
        raise IdempotencyInProgressError(
            f"the work of idempotency key {self.key!r} is in progress in another delivery "
            f"(until Unix time {begun.record.expires_at:.0f}); this message is retried later"
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._token is not None:
            token, self._token = self._token, None
            if exc_type is None:
                self._store.complete(self.key, token, ttl_seconds=self.ttl_seconds)
            else:
                self._store.abandon(self.key, token)
        return False  # an exception of the block propagates

    async def __aenter__(self) -> bool:
        # Store calls are network or disk I/O: off the event loop.
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return await asyncio.to_thread(self.__exit__, exc_type, exc, tb)


def idempotent(key: Callable[[Any, Any], str], *, expires_in: float | None = None,
               ttl_seconds: float | None = DEFAULT_TTL_SECONDS) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a message handler (``def`` or ``async def``) so that it runs once per ``key(message, ctx)``.

    A repeat returns None without calling the handler; see :class:`run_once`
    for ``expires_in`` and ``ttl_seconds``.
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def run_async(message: Any, ctx: Any) -> Any:
                async with run_once(ctx, key(message, ctx), expires_in=expires_in, ttl_seconds=ttl_seconds) as first:
                    if first:
                        return await handler(message, ctx)
                return None

            return run_async

        @functools.wraps(handler)
        def run(message: Any, ctx: Any) -> Any:
            with run_once(ctx, key(message, ctx), expires_in=expires_in, ttl_seconds=ttl_seconds) as first:
                if first:
                    return handler(message, ctx)
            return None

        return run

    return decorate
