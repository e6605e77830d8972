"""Thin events: Stripe's small notifications (``"object": "v2.core.event"``) that carry no snapshot.

For each one the event and its related object are fetched with the stripe SDK
(``GET /v2/core/events/<id>``, then the ``related_object``'s URL), so that
handlers get the object as it is now, in the same shape as a snapshot event:
``event.data.object`` is the fetched object, ``event.type`` the type handlers
register (``v1.invoice.paid`` is dispatched as ``invoice.paid``), and
``event.stripePayload`` is ``"thin"`` (``"snapshot"`` for a snapshot event).
The fetched v2 event is ``event.thinEvent``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from letsgo_stripe import api

if TYPE_CHECKING:
    import stripe

    from host import Worker

#: Prefix of the thin versions of v1 (snapshot) event types: ``v1.invoice.paid`` is ``invoice.paid``'s.
V1_PREFIX = "v1."


def handler_type(event_type: str) -> str:
    """The type handlers register for a thin event's type: ``v1.invoice.paid`` -> ``invoice.paid``; v2 types as they are."""
    return event_type[len(V1_PREFIX):] if event_type.startswith(V1_PREFIX) else event_type


def expand(notification: dict[str, Any], mode: str, worker: Worker) -> dict[str, Any]:
    """The snapshot-shaped values of a thin ``notification``: its event and related object fetched with ``mode``'s key.

    Blocking I/O: call it off the event loop. Raises
    :class:`letsgo_stripe.api.StripeApiError` when Stripe's API cannot be
    reached or refuses (the message fails and is retried).
    """
    sdk = api.client(worker, mode)
    try:
        parsed = sdk.parse_event_notification_without_verification(json.dumps(notification))
        event = parsed.fetch_event()
        # Notifications without a related object (a ping...) have no fetch_related_object.
        fetch_related = getattr(parsed, "fetch_related_object", None)
        related = fetch_related() if fetch_related is not None and notification.get("related_object") else None
    except Exception as error:
        raise api.StripeApiError(
            f"could not fetch thin event {notification.get('id')} ({notification.get('type')}) "
            f"from Stripe's API ({mode} mode): {type(error).__name__}: {error}"
        ) from error
    return {
        **notification,
        "object": "event",
        "type": handler_type(notification["type"]),
        "data": {"object": related.to_dict() if related is not None else {}},
        "thinEvent": event.to_dict(),
        "stripeMode": mode,
        "stripePayload": "thin",
    }


def build_thin_event(notification: dict[str, Any], mode: str, worker: Worker) -> stripe.Event:
    """The ``stripe.Event`` handed to handlers for a thin ``notification`` (see :func:`expand`)."""
    import stripe

    return stripe.Event.construct_from(expand(notification, mode, worker), None)
