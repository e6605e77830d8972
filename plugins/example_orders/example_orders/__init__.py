"""example-orders: the worked example for plugin authors.

It adds the ``OrderNew`` message type of LetsGo's "Develop the worker" guide:
a pydantic model for the payload, a handler, and one hook that registers both;
and a named schedule, ``orders-daily-report``, whose handler runs every
morning at 09:00 Paris time (locally under ``letsgo-worker serve``, and in AWS
as the EventBridge Scheduler schedule ``letsgo-worker schedules --cloudformation``
prints).
The distribution's ``pyproject.toml`` declares the entry point that makes the
worker find this module::

    [project.entry-points.letsgo_worker]
    example_orders = "example_orders"
"""

from __future__ import annotations

from pydantic import BaseModel

from host import Message, MessageContext, hookimpl


class OrderNew(BaseModel):
    """Payload of ``OrderNew``: a new order was created."""

    orderId: str
    customerId: str


async def handle_order_new(message: Message[OrderNew], ctx: MessageContext) -> None:
    """Handle a new order. Replace the body with your own work (call the API, notify...).

    Raising makes the message fail and be retried; returning marks it done.
    Delivery is at least once, so keep this idempotent.
    """
    order = message.payload
    ctx.logger.info("new order %s for customer %s", order.orderId, order.customerId)


@hookimpl
def letsgo_register_messages(register):
    """Register the ``OrderNew`` type with its payload model and handler."""
    register("OrderNew", handle_order_new, payload=OrderNew, description="A new order was created")


#: When the daily report runs: EventBridge Scheduler's cron(), read in REPORT_TIMEZONE.
REPORT_SCHEDULE = "cron(0 9 * * ? *)"
REPORT_TIMEZONE = "Europe/Paris"


def send_daily_report(event, ctx) -> None:
    """Tell the team the report ran. Replace the body with your own (sum yesterday's orders...).

    Called on each tick of ``orders-daily-report`` only, with Scheduler's event
    (``event["time"]`` is the tick's instant) and a :class:`host.Context`.
    Raising fails the tick; in AWS the invocation is retried.
    """
    ctx.logger.info("daily order report for the tick at %s", event.get("time"))
    ctx.notify(f"Daily order report ({event.get('time')})", source="example_orders")


@hookimpl
def letsgo_register_schedules(register):
    """Register the ``orders-daily-report`` schedule."""
    register(
        "orders-daily-report", REPORT_SCHEDULE, send_daily_report,
        timezone=REPORT_TIMEZONE, description="Sends the daily order report at 09:00, Paris time",
    )
