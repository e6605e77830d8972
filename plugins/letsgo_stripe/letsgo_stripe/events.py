"""The ``letsgo:stripe`` message: its payload model and the Stripe event types LetsGo knows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MESSAGE_TYPE = "letsgo:stripe"

#: Metadata key under which LetsGo stores the tenant id on a Stripe subscription.
TENANT_ID_METADATA_KEY = "letsgo-tenantId"

#: The subscription lifecycle events of LetsGo's worker (its Stripe handler table,
#: after https://stripe.com/docs/billing/subscriptions/overview#subscription-events).
SUBSCRIPTION_LIFECYCLE_TYPES: tuple[str, ...] = (
    "customer.created",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "invoice.created",
    "invoice.finalized",
    "invoice.finalization_failed",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.upcoming",
    "invoice.updated",
    "payment_intent.created",
    "payment_intent.succeeded",
    "subscription_schedule.aborted",
    "subscription_schedule.canceled",
    "subscription_schedule.completed",
    "subscription_schedule.created",
    "subscription_schedule.expiring",
    "subscription_schedule.released",
    "subscription_schedule.updated",
)

#: Every Stripe event type this plugin documents; handlers may be registered for any other type too.
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(SUBSCRIPTION_LIFECYCLE_TYPES + ("checkout.session.completed",))

StripeMode = Literal["LIVE", "TEST"]


def mode_prefix(mode: str | None) -> str:
    """``"[TEST]"`` or ``"[LIVE]"``, as LetsGo prefixes its Stripe notifications."""
    return f"[{mode or 'TEST'}]"


class StripeEventData(BaseModel):
    """``data`` of a Stripe event: the object the event is about."""

    model_config = ConfigDict(extra="allow", defer_build=True)  # built on the first Stripe message

    object: dict[str, Any]


#: ``object`` of a thin event notification (Stripe's v2 events); a snapshot event's is ``"event"``.
THIN_EVENT_OBJECT = "v2.core.event"


class StripeEventPayload(BaseModel):
    """Payload of ``letsgo:stripe``: a Stripe event plus LetsGo's ``stripeMode``.

    Either a *snapshot* event (``data.object`` holds the object as it was) or
    a *thin* event notification (``"object": "v2.core.event"``, no data: the
    event and its ``related_object`` are fetched from Stripe's API). Only what
    dispatch relies on is checked; every other field of the event is kept as
    sent. ``stripeMode`` is ``"LIVE"`` or ``"TEST"`` as LetsGo's API sends it
    (any case is accepted); when it is absent it is taken from the event's
    ``livemode``.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)  # built on the first Stripe message

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    object: str | None = None
    data: StripeEventData | None = None
    related_object: dict[str, Any] | None = None
    #: On the thin twin of a snapshot event, the snapshot event's id.
    snapshot_event: str | None = None
    stripeMode: StripeMode

    @property
    def thin(self) -> bool:
        """True for a thin event notification, whose event and object must be fetched."""
        return self.object == THIN_EVENT_OBJECT

    @model_validator(mode="before")
    @classmethod
    def _mode_from_livemode(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        mode = value.get("stripeMode")
        if mode is None and isinstance(value.get("livemode"), bool):
            return {**value, "stripeMode": "LIVE" if value["livemode"] else "TEST"}
        if isinstance(mode, str) and mode.upper() in ("LIVE", "TEST"):
            return {**value, "stripeMode": mode.upper()}
        return value

    @model_validator(mode="after")
    def _snapshot_has_data(self) -> StripeEventPayload:
        if not self.thin and self.data is None:
            raise ValueError(
                "a snapshot Stripe event needs data.object (a thin event notification has \"object\": \"v2.core.event\")"
            )
        return self
