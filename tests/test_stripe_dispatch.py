"""letsgo-stripe: every Stripe fixture through the full path (SQS event -> handler -> notification)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from host import MessageContext, hookimpl
from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from host.errors import StartupError
from host.testing import sqs_event
from letsgo_stripe import KNOWN_EVENT_TYPES, stripe_handlers
from letsgo_stripe.events import SUBSCRIPTION_LIFECYCLE_TYPES
from letsgo_stripe.testing import stripe_message

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures"
EVENT_FILES = sorted((FIXTURES / "stripe").glob("*.json"))
STRIPE_ONLY = {"LETSGO_WORKER_PLUGINS": "letsgo_stripe"}


def load_event(path: Path) -> dict:
    return json.loads(path.read_text())


def unhandled_text(event_type: str, mode: str = "TEST") -> str:
    return f":credit_card: [{mode}] Worker received an unhandled Stripe event: {event_type}"


class Recorder:
    """An app plugin that handles every known Stripe type and records what it receives."""

    __name__ = "billing"

    def __init__(self, types=KNOWN_EVENT_TYPES):
        self.types = sorted(types)
        self.calls = []

    def handle(self, event, ctx):
        import stripe

        assert isinstance(event, stripe.Event)
        assert isinstance(ctx, MessageContext)
        self.calls.append(
            {
                "type": event.type,
                "id": event.id,
                "object_id": event.to_dict()["data"]["object"].get("id"),
                "object": event.data.object.object,
                "mode": event.stripeMode,
                "ctx_type": ctx.type,
                "ctx_plugin": ctx.plugin,
            }
        )

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        for event_type in self.types:
            register(event_type, self.handle)


def test_the_known_types_are_letsgo_lifecycle_types_and_checkout():
    assert len(SUBSCRIPTION_LIFECYCLE_TYPES) == 24
    assert KNOWN_EVENT_TYPES == set(SUBSCRIPTION_LIFECYCLE_TYPES) | {"checkout.session.completed"}
    fixture_types = {load_event(path)["type"] for path in EVENT_FILES}
    assert KNOWN_EVENT_TYPES <= fixture_types
    assert fixture_types - KNOWN_EVENT_TYPES == {"charge.succeeded"}


def test_letsgo_stripe_is_registered_by_the_installed_plugin(make_worker):
    worker = make_worker(env=STRIPE_ONLY)
    entry = worker.registry.get("letsgo:stripe")
    assert entry is not None
    assert (entry.plugin, entry.distribution) == ("letsgo_stripe", "letsgo-stripe")
    # The built-in invoice.paid notification is registered through the plugin's own hook.
    builtin = stripe_handlers(worker).for_type("invoice.paid")
    assert [(h.plugin, h.name) for h in builtin] == [("letsgo_stripe", "letsgo_stripe.invoices.notify_invoice_paid")]


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_every_fixture_without_app_handlers(path, make_worker, notifications):
    """Without app handlers: invoice.paid notifies the payment, every other type is acknowledged."""
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = load_event(path)
    result = process_sqs_event(worker, sqs_event(stripe_message(event, "TEST")))

    assert result.response() == {"batchItemFailures": []}
    assert [o.status for o in result.outcomes] == [Status.SUCCEEDED]
    if event["type"] == "invoice.paid":
        assert len(notifications.texts) == 1
        assert notifications.texts[0].startswith(":boom::moneybag: [TEST] You've got paid *USD ")
    else:
        assert notifications.texts == [unhandled_text(event["type"])]
    assert all(n.source == "letsgo-stripe" for n in notifications.notifications)


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_every_fixture_reaches_the_app_handler_of_its_type(path, make_worker, notifications):
    billing = Recorder()
    worker = make_worker(plugins=[billing, notifications], env=STRIPE_ONLY)
    event = load_event(path)
    result = process_sqs_event(worker, sqs_event(stripe_message(event, "LIVE")))

    assert result.response() == {"batchItemFailures": []}
    if event["type"] in KNOWN_EVENT_TYPES:
        assert billing.calls == [
            {
                "type": event["type"],
                "id": event["id"],
                "object_id": event["data"]["object"].get("id"),
                "object": event["data"]["object"]["object"],
                "mode": "LIVE",
                "ctx_type": "letsgo:stripe",
                "ctx_plugin": "letsgo_stripe",
            }
        ]
        expected = 1 if event["type"] == "invoice.paid" else 0  # the built-in still runs beside the app's
        assert len(notifications.texts) == expected
        assert all(":boom::moneybag: [LIVE]" in text for text in notifications.texts)
    else:
        assert billing.calls == []
        assert notifications.texts == [unhandled_text(event["type"], "LIVE")]


def test_the_constructed_sqs_fixture_through_the_lambda_entry_point(install_plugin, monkeypatch, tmp_path):
    """The real Lambda entry point, real entry-point discovery: record 1 paid, record 2 not JSON."""
    install_plugin(
        "stripe-test-sink",
        "stripe_test_sink",
        "from host import hookimpl\nTEXTS = []\n\n@hookimpl\ndef letsgo_notify(notification):\n    TEXTS.append(notification.text)\n",
    )
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("LETSGO_WORKER_PLUGINS", "letsgo_stripe,stripe_test_sink")
    import lambda_entry
    import stripe_test_sink

    event = json.loads((FIXTURES / "aws" / "sqs-letsgo-stripe-message.constructed.json").read_text())
    response = lambda_entry.handler(event, None)

    assert response == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}
    paid = [text for text in stripe_test_sink.TEXTS if "You've got paid" in text]
    assert paid == [
        ":boom::moneybag: [TEST] You've got paid *USD 0.00*\n*Subscription Id:* sub_JsuPyCPhXWfZar\n*Tenant Id:* unknown"
    ]


def test_several_handlers_per_type_from_several_plugins_all_run_in_order(make_worker, notifications):
    order = []

    class Crm:
        __name__ = "crm"

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("customer.subscription.deleted", lambda event, ctx: order.append(("crm-sync", event.id)))

            async def churn_alert(event, ctx):
                await asyncio.sleep(0)
                order.append(("crm-async", threading.current_thread().name))

            register("customer.subscription.deleted", churn_alert)

    class Analytics:
        __name__ = "analytics"

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("customer.subscription.deleted", lambda event, ctx: order.append(("analytics", event.data.object.status)))

    worker = make_worker(plugins=[Crm(), Analytics(), notifications], env=STRIPE_ONLY)
    handlers = stripe_handlers(worker).for_type("customer.subscription.deleted")
    assert [h.plugin for h in handlers] == ["crm", "crm", "analytics"]
    assert [h.is_async for h in handlers] == [False, True, False]

    event = load_event(FIXTURES / "stripe" / "customer.subscription.deleted.json")
    result = process_sqs_event(worker, sqs_event(stripe_message(event)))

    assert result.response() == {"batchItemFailures": []}
    assert [step[0] for step in order] == ["crm-sync", "crm-async", "analytics"]
    assert order[0][1] == event["id"]
    assert order[2][1] == "canceled"
    assert notifications.texts == []  # handled, so no "unhandled" notification


def test_a_failing_handler_fails_the_message_after_the_others_ran(make_worker, notifications):
    ran = []

    class Flaky:
        __name__ = "flaky"

        def broken(self, event, ctx):
            raise ConnectionError("crm.example.com refused the connection")

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("invoice.payment_failed", self.broken)
            register("invoice.payment_failed", lambda event, ctx: ran.append(event.type))

    worker = make_worker(plugins=[Flaky(), notifications], env=STRIPE_ONLY)
    event = load_event(FIXTURES / "stripe" / "invoice.payment_failed.json")
    record = sqs_event(stripe_message(event), message_id="m-1")
    result = process_sqs_event(worker, record)

    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    outcome = result.outcomes[0]
    assert outcome.status is Status.FAILED
    assert "1 of 2 handlers of Stripe event evt_000000000000000000000000 (invoice.payment_failed) failed" in outcome.reason
    assert "Flaky.broken of plugin 'flaky'" in outcome.reason
    assert "crm.example.com refused the connection" in outcome.reason
    assert ran == ["invoice.payment_failed"]


def test_stripe_mode_defaults_from_livemode_and_any_case_is_accepted(make_worker, notifications):
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = load_event(FIXTURES / "stripe" / "customer.created.json")
    without_mode = {"type": "letsgo:stripe", "payload": {**event, "livemode": True}}
    lower_case = stripe_message(event, "test")

    result = process_sqs_event(worker, sqs_event(without_mode, lower_case))

    assert result.response() == {"batchItemFailures": []}
    assert sorted(notifications.texts) == sorted([unhandled_text("customer.created", "LIVE"), unhandled_text("customer.created")])


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"id": "evt_1", "type": "invoice.paid", "data": {"object": {}}, "stripeMode": "PROD"}, "stripeMode"),
        ({"id": "evt_1", "type": "invoice.paid", "stripeMode": "TEST"}, "data"),
        ({"id": "evt_1", "type": "", "data": {"object": {}}, "stripeMode": "TEST"}, "type"),
        ({"type": "invoice.paid", "data": {"object": {}}, "stripeMode": "TEST"}, "id"),
        ("not an event", "payload"),
    ],
)
def test_a_payload_that_is_not_a_stripe_event_is_rejected_with_the_reason(payload, problem, make_worker, notifications):
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    result = process_sqs_event(worker, sqs_event({"type": "letsgo:stripe", "payload": payload}))

    outcome = result.outcomes[0]
    assert outcome.status is Status.REJECTED
    assert outcome.reason.startswith("payload of 'letsgo:stripe' is invalid")
    assert problem in outcome.reason
    assert len(notifications.texts) == 1 and "rejected" in notifications.texts[0]


@pytest.mark.parametrize("event_type", ["", "  invoice.paid", None, 42])
def test_a_bad_handler_registration_stops_start_up_naming_the_plugin(event_type, make_worker):
    class Sloppy:
        __name__ = "sloppy"

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register(event_type, lambda event, ctx: None)

    with pytest.raises(StartupError, match="plugin 'sloppy' registered a Stripe handler for event type"):
        make_worker(plugins=[Sloppy()], env=STRIPE_ONLY)


def test_a_handler_that_is_not_callable_stops_start_up(make_worker):
    class Sloppy:
        __name__ = "sloppy"

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("invoice.paid", "notify_me")

    with pytest.raises(StartupError, match="plugin 'sloppy' registered a Stripe handler for 'invoice.paid' that is not callable"):
        make_worker(plugins=[Sloppy()], env=STRIPE_ONLY)


def test_an_app_plugin_with_an_optional_stripe_hook_loads_without_letsgo_stripe(make_worker):
    class App:
        __name__ = "app"

        @hookimpl(optionalhook=True)
        def letsgo_stripe_handlers(self, register):
            register("invoice.paid", lambda event, ctx: None)

    worker = make_worker(plugins=[App()], env={"LETSGO_WORKER_DISABLE_PLUGINS": "letsgo_stripe"})
    assert "letsgo:stripe" not in worker.registry


class BrokenSink:
    """A notification sink that is down."""

    __name__ = "broken_sink"

    @hookimpl
    def letsgo_notify(self, notification):
        raise ConnectionError("hooks.slack.com unreachable")


def test_a_sink_that_is_down_does_not_retry_an_unhandled_event(make_worker):
    worker = make_worker(plugins=[BrokenSink()], env=STRIPE_ONLY)
    event = load_event(FIXTURES / "stripe" / "charge.succeeded.unhandled-type.json")
    assert process_sqs_event(worker, sqs_event(stripe_message(event))).response() == {"batchItemFailures": []}


def test_a_sink_that_is_down_retries_invoice_paid(make_worker):
    worker = make_worker(plugins=[BrokenSink()], env=STRIPE_ONLY)
    event = load_event(FIXTURES / "stripe" / "invoice.paid.json")
    result = process_sqs_event(worker, sqs_event(stripe_message(event), message_id="paid-1"))
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "paid-1"}]}
    assert "notify_invoice_paid of plugin 'letsgo_stripe'" in result.outcomes[0].reason


def test_an_event_type_cannot_inject_slack_markup(make_worker, notifications):
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = {"id": "evt_x", "object": "event", "type": "<!channel> x", "data": {"object": {}}}
    process_sqs_event(worker, sqs_event(stripe_message(event)))
    assert notifications.texts == [unhandled_text("&lt;!channel&gt; x")]
