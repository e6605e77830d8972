"""The hook the Stripe plugin adds, so that any plugin can handle Stripe events.

``letsgo-stripe`` registers these specifications through
``letsgo_add_hookspecs`` when the worker starts. Implement the hook in your own
plugin with :data:`host.hookimpl`::

    from host import hookimpl

    async def on_invoice_paid(event, ctx):
        ...

    @hookimpl
    def letsgo_stripe_handlers(register):
        register("invoice.paid", on_invoice_paid)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host import hookspec

if TYPE_CHECKING:
    from letsgo_stripe.handlers import RegisterStripeHandler


# -------------------------------------------------------------------------
# Start-up: collecting the handlers of Stripe events
# -------------------------------------------------------------------------


@hookspec
def letsgo_stripe_handlers(register: RegisterStripeHandler) -> None:
    """Register handlers for Stripe event types (``invoice.paid``, ``customer.subscription.deleted``...).

    Called once per worker, for each plugin separately, when the worker starts
    (from ``letsgo-stripe``'s ``letsgo_startup``), so that every handler is
    recorded with the plugin that registered it. Not called at all when
    ``letsgo-stripe`` is not installed or is disabled.

    :param register: Call ``register(event_type, handler)`` once per Stripe
        event type you handle. ``event_type`` is Stripe's event type, a
        non-empty string such as ``"invoice.paid"``. ``handler`` is a ``def``
        or ``async def`` called as ``handler(event, ctx)``: ``event`` is the
        Stripe event as a ``stripe.Event`` (attribute access, ``to_dict()``;
        ``event.data.object`` is the invoice, subscription...; LetsGo's
        ``event.stripeMode`` is ``"LIVE"`` or ``"TEST"``, and
        ``event.stripePayload`` ``"snapshot"`` or ``"thin"``: a thin event's
        object was fetched from Stripe's API, and ``v1.invoice.paid`` runs the
        ``invoice.paid`` handlers) and ``ctx`` is the
        :class:`host.MessageContext` of the ``letsgo:stripe`` message.
        Returning means success; raising fails the message, which is
        retried. Several handlers may be registered for one type, by one or
        several plugins: all of them run, in registration order.

    A handler for one Stripe event id runs once even when Stripe or SQS
    delivers the event again, wherever the worker has an idempotency store
    (see the README); without one, handlers must tolerate repeats. Stripe
    event types with no handler are acknowledged with a notification.

    The return value is ignored. Any plugin may implement this hook; declare
    ``letsgo-stripe`` as a dependency of your distribution, or mark the
    implementation ``@hookimpl(optionalhook=True)`` so that your plugin also
    loads where ``letsgo-stripe`` is absent.
    """
