"""Helpers for testing Stripe handlers: ``letsgo:stripe`` messages and signed webhook requests.

Use them with the fixtures of ``host.testing``::

    from host.testing import run_batch
    from letsgo_stripe.testing import stripe_message

    def test_invoice_paid(make_worker, notifications):
        worker = make_worker(plugins=[MyPlugin(), notifications])
        event = {"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {...}}}
        assert run_batch(worker, stripe_message(event)).response() == {"batchItemFailures": []}
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from letsgo_stripe.events import MESSAGE_TYPE


def stripe_message(event: Mapping[str, Any], mode: str = "TEST") -> dict[str, Any]:
    """The ``letsgo:stripe`` message LetsGo's API enqueues for ``event``: the event plus ``stripeMode``."""
    return {"type": MESSAGE_TYPE, "payload": {**event, "stripeMode": mode}}


def signature_header(body: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``body``, computed as Stripe does.

    ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>``.
    """
    payload = body.decode("utf-8") if isinstance(body, bytes) else body
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
