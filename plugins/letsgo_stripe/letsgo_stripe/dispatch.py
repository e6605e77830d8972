"""The ``letsgo:stripe`` handler: a second dispatch, by Stripe event type, to every registered handler.

For one Stripe event every handler of its type runs, in registration order,
even when an earlier one fails; if any failed, the message fails and is
retried. With an idempotency store (:func:`host.idempotency_store`) each
handler runs once per Stripe event id, with one record per handler and event
(``stripe:<event id>:<module.handler>``):

- *in progress* while a delivery runs the handler, until the remaining
  Lambda time or the visibility timeout is over (``LETSGO_STRIPE_IN_PROGRESS_SECONDS``
  overrides): a duplicate delivered meanwhile skips it, because the message
  of the delivery running it stays queued until it succeeded, and a crashed
  delivery's record has expired by the time its message comes back (the same
  message redelivered at once takes over its own record);
- *completed* for 7 days once it succeeded: later deliveries skip it;
- removed when it raised (only that delivery's own record), so the retry runs
  that handler, and only it, again.

A thin event and its snapshot twin share the snapshot event's id
(``snapshot_event``), so a handler runs once for the pair.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any

from host import WorkerError
from letsgo_stripe.events import StripeEventPayload, mode_prefix
from letsgo_stripe.handlers import HandlerEntry, stripe_handlers
from letsgo_stripe.settings import IN_PROGRESS_SECONDS
from letsgo_stripe.thin import handler_type as thin_handler_type

if TYPE_CHECKING:
    import stripe

    from host import Message, MessageContext, Worker

#: How long a handler that succeeded is remembered: longer than Stripe retries an event (3 days).
DONE_TTL_SECONDS = 7 * 24 * 3600


class StripeHandlerError(WorkerError):
    """One or more handlers of a Stripe event failed; the message is retried."""


def idempotency_store(worker: Worker) -> Any:
    """The host's idempotency store for ``worker`` (made once per worker), or None: no deduplication."""
    import host  # the store's module is loaded by the first Stripe message, not at import

    return host.idempotency_store(worker)


def build_event(values: dict[str, Any]) -> stripe.Event:
    """The Stripe SDK's ``Event`` for ``values``; the only place the plugin imports ``stripe`` for it."""
    import stripe

    return stripe.Event.construct_from(values, stripe.api_key or None)


def notify_unhandled(event: stripe.Event, ctx: MessageContext) -> None:
    """Acknowledge a Stripe event no plugin handles, with a notification, so it does not fill the DLQ."""
    from host import escape_mrkdwn_line

    # required=False: a sink that is down must not turn an acknowledgement into retries and a DLQ entry.
    ctx.notify(
        f":credit_card: {mode_prefix(event['stripeMode'])} Worker received an unhandled Stripe event: "
        f"{escape_mrkdwn_line(event.type)}",
        source="letsgo-stripe",
        required=False,
    )


def _unhandled_entry(event_type: str) -> HandlerEntry:
    return HandlerEntry(event_type, notify_unhandled, "letsgo_stripe", "letsgo-stripe", is_async=False)


async def handle_stripe_message(message: Message[StripeEventPayload], ctx: MessageContext) -> None:
    """Run every handler registered for the Stripe event's type (or notify that none is).

    A thin event is first expanded: its event and related object are fetched
    from Stripe's API (:mod:`letsgo_stripe.thin`), so its handlers are those of
    the snapshot type and get the current object.
    """
    payload = message.payload
    worker = ctx.worker
    loop = asyncio.get_running_loop()
    event_type = thin_handler_type(payload.type) if payload.thin else payload.type
    entries = stripe_handlers(worker).for_type(event_type)
    # The raw event as sent (not a re-serialised model), with stripeMode normalised.
    values = {**message.body["payload"], "stripeMode": payload.stripeMode}
    # Off the event loop: the first Stripe message of a process pays for `import stripe`, a thin one for API calls.
    event = await loop.run_in_executor(worker.executor, _event, values, payload, event_type, bool(entries), worker)
    entries = entries or [_unhandled_entry(event_type)]
    store = await loop.run_in_executor(worker.executor, idempotency_store, worker)
    expires_in = in_progress_seconds(ctx)

    failures: list[tuple[HandlerEntry, BaseException]] = []
    for entry in entries:
        # A thin twin shares its snapshot event's id, so a handler runs once for the pair.
        key = f"stripe:{payload.snapshot_event or payload.id}:{entry.name}"
        begun = None
        if store is not None:
            begin = functools.partial(store.begin, key, expires_in=expires_in, owner=ctx.message_id)
            begun = await loop.run_in_executor(worker.executor, begin)
            if not begun.started:
                ctx.logger.info(
                    "Stripe event %s (%s): %s of plugin %r skipped: %s", payload.id, payload.type, entry.name,
                    entry.plugin, "it already ran for this event" if begun.completed
                    else "another delivery of the event is running it",
                )
                continue
        try:
            await _call(entry, event, ctx, loop)
        except Exception as error:
            ctx.logger.exception(
                "Stripe event %s (%s): handler %s of plugin %r failed", payload.id, payload.type, entry.name, entry.plugin
            )
            failures.append((entry, error))
            if begun is not None:
                abandon = functools.partial(store.abandon, key, begun.token)
                await loop.run_in_executor(worker.executor, _settle, abandon, ctx)
            continue
        if begun is not None:
            complete = functools.partial(store.complete, key, begun.token, ttl_seconds=DONE_TTL_SECONDS)
            await loop.run_in_executor(worker.executor, _settle, complete, ctx)
    if failures:
        details = "; ".join(
            f"{entry.name} of plugin {entry.plugin!r}: {type(error).__name__}: {error}" for entry, error in failures
        )
        raise StripeHandlerError(
            f"{len(failures)} of {len(entries)} handlers of Stripe event {payload.id} ({payload.type}) failed: {details}"
        ) from failures[0][1]


def _event(values: dict[str, Any], payload: StripeEventPayload, event_type: str, handled: bool,
           worker: Worker) -> stripe.Event:
    """The ``stripe.Event`` handlers get: a snapshot as sent, a thin event fetched (unless nobody handles it)."""
    if not payload.thin:
        return build_event({**values, "stripePayload": "snapshot"})
    if not handled:  # acknowledged with a notification: nothing to fetch, no API key needed
        return build_event({**values, "type": event_type, "data": {"object": {}}, "stripePayload": "thin"})
    from letsgo_stripe.thin import build_thin_event

    return build_thin_event(values, payload.stripeMode, worker)


def in_progress_seconds(ctx: MessageContext) -> float:
    """How long a running handler's record lives: the setting, else the remaining Lambda time, else the visibility timeout.

    Lambda requires the queue's visibility timeout to cover the function's
    timeout, so no delivery outlives either: a crashed delivery's record has
    expired when its message is delivered again.
    """
    configured = ctx.worker.settings.get(IN_PROGRESS_SECONDS)
    if configured is not None:
        return configured
    remaining = ctx.remaining_time_ms()
    return max(remaining / 1000 if remaining is not None else float(ctx.worker.settings.visibility_timeout), 1.0)


def _settle(record: Any, ctx: MessageContext) -> None:
    # A store error after the handler ran is only logged: the handler's own
    # outcome decides the message's, and an in-progress record expires by itself.
    try:
        record()
    except Exception:
        ctx.logger.warning("could not record a Stripe handler's outcome in the idempotency store", exc_info=True)


async def _call(entry: HandlerEntry, event: stripe.Event, ctx: MessageContext, loop: asyncio.AbstractEventLoop) -> None:
    if entry.is_async:
        await entry.handler(event, ctx)
        return
    result = await loop.run_in_executor(ctx.worker.executor, entry.handler, event, ctx)
    if inspect.isawaitable(result):
        await result
