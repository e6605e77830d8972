"""``POST /stripe/webhook`` on the local server: Stripe webhooks in, ``letsgo:stripe`` messages out.

The ``Stripe-Signature`` header is verified over the raw body with the test
secret, then the live secret (``LETSGO_STRIPE_TEST_WEBHOOK_KEY``,
``LETSGO_STRIPE_LIVE_WEBHOOK_KEY``); the secret that matches decides
``stripeMode``, as LetsGo's API does. Snapshot events and thin event
notifications (``"object": "v2.core.event"``, from a thin event destination
or ``stripe listen --thin-events``) are both accepted; a thin one's event and
object are fetched when the message is handled. Only a verified event is
enqueued, and the answer is 200 only once it is stored, so Stripe retries
anything else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from letsgo_stripe.events import MESSAGE_TYPE, THIN_EVENT_OBJECT, StripeMode
from letsgo_stripe.settings import LIVE_WEBHOOK_KEY, TEST_WEBHOOK_KEY

if TYPE_CHECKING:
    from host import Request, Response, Settings

WEBHOOK_PATH = "/stripe/webhook"

#: Stripe's own default: a signature older than this is refused (replay protection).
TOLERANCE_SECONDS = 300

logger = logging.getLogger("letsgo.plugin.letsgo_stripe")


@dataclass(frozen=True)
class WebhookSecrets:
    """The webhook signing secrets (``whsec_...``) by mode; never shown in a repr."""

    test: str | None = field(default=None, repr=False)
    live: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSecrets:
        """The secrets configured in ``settings`` (of a started worker, which declared them)."""
        return cls(settings.get(TEST_WEBHOOK_KEY), settings.get(LIVE_WEBHOOK_KEY))

    def by_mode(self) -> list[tuple[StripeMode, str]]:
        """The configured secrets, test first."""
        return [(mode, secret) for mode, secret in (("TEST", self.test), ("LIVE", self.live)) if secret]


class WebhookRejected(Exception):
    """A webhook request that is not a verified Stripe event; carries the HTTP status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify_signature(body: bytes, header: str | None, secrets: WebhookSecrets) -> StripeMode:
    """Return the mode whose secret signed ``body``; raise :class:`WebhookRejected` otherwise."""
    candidates = secrets.by_mode()
    if not candidates:
        raise WebhookRejected(
            500,
            "no Stripe webhook signing secret is configured: set LETSGO_STRIPE_TEST_WEBHOOK_KEY "
            "(for `stripe listen`, the whsec_... secret it prints) or LETSGO_STRIPE_LIVE_WEBHOOK_KEY",
        )
    if not header:
        raise WebhookRejected(400, "missing Stripe-Signature header")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "request body is not UTF-8, so it cannot be a Stripe event") from None

    import stripe

    stale = malformed = False
    for mode, secret in candidates:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as error:
            # The SDK checks the signature before the timestamp, so "tolerance"
            # names a correctly signed request that is simply too old (or replayed).
            stale = stale or "tolerance" in str(error)
            malformed = malformed or "extract timestamp" in str(error) or "expected scheme" in str(error)
            continue
        return mode
    if stale:
        raise WebhookRejected(400, f"Stripe-Signature timestamp is more than {TOLERANCE_SECONDS} seconds old")
    if malformed:
        raise WebhookRejected(400, "Stripe-Signature header is malformed: expected t=<timestamp>,v1=<signature>")
    raise WebhookRejected(400, "Stripe-Signature does not match the body with any configured webhook secret")


def parse_event(body: bytes) -> dict[str, Any]:
    """The verified body as a Stripe event (snapshot or thin) dict; raise :class:`WebhookRejected` if it is not one."""
    try:
        event = json.loads(body)
    except ValueError as error:
        raise WebhookRejected(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(event, dict):
        raise WebhookRejected(400, "request body is not a Stripe event object")
    missing = [name for name in ("id", "type") if not isinstance(event.get(name), str) or not event.get(name)]
    # A thin event notification carries no data: the worker fetches its event and object.
    thin = event.get("object") == THIN_EVENT_OBJECT
    if not thin and (not isinstance(event.get("data"), dict) or not isinstance(event["data"].get("object"), dict)):
        missing.append("data.object")
    if missing:
        raise WebhookRejected(400, f"request body is not a Stripe event: missing {', '.join(missing)}")
    return event


def handle_webhook(request: Request, secrets: WebhookSecrets) -> Response:
    """Verify one Stripe webhook request and enqueue it as ``letsgo:stripe``; answer Stripe."""
    from host import Response

    try:
        mode = verify_signature(request.body, request.headers.get("Stripe-Signature"), secrets)
        event = parse_event(request.body)
    except WebhookRejected as rejection:
        log = logger.error if rejection.status >= 500 else logger.warning
        log("Stripe webhook refused (%d): %s", rejection.status, rejection.reason)
        return Response(rejection.status, {"error": rejection.reason})
    try:
        message_id = request.enqueue({"type": MESSAGE_TYPE, "payload": {**event, "stripeMode": mode}})
    except Exception as error:
        logger.exception("Stripe webhook %s (%s) could not be enqueued", event["id"], event["type"])
        # 5xx: Stripe retries the delivery later.
        return Response(503, {"error": f"could not enqueue the event: {type(error).__name__}: {error}"})
    logger.info("Stripe webhook %s (%s, %s) enqueued as message %s", event["id"], event["type"], mode, message_id)
    return Response(200, {"received": True, "messageId": message_id, "stripeMode": mode})


def webhook_route(secrets: Callable[[], WebhookSecrets]) -> Callable[[Request], Response]:
    """A route handler for :data:`WEBHOOK_PATH` that reads the secrets from ``secrets()`` per request."""

    def stripe_webhook(request: Request) -> Response:
        """Receive a Stripe webhook: verify its signature, enqueue it as ``letsgo:stripe``."""
        return handle_webhook(request, secrets())

    return stripe_webhook
