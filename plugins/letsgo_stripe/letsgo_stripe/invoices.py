"""The built-in ``invoice.paid`` notification: who paid what, for which subscription and tenant.

Invoices reach the worker in two shapes, because a webhook endpoint's events
follow the endpoint's API version: before ``2025-03-31.basil`` an invoice has
``subscription`` and ``subscription_details.metadata``; from then on both live
under ``parent.subscription_details``. Both are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from host import escape_mrkdwn_line
from letsgo_stripe.events import TENANT_ID_METADATA_KEY, mode_prefix
from letsgo_stripe.money import format_amount

if TYPE_CHECKING:
    import stripe

    from host import MessageContext

UNKNOWN = "unknown"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _id(value: Any) -> str | None:
    """An id given as a string, or as an expanded object with an ``id``."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def subscription_details(invoice: Mapping[str, Any]) -> Mapping[str, Any]:
    """``parent.subscription_details`` (API 2025-03-31 and later), else ``subscription_details``."""
    new = _mapping(_mapping(invoice.get("parent")).get("subscription_details"))
    return new or _mapping(invoice.get("subscription_details"))


def subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The id of the invoice's subscription in either shape; None for a one-off invoice."""
    return _id(subscription_details(invoice).get("subscription")) or _id(invoice.get("subscription"))


def tenant_id(invoice: Mapping[str, Any]) -> str | None:
    """LetsGo's tenant id from the subscription's metadata (``letsgo-tenantId``), in either shape."""
    for details in (
        _mapping(_mapping(invoice.get("parent")).get("subscription_details")),
        _mapping(invoice.get("subscription_details")),
    ):
        value = _mapping(details.get("metadata")).get(TENANT_ID_METADATA_KEY)
        if isinstance(value, str) and value:
            return value
    return None


def amount_paid(invoice: Mapping[str, Any]) -> str:
    """``amount_paid`` with its currency, e.g. ``"USD 19.99"``; ``"unknown"`` when either is missing."""
    amount, currency = invoice.get("amount_paid"), invoice.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str) or not currency:
        return UNKNOWN
    return format_amount(amount, currency)


def invoice_paid_text(invoice: Mapping[str, Any], mode: str | None) -> str:
    """The Slack text of LetsGo's ``invoice.paid`` notification, with the exact amount."""
    return "\n".join(
        (
            f":boom::moneybag: {mode_prefix(mode)} You've got paid *{amount_paid(invoice)}*",
            # Metadata is free text set by the app: escaped so it cannot mention or link.
            f"*Subscription Id:* {escape_mrkdwn_line(subscription_id(invoice) or UNKNOWN)}",
            f"*Tenant Id:* {escape_mrkdwn_line(tenant_id(invoice) or UNKNOWN)}",
        )
    )


def notify_invoice_paid(event: stripe.Event, ctx: MessageContext) -> None:
    """Notify that an invoice was paid (registered by this plugin for ``invoice.paid``)."""
    values = event.to_dict()
    invoice = _mapping(_mapping(values.get("data")).get("object"))
    ctx.notify(invoice_paid_text(invoice, values.get("stripeMode")), source="letsgo-stripe")
