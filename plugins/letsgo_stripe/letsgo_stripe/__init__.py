"""letsgo-stripe: the ``letsgo:stripe`` message type and per-Stripe-event dispatch."""

from host import hookimpl


@hookimpl
def letsgo_register_messages(register):
    """Register ``letsgo:stripe``."""
