"""The Stripe notifications of letsgo-stripe, as they arrive at a real HTTP server standing in for Slack.

Stripe events come from letsgo-stripe's fixtures (real payloads) with ``stripeMode``
added as LetsGo's API adds it; every plugin is found by entry-point discovery.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from host.testing import run_batch
from letsgo_stripe.testing import stripe_message

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def worker(make_worker, slack):
    return make_worker(env={"LETSGO_SLACK_URL": slack.url})


def posted(worker, slack, message) -> list[str]:
    result = run_batch(worker, message)
    assert result.response() == {"batchItemFailures": []}, [o.reason for o in result.outcomes]
    return slack.texts


def test_invoice_paid_one_off_invoice(worker, slack):
    assert posted(worker, slack, stripe_message(fixture("invoice.paid.json"), "TEST")) == [
        ":boom::moneybag: [TEST] You've got paid *USD 20.00*\n*Subscription Id:* unknown\n*Tenant Id:* unknown"
    ]


def test_invoice_paid_with_a_subscription_in_live_mode(worker, slack):
    event = fixture("invoice.paid.with-subscription.2020-03-02.json")
    assert posted(worker, slack, stripe_message(event, "LIVE")) == [
        ":boom::moneybag: [LIVE] You've got paid *USD 0.00*\n*Subscription Id:* sub_JsuPyCPhXWfZar\n*Tenant Id:* unknown"
    ]


def test_invoice_paid_with_a_tenant_whose_metadata_is_hostile(worker, slack):
    event = copy.deepcopy(fixture("invoice.paid.json"))
    invoice = event["data"]["object"]
    invoice["amount_paid"] = 1999
    invoice["parent"] = {
        "type": "subscription_details",
        "subscription_details": {"subscription": "sub_1OAbc", "metadata": {"letsgo-tenantId": "ten-1 <!channel>"}},
    }
    assert posted(worker, slack, stripe_message(event, "TEST")) == [
        ":boom::moneybag: [TEST] You've got paid *USD 19.99*\n"
        "*Subscription Id:* sub_1OAbc\n"
        "*Tenant Id:* ten-1 &lt;!channel&gt;"
    ]


@pytest.mark.parametrize("name", ["customer.created.json", "invoice.created.json", "charge.succeeded.unhandled-type.json"])
def test_an_unhandled_stripe_event_is_announced(worker, slack, name):
    event = fixture(name)
    assert posted(worker, slack, stripe_message(event, "TEST")) == [
        f":credit_card: [TEST] Worker received an unhandled Stripe event: {event['type']}"
    ]
