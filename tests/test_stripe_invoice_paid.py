"""letsgo-stripe: the built-in invoice.paid notification gets money right, in both invoice shapes."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from host.core.batch import process_sqs_event
from host.testing import sqs_event
from letsgo_stripe.invoices import invoice_paid_text, subscription_id, tenant_id
from letsgo_stripe.money import currency_exponent, format_amount, major_units
from letsgo_stripe.testing import stripe_message

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"
STRIPE_ONLY = {"LETSGO_WORKER_PLUGINS": "letsgo_stripe"}


def old_shape_event(amount: int, currency: str, subscription="sub_1OldShape", tenant="tenant-old") -> dict:
    """A real pre-2025-03-31 invoice.paid event: ``subscription`` and ``subscription_details`` on the invoice."""
    event = json.loads((FIXTURES / "invoice.paid.json").read_text())
    invoice = event["data"]["object"]
    invoice.update(amount_paid=amount, currency=currency, subscription=subscription)
    invoice["subscription_details"] = {"metadata": {"letsgo-tenantId": tenant} if tenant else {}}
    return event


def new_shape_event(amount: int, currency: str, subscription="sub_1NewShape", tenant="tenant-new") -> dict:
    """Stripe's current invoice (``parent.subscription_details``), from its OpenAPI fixture, as invoice.paid."""
    event = json.loads((FIXTURES / "invoice.finalization_failed.constructed.json").read_text())
    event["type"] = "invoice.paid"
    invoice = event["data"]["object"]
    invoice.pop("subscription", None)  # gone from the invoice since API 2025-03-31
    invoice.pop("subscription_details", None)
    invoice.update(amount_paid=amount, currency=currency, status="paid")
    invoice["parent"] = {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {
            "subscription": subscription,
            "metadata": {"letsgo-tenantId": tenant} if tenant else {},
        },
    }
    return event


def paid_text(amount: str, subscription: str, tenant: str, mode: str = "TEST") -> str:
    return f":boom::moneybag: [{mode}] You've got paid *{amount}*\n*Subscription Id:* {subscription}\n*Tenant Id:* {tenant}"


CASES = [
    (1999, "usd", "USD 19.99"),  # the original printed "USD 20.00"
    (1999, "jpy", "JPY 1999"),  # zero-decimal: the original printed "JPY 20.00"
    (19990, "kwd", "KWD 19.990"),  # three-decimal
    (5, "kwd", "KWD 0.005"),
    (1, "usd", "USD 0.01"),
    (1000000, "krw", "KRW 1000000"),
    (123456, "bhd", "BHD 123.456"),
]


@pytest.mark.parametrize("shape", [old_shape_event, new_shape_event], ids=["old-shape", "new-shape"])
@pytest.mark.parametrize("amount, currency, shown", CASES, ids=[f"{c}-{a}" for a, c, _ in CASES])
def test_invoice_paid_notification_through_the_full_path(shape, amount, currency, shown, make_worker, notifications):
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = shape(amount, currency)
    result = process_sqs_event(worker, sqs_event(stripe_message(event, "LIVE")))

    assert result.response() == {"batchItemFailures": []}
    expected_ids = ("sub_1OldShape", "tenant-old") if shape is old_shape_event else ("sub_1NewShape", "tenant-new")
    assert notifications.texts == [paid_text(shown, *expected_ids, mode="LIVE")]


@pytest.mark.parametrize("shape", [old_shape_event, new_shape_event], ids=["old-shape", "new-shape"])
def test_missing_subscription_and_tenant_read_unknown(shape, make_worker, notifications):
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = shape(2500, "eur", subscription=None, tenant=None)
    process_sqs_event(worker, sqs_event(stripe_message(event)))

    assert notifications.texts == [paid_text("EUR 25.00", "unknown", "unknown")]


def test_real_one_off_invoice_without_subscription_details(make_worker, notifications):
    """SRM's invoice.paid: a one-off invoice, ``subscription: null``, no ``subscription_details``."""
    worker = make_worker(plugins=[notifications], env=STRIPE_ONLY)
    event = json.loads((FIXTURES / "invoice.paid.json").read_text())
    process_sqs_event(worker, sqs_event(stripe_message(event)))

    assert notifications.texts == [paid_text("USD 20.00", "unknown", "unknown")]


def test_real_subscription_invoice_from_2020():
    event = json.loads((FIXTURES / "invoice.paid.with-subscription.2020-03-02.json").read_text())
    assert invoice_paid_text(event["data"]["object"], "TEST") == paid_text("USD 0.00", "sub_JsuPyCPhXWfZar", "unknown")


def test_the_new_shape_wins_and_expanded_subscriptions_are_read():
    invoice = copy.deepcopy(new_shape_event(100, "usd")["data"]["object"])
    invoice["parent"]["subscription_details"]["subscription"] = {"id": "sub_expanded", "object": "subscription"}
    invoice["subscription"] = "sub_stale"
    assert subscription_id(invoice) == "sub_expanded"
    assert tenant_id(invoice) == "tenant-new"
    old = old_shape_event(100, "usd")["data"]["object"]
    old["subscription"] = {"id": "sub_expanded_old", "object": "subscription"}
    assert subscription_id(old) == "sub_expanded_old"


def test_the_tenant_id_falls_back_to_the_old_shape_when_the_new_has_no_metadata():
    invoice = new_shape_event(100, "usd", tenant=None)["data"]["object"]
    invoice["parent"]["subscription_details"]["metadata"] = None
    invoice["subscription_details"] = {"metadata": {"letsgo-tenantId": "tenant-from-old"}}
    assert tenant_id(invoice) == "tenant-from-old"


def test_slack_control_characters_in_metadata_are_escaped():
    invoice = old_shape_event(100, "usd", tenant="<!channel> & co")["data"]["object"]
    assert invoice_paid_text(invoice, "TEST").endswith("*Tenant Id:* &lt;!channel&gt; &amp; co")


def test_an_invoice_without_amount_or_currency_reads_unknown():
    assert invoice_paid_text({"currency": "usd"}, "TEST").startswith(":boom::moneybag: [TEST] You've got paid *unknown*")
    assert invoice_paid_text({"amount_paid": 100}, "TEST").startswith(":boom::moneybag: [TEST] You've got paid *unknown*")


@pytest.mark.parametrize(
    "currency, exponent",
    [("usd", 2), ("EUR", 2), ("isk", 2), ("huf", 2), ("twd", 2), ("jpy", 0), ("KRW", 0), ("ugx", 0), ("vnd", 0),
     ("clp", 0), ("xof", 0), ("kwd", 3), ("bhd", 3), ("jod", 3), ("omr", 3), ("tnd", 3)],
)
def test_currency_exponents_follow_stripe(currency, exponent):
    assert currency_exponent(currency) == exponent


def test_amounts_are_exact_never_rounded():
    assert major_units(1999, "usd") == Decimal("19.99")
    assert format_amount(1999, "usd") == "USD 19.99"
    assert format_amount(0, "usd") == "USD 0.00"
    assert format_amount(0, "jpy") == "JPY 0"
    assert format_amount(99999999, "usd") == "USD 999999.99"
    assert format_amount(1001, "kwd") == "KWD 1.001"
