"""letsgo-stripe: the ``letsgo:stripe`` message type and per-Stripe-event dispatch.

- ``letsgo:stripe`` carries a Stripe Event plus LetsGo's ``stripeMode``; its
  handler runs every handler that plugins registered for the event's Stripe
  type through the ``letsgo_stripe_handlers`` hook (:mod:`letsgo_stripe.hookspecs`),
  and acknowledges types nobody handles with a notification.
- ``invoice.paid`` has a built-in handler, registered through that same hook:
  a notification with the exact amount, subscription and tenant.
- Thin events (``"object": "v2.core.event"``) are expanded first: their event
  and related object are fetched with the stripe SDK (:mod:`letsgo_stripe.thin`),
  so the same handlers get the current object.
- :func:`fresh` (``await fresh(event, ctx)``) fetches the current version of an
  event's object, with the API key of the event's mode.
- The local server gets ``POST /stripe/webhook``, which verifies Stripe's
  signature and enqueues the event (snapshot or thin).

Importing this module does not import the ``stripe`` SDK; the first Stripe
message or webhook does. Nor does starting a worker import the modules that
handle Stripe messages (:mod:`letsgo_stripe.dispatch`) or webhooks
(:mod:`letsgo_stripe.webhook`): the first Stripe message, or the local
server's routes, do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host import hookimpl
from letsgo_stripe import handlers, hookspecs, settings
from letsgo_stripe.api import fresh, fresh_sync
from letsgo_stripe.events import KNOWN_EVENT_TYPES, MESSAGE_TYPE, StripeEventPayload

if TYPE_CHECKING:
    from host import Message, MessageContext

__all__ = ["KNOWN_EVENT_TYPES", "MESSAGE_TYPE", "StripeEventPayload", "fresh", "fresh_sync", "stripe_handlers"]

stripe_handlers = handlers.stripe_handlers


async def handle_stripe_message(message: Message[StripeEventPayload], ctx: MessageContext) -> None:
    """Run every handler registered for the Stripe event's type (:func:`letsgo_stripe.dispatch.handle_stripe_message`).

    Its module is imported by the first Stripe message of a process, not by
    every worker's start.
    """
    from letsgo_stripe import dispatch

    await dispatch.handle_stripe_message(message, ctx)


@hookimpl
def letsgo_add_hookspecs(pluginmanager):
    """Add ``letsgo_stripe_handlers``, the hook app plugins implement to handle Stripe events."""
    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def letsgo_register_settings(register):
    """Declare the webhook signing secrets, the API keys and how long a running handler holds off duplicates."""
    for setting in settings.SETTINGS:
        register(setting)


@hookimpl
def letsgo_register_messages(register):
    """Register ``letsgo:stripe``."""
    register(
        MESSAGE_TYPE,
        handle_stripe_message,
        payload=StripeEventPayload,
        description="A Stripe webhook event, dispatched by Stripe event type to letsgo_stripe_handlers",
    )


@hookimpl
def letsgo_stripe_handlers(register):
    """The built-in ``invoice.paid`` notification."""
    from letsgo_stripe.invoices import notify_invoice_paid

    register("invoice.paid", notify_invoice_paid)


@hookimpl
def letsgo_startup(worker):
    """Collect every plugin's Stripe handlers, so a bad registration stops start-up."""
    handlers.install(worker)


@hookimpl
def letsgo_shutdown(worker):
    """Forget the stopped worker."""
    handlers.forget(worker)


@hookimpl
def letsgo_register_routes(register, worker):
    """Add ``POST /stripe/webhook`` to the local server, verifying with ``worker``'s secrets."""
    from letsgo_stripe.webhook import WEBHOOK_PATH, WebhookSecrets, webhook_route  # only the local server needs it

    # Stripe's signature proves the caller, so the route needs no same-origin guard.
    register("POST", WEBHOOK_PATH, webhook_route(lambda: WebhookSecrets.from_settings(worker.settings)),
             from_web_pages=True)
