"""Stripe events through an EventBridge partner event source: invoked directly by a rule, or as SQS records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from host import hookimpl
from host.aws.events import PartnerEventFailed, UnsupportedEvent, handle_event
from host.testing import sqs_event
from letsgo_stripe.testing import stripe_message

AWS_FIXTURES = Path(__file__).parent / "fixtures" / "aws"
ROOT = Path(__file__).resolve().parent.parent
STRIPE_ONLY = {"LETSGO_WORKER_PLUGINS": "letsgo_stripe"}


def fixture(name: str) -> dict:
    return json.loads((AWS_FIXTURES / name).read_text())


class Ledger:
    """An app plugin recording the invoice.paid events it is handed; ``fail`` makes it raise."""

    __name__ = "ledger"

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.events: list[dict] = []

    def record(self, event, ctx):
        self.events.append({"id": event.id, "mode": event.stripeMode, "invoice": event.data.object.id,
                            "payload": event.stripePayload, "message_id": ctx.message_id})
        if self.fail:
            raise ConnectionError("ledger.example.com refused the connection")

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.record)


@pytest.fixture
def envelope() -> dict:
    """Stripe's snapshot invoice.paid as EventBridge delivers it from the partner event source."""
    event = fixture("eventbridge-stripe-snapshot-event.constructed.json")
    assert event["source"].startswith("aws.partner/stripe.com/") and event["detail-type"] == "invoice.paid"
    return event


class Context:
    aws_request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"

    def get_remaining_time_in_millis(self):
        return 60_000


@pytest.mark.parametrize(("livemode", "mode"), [(False, "TEST"), (True, "LIVE")])
def test_a_rule_invoking_the_function_directly_dispatches_letsgo_stripe(make_worker, notifications, envelope,
                                                                         livemode, mode):
    ledger = Ledger()
    worker = make_worker(plugins=[ledger, notifications], env=STRIPE_ONLY)
    envelope["detail"]["livemode"] = livemode
    sent = copy.deepcopy(envelope)

    assert handle_event(envelope, Context(), worker=worker) is None
    assert ledger.events == [{"id": envelope["detail"]["id"], "mode": mode, "invoice": "in_000000000000000000000000",
                              "payload": "snapshot", "message_id": envelope["id"]}]
    assert notifications.texts[0].startswith(f":boom::moneybag: [{mode}] You've got paid *USD 20.00*")
    assert envelope == sent  # the caller's event is left as it was


def test_a_failed_direct_invocation_raises_so_lambda_retries_it(make_worker, notifications, envelope):
    worker = make_worker(plugins=[Ledger(fail=True), notifications], env=STRIPE_ONLY)
    with pytest.raises(PartnerEventFailed) as raised:
        handle_event(envelope, Context(), worker=worker)
    message = str(raised.value)
    assert f"letsgo:stripe message from EventBridge event {envelope['id']}" in message
    assert "ledger.example.com refused the connection" in message and "'invoice.paid'" in message


def test_without_the_stripe_plugin_a_direct_invocation_is_refused_naming_the_type(make_worker, notifications, envelope):
    worker = make_worker(plugins=[notifications], env={"LETSGO_WORKER_PLUGINS": ""})
    with pytest.raises(PartnerEventFailed, match="letsgo:stripe"):
        handle_event(envelope, Context(), worker=worker)


def test_an_sqs_record_carrying_the_envelope_is_dispatched_like_a_letsgo_stripe_message(make_worker, notifications,
                                                                                          envelope):
    """The rule's target is the worker's queue: SQS hands the function the envelope as the record's body."""
    ledger = Ledger()
    worker = make_worker(plugins=[ledger, notifications], env=STRIPE_ONLY)
    # Beside a letsgo:stripe message as LetsGo's API enqueues it, which is left alone.
    plain = stripe_message({**envelope["detail"], "id": "evt_from_the_api"}, mode="LIVE")
    event = sqs_event(json.dumps(envelope), json.dumps(plain))
    sent = copy.deepcopy(event)

    response = handle_event(event, Context(), worker=worker)
    assert response == {"batchItemFailures": []}
    assert sorted((e["id"], e["mode"], e["message_id"]) for e in ledger.events) == [
        (envelope["detail"]["id"], "TEST", event["Records"][0]["messageId"]),
        ("evt_from_the_api", "LIVE", event["Records"][1]["messageId"]),
    ]
    assert event == sent


def test_a_failed_record_is_reported_for_the_queue_to_retry(make_worker, notifications, envelope):
    worker = make_worker(plugins=[Ledger(fail=True), notifications], env=STRIPE_ONLY)
    event = sqs_event(json.dumps(envelope))
    response = handle_event(event, Context(), worker=worker)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_other_eventbridge_events_stay_unsupported(make_worker):
    worker = make_worker(plugins=[], env=STRIPE_ONLY)
    with pytest.raises(UnsupportedEvent, match="aws.partner/stripe.com/"):
        handle_event(fixture("eventbridge-event-ec2.powertools.json"), Context(), worker=worker)
    # A source that merely mentions a partner is not one.
    spoof = {**fixture("eventbridge-event-ec2.powertools.json"), "source": "my.app/aws.partner/stripe.com/x"}
    with pytest.raises(UnsupportedEvent):
        handle_event(spoof, Context(), worker=worker)


def test_lambda_entry_handles_the_envelope(make_worker, notifications, envelope, monkeypatch):
    import lambda_entry
    from host.core import worker as process_worker

    worker = make_worker(plugins=[Ledger(), notifications], env=STRIPE_ONLY)
    monkeypatch.setattr(process_worker, "get_worker", lambda: worker)
    assert lambda_entry.handler(envelope, Context()) is None
    assert len(notifications.texts) == 1


# -- template.yaml ------------------------------------------------------------------------------------


def template() -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(ROOT / "template.yaml"))


def test_the_template_sends_the_partner_bus_to_the_queue_only_when_the_bus_is_named():
    loaded = template()
    assert loaded["Parameters"]["StripeEventBusName"]["Default"] == ""
    rule = loaded["Resources"]["StripeEventsRule"]
    policy = loaded["Resources"]["StripeEventsQueuePolicy"]
    assert rule["Condition"] == policy["Condition"] == "HasStripeEventBus"
    assert loaded["Conditions"]["HasStripeEventBus"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StripeEventBusName"}, ""]}]}
    properties = rule["Properties"]
    assert properties["EventBusName"] == {"Ref": "StripeEventBusName"}
    assert properties["EventPattern"] == {"source": [{"prefix": "aws.partner/stripe.com"}]}
    # The queue, not the function: the queue's retries and dead-letter queue apply.
    assert [target["Arn"] for target in properties["Targets"]] == [{"Fn::GetAtt": ["Queue", "Arn"]}]
    statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["StripeEventsRule", "Arn"]}
