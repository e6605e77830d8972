"""letsgo-stripe: POST /stripe/webhook verifies Stripe signatures over the raw body and enqueues."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from host.core.batch import process_sqs_event
from host.local.routes import Headers, Request, collect_routes
from host.testing import sqs_event
from letsgo_stripe.testing import signature_header
from letsgo_stripe.webhook import TOLERANCE_SECONDS, WEBHOOK_PATH, WebhookSecrets, handle_webhook

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"
TEST_SECRET = "whsec_test_5f1c0a4e9d2b7c3a8e6f1d0b"
LIVE_SECRET = "whsec_live_9a8b7c6d5e4f3a2b1c0d9e8f"
SECRETS = WebhookSecrets(test=TEST_SECRET, live=LIVE_SECRET)


def event_body(name: str = "invoice.paid.with-subscription.2020-03-02.json") -> bytes:
    # Stripe's bodies are pretty-printed JSON; the signature covers these exact bytes.
    return (FIXTURES / name).read_bytes()


class Queue:
    """Stands in for the server's queue: records what a route enqueues."""

    def __init__(self, fail: Exception | None = None):
        self.messages: list[dict] = []
        self.fail = fail

    def __call__(self, message, delay_seconds):
        if self.fail is not None:
            raise self.fail
        self.messages.append(message)
        return f"msg-{len(self.messages)}"


def post(body: bytes, headers: dict[str, str], queue: Queue, path: str = WEBHOOK_PATH) -> Request:
    return Request("POST", path, {}, Headers(headers.items()), body, queue)


def test_the_signature_helper_computes_stripes_scheme():
    import stripe

    body = event_body().decode()
    assert signature_header(body, TEST_SECRET, 1700000000) == stripe.WebhookSignature.generate_signature_header(
        body, TEST_SECRET, 1700000000
    )


@pytest.mark.parametrize("secret, mode", [(TEST_SECRET, "TEST"), (LIVE_SECRET, "LIVE")])
def test_a_validly_signed_event_is_enqueued_with_the_mode_of_its_secret(secret, mode):
    body, queue = event_body(), Queue()
    response = handle_webhook(post(body, {"Stripe-Signature": signature_header(body, secret)}, queue), SECRETS)

    assert response.status == 200
    assert response.body == {"received": True, "messageId": "msg-1", "stripeMode": mode}
    assert queue.messages == [{"type": "letsgo:stripe", "payload": {**json.loads(body), "stripeMode": mode}}]


def test_header_names_are_case_insensitive_and_rotated_secrets_are_accepted():
    """During secret rotation Stripe sends one v1 signature per active secret."""
    body, queue = event_body(), Queue()
    now = int(time.time())
    old = signature_header(body, "whsec_retired", now).split(",")[1]
    header = f"t={now},{old},{signature_header(body, TEST_SECRET, now).split(',')[1]}"
    response = handle_webhook(post(body, {"stripe-signature": header}, queue), SECRETS)

    assert response.status == 200
    assert queue.messages[0]["payload"]["stripeMode"] == "TEST"


def test_only_the_test_secret_configured():
    body, queue = event_body(), Queue()
    secrets = WebhookSecrets(test=TEST_SECRET)
    assert handle_webhook(post(body, {"Stripe-Signature": signature_header(body, TEST_SECRET)}, queue), secrets).status == 200
    assert handle_webhook(post(body, {"Stripe-Signature": signature_header(body, LIVE_SECRET)}, queue), secrets).status == 400
    assert len(queue.messages) == 1


def _stale(body):
    return signature_header(body, TEST_SECRET, int(time.time()) - TOLERANCE_SECONDS - 60)


def _altered(body):
    return signature_header(body.replace(b'"amount_paid": 0', b'"amount_paid": 1'), TEST_SECRET)


@pytest.mark.parametrize(
    "make_header, reason",
    [
        (lambda body: signature_header(body, "whsec_wrong_secret"), "does not match"),
        (_altered, "does not match"),
        (_stale, f"more than {TOLERANCE_SECONDS} seconds old"),
        (lambda body: None, "missing Stripe-Signature header"),
        (lambda body: "", "missing Stripe-Signature header"),
        (lambda body: "v1=deadbeef", "malformed"),
        (lambda body: signature_header(body, TEST_SECRET).replace("v1=", "v0="), "malformed"),
    ],
    ids=["wrong-secret", "altered-body", "stale-timestamp", "missing-header", "empty-header", "no-timestamp", "wrong-scheme"],
)
def test_a_bad_or_missing_signature_is_400_and_nothing_is_enqueued(make_header, reason, caplog):
    body, queue = event_body(), Queue()
    assert b'"amount_paid": 0' in body
    header = make_header(body)
    headers = {} if header is None else {"Stripe-Signature": header}
    with caplog.at_level(logging.DEBUG):
        response = handle_webhook(post(body, headers, queue), SECRETS)

    assert response.status == 400
    assert reason in response.body["error"]
    assert queue.messages == []
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert reason in logged
    assert TEST_SECRET not in logged and LIVE_SECRET not in logged and TEST_SECRET not in json.dumps(response.body)


def test_a_signed_body_that_is_not_a_stripe_event_is_400():
    queue = Queue()
    for body, reason in [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a Stripe event object"),
        (b'{"id": "evt_1", "type": "invoice.paid"}', "missing data.object"),
        (b'{"object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered"}', "missing id"),
        (b"\xff\xfe", "not UTF-8"),
    ]:
        header = signature_header(body.decode("latin-1"), TEST_SECRET) if body == b"\xff\xfe" else signature_header(body, TEST_SECRET)
        response = handle_webhook(post(body, {"Stripe-Signature": header}, queue), SECRETS)
        assert (response.status, reason in response.body["error"]) == (400, True), body
    assert queue.messages == []


def test_no_configured_secret_is_a_server_error_naming_the_variables():
    body, queue = event_body(), Queue()
    response = handle_webhook(post(body, {"Stripe-Signature": signature_header(body, TEST_SECRET)}, queue), WebhookSecrets())
    assert response.status == 500
    assert "LETSGO_STRIPE_TEST_WEBHOOK_KEY" in response.body["error"]
    assert queue.messages == []


def test_a_queue_failure_is_503_so_stripe_retries():
    body = event_body()
    queue = Queue(fail=OSError("database is locked"))
    response = handle_webhook(post(body, {"Stripe-Signature": signature_header(body, TEST_SECRET)}, queue), SECRETS)
    assert response.status == 503
    assert "database is locked" in response.body["error"]


def test_secrets_never_show_in_reprs():
    assert TEST_SECRET not in repr(SECRETS) and LIVE_SECRET not in repr(SECRETS)


def test_the_plugin_registers_the_route_and_the_enqueued_message_is_handled(make_worker, notifications):
    """Hook -> route -> signed request -> queue -> SQS path -> handler -> notification."""
    env = {
        "LETSGO_WORKER_PLUGINS": "letsgo_stripe",
        "LETSGO_STRIPE_TEST_WEBHOOK_KEY": TEST_SECRET,
        "LETSGO_STRIPE_LIVE_WEBHOOK_KEY": LIVE_SECRET,
    }
    worker = make_worker(plugins=[notifications], env=env)
    routes = collect_routes(worker)
    route = routes.match("POST", WEBHOOK_PATH)
    assert route is not None and route.plugin == "letsgo_stripe"

    body, queue = event_body(), Queue()
    response = route.handler(post(body, {"Stripe-Signature": signature_header(body, LIVE_SECRET)}, queue))
    assert response.status == 200

    result = process_sqs_event(worker, sqs_event(*queue.messages))
    assert result.response() == {"batchItemFailures": []}
    assert notifications.texts == [
        ":boom::moneybag: [LIVE] You've got paid *USD 0.00*\n*Subscription Id:* sub_JsuPyCPhXWfZar\n*Tenant Id:* unknown"
    ]


def test_another_plugin_taking_the_webhook_path_is_a_start_up_error_naming_both(make_worker):
    from host import hookimpl
    from host.errors import RegistrationError

    class Impostor:
        __name__ = "impostor"

        @hookimpl
        def letsgo_register_routes(self, register):
            from host.local.routes import Response

            register("POST", WEBHOOK_PATH, lambda request: Response(200))

    worker = make_worker(plugins=[Impostor()], env={"LETSGO_WORKER_PLUGINS": "letsgo_stripe"})
    with pytest.raises(RegistrationError, match="registered twice: by plugin '(letsgo_stripe|impostor)' and by plugin '(impostor|letsgo_stripe)'"):
        collect_routes(worker)
