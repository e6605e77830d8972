"""The ``letsgo:stripe`` handler: a second dispatch, by Stripe event type, to every registered handler.

For one Stripe event every handler of its type runs, in registration order,
even when an earlier one fails; if any failed, the message fails and is
retried. With an idempotency store (``host.idempotency.get_store``) each
handler runs once per Stripe event id: a redelivery skips the handlers that
already succeeded and runs again only those that failed or were interrupted.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.errors import WorkerError
from letsgo_stripe.events import StripeEventPayload
from letsgo_stripe.handlers import HandlerEntry, StripeHandlers, collect_handlers

if TYPE_CHECKING:
    import stripe

    from host import Message, MessageContext
    from host.worker import Worker

#: How long a handler that succeeded is remembered: longer than Stripe retries an event (3 days).
DONE_TTL_SECONDS = 7 * 24 * 3600
#: Shortest claim held while a handler runs; the claim lapses after a crash so a redelivery can run it.
MIN_LEASE_SECONDS = 60.0

_UNSET: Any = object()


class StripeHandlerError(WorkerError):
    """One or more handlers of a Stripe event failed; the message is retried."""


@dataclass
class WorkerState:
    """What the plugin keeps per worker: its handler table and idempotency store."""

    handlers: StripeHandlers
    store: Any = _UNSET
    lock: threading.Lock = field(default_factory=threading.Lock)


_states: weakref.WeakKeyDictionary[Worker, WorkerState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def install(worker: Worker) -> WorkerState:
    """Collect ``worker``'s Stripe handlers (at start-up); a registration error stops start-up."""
    state = WorkerState(collect_handlers(worker))
    with _states_lock:
        _states[worker] = state
    return state


def state_for(worker: Worker) -> WorkerState:
    """The plugin's state for ``worker``, collected now if start-up did not."""
    with _states_lock:
        state = _states.get(worker)
    return state if state is not None else install(worker)


def forget(worker: Worker) -> None:
    """Drop the state of a stopped worker."""
    with _states_lock:
        _states.pop(worker, None)


def stripe_handlers(worker: Worker) -> StripeHandlers:
    """Every Stripe handler of ``worker``, with the plugin that registered it."""
    return state_for(worker).handlers


def idempotency_store(worker: Worker) -> Any:
    """The host's idempotency store for ``worker`` (None: no deduplication), looked up once."""
    state = state_for(worker)
    if state.store is _UNSET:
        with state.lock:
            if state.store is _UNSET:
                state.store = _host_store(worker)
    return state.store


def _host_store(worker: Worker) -> Any:
    try:
        from host.idempotency import get_store
    except ModuleNotFoundError as error:
        if error.name != "host.idempotency":
            raise
        return None  # a host without the idempotency module: no deduplication
    return get_store(worker)


def build_event(values: dict[str, Any]) -> stripe.Event:
    """The Stripe SDK's ``Event`` for ``values``; the only place the plugin imports ``stripe`` for it."""
    import stripe

    return stripe.Event.construct_from(values, stripe.api_key or None)


def mode_prefix(mode: str | None) -> str:
    """``"[TEST]"`` or ``"[LIVE]"``, as LetsGo prefixes its Stripe notifications."""
    return f"[{mode or 'TEST'}]"


def notify_unhandled(event: stripe.Event, ctx: MessageContext) -> None:
    """Acknowledge a Stripe event no plugin handles, with a notification, so it does not fill the DLQ."""
    from host.slack_text import escape_line

    # required=False: a sink that is down must not turn an acknowledgement into retries and a DLQ entry.
    ctx.notify(
        f":credit_card: {mode_prefix(event['stripeMode'])} Worker received an unhandled Stripe event: "
        f"{escape_line(event.type)}",
        source="letsgo-stripe",
        required=False,
    )


def _unhandled_entry(event_type: str) -> HandlerEntry:
    return HandlerEntry(event_type, notify_unhandled, "letsgo_stripe", "letsgo-stripe", is_async=False)


async def handle_stripe_message(message: Message[StripeEventPayload], ctx: MessageContext) -> None:
    """Run every handler registered for the Stripe event's type (or notify that none is)."""
    payload = message.payload
    worker = ctx.worker
    entries = stripe_handlers(worker).for_type(payload.type) or [_unhandled_entry(payload.type)]
    loop = asyncio.get_running_loop()
    # The raw event as sent (not a re-serialised model), with stripeMode normalised.
    values = {**message.body["payload"], "stripeMode": payload.stripeMode}
    # Off the event loop: the first Stripe message of a process pays for `import stripe`.
    event = await loop.run_in_executor(worker.executor, build_event, values)
    store = await loop.run_in_executor(worker.executor, idempotency_store, worker)
    lease = max(float(worker.settings.visibility_timeout), MIN_LEASE_SECONDS)

    failures: list[tuple[HandlerEntry, BaseException]] = []
    for entry in entries:
        key = f"stripe:{payload.id}:{entry.name}"
        if store is not None and not await loop.run_in_executor(
            worker.executor, functools.partial(store.claim, key, ttl_seconds=lease)
        ):
            ctx.logger.info(
                "Stripe event %s (%s): %s of plugin %r already ran or is running; skipped",
                payload.id, payload.type, entry.name, entry.plugin,
            )
            continue
        try:
            await _call(entry, event, ctx, loop)
        except Exception as error:
            ctx.logger.exception(
                "Stripe event %s (%s): handler %s of plugin %r failed", payload.id, payload.type, entry.name, entry.plugin
            )
            failures.append((entry, error))
            if store is not None:
                await loop.run_in_executor(worker.executor, store.release, key)
            continue
        if store is not None:
            await loop.run_in_executor(worker.executor, _remember_done, store, key)
    if failures:
        details = "; ".join(
            f"{entry.name} of plugin {entry.plugin!r}: {type(error).__name__}: {error}" for entry, error in failures
        )
        raise StripeHandlerError(
            f"{len(failures)} of {len(entries)} handlers of Stripe event {payload.id} ({payload.type}) failed: {details}"
        ) from failures[0][1]


def _remember_done(store: Any, key: str) -> None:
    # The running claim is a short lease (so a crash does not lose the event);
    # once the handler succeeded, hold the key for as long as Stripe may resend.
    store.release(key)
    store.claim(key, ttl_seconds=DONE_TTL_SECONDS)


async def _call(entry: HandlerEntry, event: stripe.Event, ctx: MessageContext, loop: asyncio.AbstractEventLoop) -> None:
    if entry.is_async:
        await entry.handler(event, ctx)
        return
    result = await loop.run_in_executor(ctx.worker.executor, entry.handler, event, ctx)
    if inspect.isawaitable(result):
        await result
