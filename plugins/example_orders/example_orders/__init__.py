"""example-orders: the worked example for plugin authors.

It adds the ``OrderNew`` message type of LetsGo's "Develop the worker" guide:
a pydantic model for the payload, a handler, and one hook that registers both.
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
