"""The host's built-in plugin: LetsGo's own message types.

Registered through the ``letsgo_worker`` entry-point group exactly like a
third-party plugin (the host dog-foods its hooks). The payload models follow
``@letsgo/types`` (field names as the app sends them, in camelCase); each
handler sends the notification LetsGo's worker sends, with every value that
came from a user escaped for Slack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from host import hookimpl
from host.services.mrkdwn import escape, escape_line, serialize_identity

if TYPE_CHECKING:
    from host.core.context import MessageContext
    from host.core.registry import Message

CONTACT = "letsgo:contact"
TENANT_NEW = "letsgo:tenant:new"
TENANT_DELETED = "letsgo:tenant:deleted"


# -------------------------------------------------------------------------
# Payloads (@letsgo/types, @letsgo/tenant, @letsgo/trust)
# -------------------------------------------------------------------------


# Validators are built on the first message of their type, not when a Lambda cold-starts.
_DEFERRED = ConfigDict(defer_build=True)


class _StoredItem(BaseModel):
    # LetsGo's database items carry more attributes than their type lists ([key: string]: any).
    model_config = ConfigDict(extra="allow", defer_build=True)


class Identity(_StoredItem):
    """An authenticated user: issuer and subject of their access token."""

    iss: str
    sub: str

    @property
    def identity_id(self) -> str:
        """LetsGo's serialised identity id (``idn-...``)."""
        return serialize_identity(self.iss, self.sub)


class CardInfo(_StoredItem):
    """The card on file of a Stripe subscription."""

    last4: str
    brand: str


class StripeSubscription(_StoredItem):
    """A tenant's Stripe subscription."""

    subscriptionId: str
    status: str
    currentPeriodEnd: str
    card: CardInfo | None = None


class SubscriptionPlanChange(_StoredItem):
    """One change of a tenant's plan."""

    timestamp: str
    updatedBy: Identity
    newPlanId: str | None


class SubscriptionPlan(_StoredItem):
    """A tenant's subscription plan (always present, even when free)."""

    planId: str
    stripeCustomerId: str | None = None
    stripeSubscription: StripeSubscription | None = None
    changes: list[SubscriptionPlanChange]


class Tenant(_StoredItem):
    """A LetsGo tenant. ``category``/``key`` are its database keys (absent from API responses)."""

    category: str | None = None
    key: str | None = None
    tenantId: str
    displayName: str
    createdAt: str
    createdBy: Identity
    updatedAt: str
    updatedBy: Identity
    deletedAt: str | None = None
    deletedBy: Identity | None = None
    plan: SubscriptionPlan


class DeletedTenant(Tenant):
    """A tenant after deletion: when and by whom are known."""

    deletedAt: str
    deletedBy: Identity


class ContactPayload(BaseModel):
    """``letsgo:contact``: a contact form submission."""

    model_config = _DEFERRED

    email: str
    name: str
    message: str
    timestamp: str
    query: dict[str, str]  # query parameters of the page the form was submitted from
    tenantId: str | None = None
    identityId: str | None = None


class TenantNewPayload(BaseModel):
    """``letsgo:tenant:new``: a tenant was created."""

    model_config = _DEFERRED

    tenant: Tenant


class TenantDeletedPayload(BaseModel):
    """``letsgo:tenant:deleted``: a tenant was deleted."""

    model_config = _DEFERRED

    tenant: DeletedTenant
    cancelledPlanId: str


# -------------------------------------------------------------------------
# Texts (LetsGo's, values escaped)
# -------------------------------------------------------------------------


def contact_text(contact: ContactPayload) -> str:
    """The notification of a contact form submission."""
    lines = [
        ":wave: New contact form submission",
        f"*Name:* {escape_line(contact.name)}",
        f"*Email:* {escape_line(contact.email)}",
        f"*Timestamp:* {escape_line(contact.timestamp)}",
    ]
    if contact.tenantId:
        lines.append(f"*Tenant Id:* {escape_line(contact.tenantId)}")
    if contact.identityId:
        lines.append(f"*Identity Id:* {escape_line(contact.identityId)}")
    lines += [f"*{escape_line(key)}:* {escape_line(value)}" for key, value in contact.query.items()]
    lines += ["*Message:*", escape(contact.message)]
    return "\n".join(lines)


def tenant_new_text(tenant: Tenant) -> str:
    """The notification of a new tenant."""
    return "\n".join(
        [
            ":rocket: Tenant created",
            f"*Tenant Id:* {escape_line(tenant.tenantId)}",
            f"*Name:* {escape_line(tenant.displayName)}",
            f"*Plan Id:* {escape_line(tenant.plan.planId)}",
            f"*Created by:* {tenant.createdBy.identity_id}",
            f"*Timestamp:* {escape_line(tenant.createdAt)}",
        ]
    )


def tenant_deleted_text(tenant: DeletedTenant, cancelled_plan_id: str) -> str:
    """The notification of a deleted tenant; the plan is the cancelled one, else the tenant's."""
    return "\n".join(
        [
            ":cry: Tenant deleted",
            f"*Tenant Id:* {escape_line(tenant.tenantId)}",
            f"*Name:* {escape_line(tenant.displayName)}",
            f"*Plan Id:* {escape_line(cancelled_plan_id or tenant.plan.planId)}",
            f"*Created by:* {tenant.createdBy.identity_id}",
            f"*Deleted by:* {tenant.deletedBy.identity_id}",
            f"*Timestamp:* {escape_line(tenant.deletedAt)}",
        ]
    )


# -------------------------------------------------------------------------
# Handlers
# -------------------------------------------------------------------------


async def handle_contact(message: Message[ContactPayload], ctx: MessageContext) -> None:
    """Announce a contact form submission. Replace or extend it to feed your CRM."""
    ctx.logger.debug("contact form submission")  # a success: its line is at DEBUG, the batch summary counts it
    if ctx.notifies:  # without a sink the text would be built, escaped and dropped
        await ctx.anotify(contact_text(message.payload), source=CONTACT)


async def handle_tenant_new(message: Message[TenantNewPayload], ctx: MessageContext) -> None:
    """Announce a new tenant."""
    ctx.logger.debug("new tenant %s", message.payload.tenant.tenantId)
    if ctx.notifies:
        await ctx.anotify(tenant_new_text(message.payload.tenant), source=TENANT_NEW)


async def handle_tenant_deleted(message: Message[TenantDeletedPayload], ctx: MessageContext) -> None:
    """Announce a deleted tenant."""
    payload = message.payload
    ctx.logger.debug("deleted tenant %s", payload.tenant.tenantId)
    if ctx.notifies:
        await ctx.anotify(tenant_deleted_text(payload.tenant, payload.cancelledPlanId), source=TENANT_DELETED)


@hookimpl
def letsgo_register_messages(register):
    """Register LetsGo's built-in types (``letsgo:contact``, ``letsgo:tenant:new``, ``letsgo:tenant:deleted``)."""
    register(CONTACT, handle_contact, payload=ContactPayload, description="A contact form submission (notifies)")
    register(TENANT_NEW, handle_tenant_new, payload=TenantNewPayload, description="A tenant was created (notifies)")
    register(
        TENANT_DELETED, handle_tenant_deleted, payload=TenantDeletedPayload,
        description="A tenant was deleted (notifies)",
    )


@hookimpl
def letsgo_startup(worker):
    """Count every message for ``GET /metrics`` where the runtime serves it (``serve`` turns it on).

    The counting is the host's own ``letsgo_message_done``, registered only
    then: in Lambda, without it, the hook costs nothing.
    """
    if "prometheus" in worker.settings.metrics:
        from host.ops.metrics import install

        install(worker)
