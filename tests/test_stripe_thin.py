"""letsgo-stripe: thin events through the local webhook route, EventBridge and the queue, fetched from a stand-in API."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from host import hookimpl
from host.aws.events import handle_event
from host.local.routes import Headers, Request
from host.services.idempotency import SqliteIdempotencyStore
from host.testing import run_batch
from letsgo_stripe import fresh, fresh_sync
from letsgo_stripe.testing import FakeStripeApi, signature_header, stripe_message, thin_notification
from letsgo_stripe.webhook import WebhookSecrets, handle_webhook

ROOT = Path(__file__).resolve().parent.parent
STRIPE_FIXTURES = ROOT / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"
THIN_FIXTURE = ROOT / "tests" / "fixtures" / "stripe" / "thin-event-notification.v1.invoice.paid.constructed.json"
AWS_FIXTURES = ROOT / "tests" / "fixtures" / "aws"
TEST_KEY, LIVE_KEY = "sk_test_51FakeKeyForTheStandIn", "sk_live_51FakeKeyForTheStandIn"
ENV = {"LETSGO_WORKER_PLUGINS": "letsgo_stripe", "LETSGO_STRIPE_TEST_API_KEY": TEST_KEY,
       "LETSGO_STRIPE_LIVE_API_KEY": LIVE_KEY}
WEBHOOK_SECRET = "whsec_thin_test_1a2b3c4d5e6f"


def snapshot_event() -> dict:
    return json.loads((STRIPE_FIXTURES / "invoice.paid.json").read_text())


def current_invoice() -> dict:
    """The invoice as Stripe's API returns it now: later than the snapshot (it was paid out of band since)."""
    invoice = snapshot_event()["data"]["object"]
    return {**invoice, "amount_paid": 4250, "paid_out_of_band": True}


class Billing:
    """An app plugin handling invoice.paid, recording what it is handed."""

    __name__ = "billing"

    def __init__(self):
        self.seen: list[dict] = []

    def on_paid(self, event, ctx):
        self.seen.append({"id": event.id, "type": event.type, "payload": event.stripePayload, "mode": event.stripeMode,
                          "amount_paid": event.data.object.amount_paid, "object": event.data.object.object})

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.on_paid)


@pytest.fixture
def stripe_api(monkeypatch):
    import stripe

    with FakeStripeApi() as fake:
        monkeypatch.setattr(stripe, "api_base", fake.url)
        fake.put(current_invoice())
        yield fake


@pytest.fixture
def notification(stripe_api) -> dict:
    thin = json.loads(THIN_FIXTURE.read_text())
    stripe_api.put_thin_event(thin)
    return thin


@pytest.fixture
def billing_worker(make_worker, notifications, tmp_path):
    def make(env=None):
        billing = Billing()
        worker = make_worker(plugins=[billing, notifications], env={**ENV, **(env or {})})
        worker.idempotency_store = SqliteIdempotencyStore(str(tmp_path / "records.db"))
        return worker, billing

    return make


def fetched(stripe_api, notification, key=TEST_KEY):
    return [("GET", f"/v2/core/events/{notification['id']}", key), ("GET", notification["related_object"]["url"], key)]


def test_through_the_queue_handlers_get_the_fetched_object(billing_worker, stripe_api, notification, notifications):
    worker, billing = billing_worker()
    message = {"type": "letsgo:stripe", "payload": notification}  # stripeMode from livemode

    assert run_batch(worker, message).response() == {"batchItemFailures": []}
    assert billing.seen == [{"id": notification["id"], "type": "invoice.paid", "payload": "thin", "mode": "TEST",
                             "amount_paid": 4250, "object": "invoice"}]
    assert stripe_api.requests == fetched(stripe_api, notification)
    # The built-in invoice.paid handler ran on the fetched invoice too.
    assert notifications.texts[0].startswith(":boom::moneybag: [TEST] You've got paid *USD 42.50*")


def test_through_the_local_webhook_route_with_stripes_signature(billing_worker, stripe_api, notification):
    import stripe

    worker, billing = billing_worker()
    body = json.dumps(notification, indent=2).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
    assert header.split(",")[1] == signature_header(body, WEBHOOK_SECRET, int(header.split(",")[0][2:])).split(",")[1]
    enqueued = []
    request = Request("POST", "/stripe/webhook", {}, Headers([("Stripe-Signature", header)]), body,
                      lambda message, delay: enqueued.append(message) or "msg-1")

    response = handle_webhook(request, WebhookSecrets(test=WEBHOOK_SECRET))
    assert response.status == 200 and response.body["stripeMode"] == "TEST"
    assert enqueued == [{"type": "letsgo:stripe", "payload": {**notification, "stripeMode": "TEST"}}]
    assert stripe_api.requests == []  # nothing is fetched while Stripe waits for the answer

    assert run_batch(worker, *enqueued).response() == {"batchItemFailures": []}
    assert [seen["amount_paid"] for seen in billing.seen] == [4250]


def test_a_thin_event_with_a_bad_signature_is_refused(notification):
    body = json.dumps(notification).encode()
    enqueued = []
    request = Request("POST", "/stripe/webhook", {}, Headers([("Stripe-Signature", signature_header(body, "whsec_other"))]),
                      body, lambda message, delay: enqueued.append(message) or "msg-1")
    assert handle_webhook(request, WebhookSecrets(test=WEBHOOK_SECRET)).status == 400
    assert enqueued == []


def test_through_eventbridge_directly_and_as_records_with_its_snapshot_twin(billing_worker, stripe_api, notification):
    """The SQS batch holds a snapshot event and its thin twin: the handler runs once for the pair."""
    worker, billing = billing_worker()
    direct = json.loads((AWS_FIXTURES / "eventbridge-stripe-thin-event.constructed.json").read_text())
    batch = json.loads((AWS_FIXTURES / "sqs-eventbridge-stripe.constructed.json").read_text())
    snapshot = json.loads(batch["Records"][0]["body"])["detail"]
    assert json.loads(batch["Records"][1]["body"])["detail"]["snapshot_event"] == snapshot["id"]

    assert handle_event(copy.deepcopy(batch), None, worker=worker) == {"batchItemFailures": []}
    assert len(billing.seen) == 1
    assert handle_event(direct, None, worker=worker) is None  # the thin twin again, straight from a rule
    assert len(billing.seen) == 1


def test_a_thin_twin_arriving_first_dedupes_the_snapshot(billing_worker, stripe_api, notification):
    worker, billing = billing_worker()
    snapshot = {**snapshot_event(), "id": notification["snapshot_event"]}
    run_batch(worker, stripe_message(notification))
    run_batch(worker, stripe_message(snapshot))
    assert [seen["payload"] for seen in billing.seen] == ["thin"]


def test_a_live_thin_event_is_fetched_with_the_live_key(billing_worker, stripe_api):
    worker, billing = billing_worker()
    live = thin_notification("v1.invoice.paid", current_invoice(), livemode=True)
    stripe_api.put_thin_event(live)
    assert run_batch(worker, {"type": "letsgo:stripe", "payload": live}).response() == {"batchItemFailures": []}
    assert stripe_api.requests == fetched(stripe_api, live, LIVE_KEY)
    assert billing.seen[0]["mode"] == "LIVE"


def test_without_an_api_key_the_message_fails_naming_the_setting(make_worker, notifications, stripe_api, notification):
    worker = make_worker(plugins=[Billing(), notifications], env={"LETSGO_WORKER_PLUGINS": "letsgo_stripe"})
    result = run_batch(worker, stripe_message(notification))
    assert len(result.response()["batchItemFailures"]) == 1
    assert "LETSGO_STRIPE_TEST_API_KEY is not set" in result.outcomes[0].reason
    assert stripe_api.requests == []


def test_an_object_the_api_does_not_have_fails_the_message_for_a_retry(billing_worker, stripe_api):
    worker, billing = billing_worker()
    gone = thin_notification("v1.invoice.paid", {"object": "invoice", "id": "in_deleted"})
    stripe_api.put_thin_event(gone)
    result = run_batch(worker, stripe_message(gone))
    assert len(result.response()["batchItemFailures"]) == 1
    assert f"could not fetch thin event {gone['id']} (v1.invoice.paid)" in result.outcomes[0].reason
    assert "No such object: /v1/invoices/in_deleted" in result.outcomes[0].reason
    assert billing.seen == []


def test_a_v2_event_reaches_the_handlers_of_its_own_type_with_its_v2_object(make_worker, notifications, stripe_api):
    seen = []

    class Destinations:
        __name__ = "destinations"

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("v2.core.event_destination.ping",
                     lambda event, ctx: seen.append((event.type, event.thinEvent.id, event.data.object.status)))

    worker = make_worker(plugins=[Destinations(), notifications], env=ENV)
    destination = {"id": "ed_test_61RPjq0a6kD1EUNgm16RPjpB6wSQD0VsGZ1HOKvdBvTM", "object": "v2.core.event_destination",
                   "type": "amazon_eventbridge", "status": "enabled", "livemode": False}
    ping = thin_notification("v2.core.event_destination.ping", None)
    ping["related_object"] = {"id": destination["id"], "type": destination["object"],
                              "url": f"/v2/core/event_destinations/{destination['id']}"}
    stripe_api.put(destination, ping["related_object"]["url"])
    stripe_api.put_thin_event(ping)
    assert run_batch(worker, stripe_message(ping)).response() == {"batchItemFailures": []}
    assert seen == [("v2.core.event_destination.ping", ping["id"], "enabled")]
    assert stripe_api.requests == fetched(stripe_api, ping)


# -- fresh objects ------------------------------------------------------------------------------------


def test_fresh_fetches_the_current_object_of_a_snapshot_event(make_worker, notifications, stripe_api):
    now = []

    class Careful:
        __name__ = "careful"

        async def on_paid_async(self, event, ctx):
            now.append(("async", event.data.object.amount_paid, (await fresh(event, ctx)).amount_paid))

        def on_paid(self, event, ctx):
            now.append(("def", event.data.object.amount_paid, fresh_sync(event, ctx).amount_paid))

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("invoice.paid", self.on_paid_async)
            register("invoice.paid", self.on_paid)

    worker = make_worker(plugins=[Careful(), notifications], env=ENV)
    assert run_batch(worker, stripe_message(snapshot_event(), mode="LIVE")).response() == {"batchItemFailures": []}
    assert now == [("async", 2000, 4250), ("def", 2000, 4250)]  # the snapshot said 2000, the API says 4250 now
    assert stripe_api.requests == [("GET", "/v1/invoices/in_000000000000000000000000", LIVE_KEY)] * 2


def test_a_thin_event_nobody_handles_is_acknowledged_without_fetching(make_worker, notifications, stripe_api):
    worker = make_worker(plugins=[notifications], env={"LETSGO_WORKER_PLUGINS": "letsgo_stripe"})  # no API key either
    created = thin_notification("v1.customer.created", {"object": "customer", "id": "cus_1"})
    assert run_batch(worker, stripe_message(created)).response() == {"batchItemFailures": []}
    assert notifications.texts == [":credit_card: [TEST] Worker received an unhandled Stripe event: customer.created"]
    assert stripe_api.requests == []
