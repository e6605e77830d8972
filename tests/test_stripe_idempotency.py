"""letsgo-stripe: handlers of one Stripe event id run once where the worker has an idempotency store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from host import hookimpl
from host.core.batch import process_sqs_event
from host.services.idempotency import SqliteIdempotencyStore, get_store
from host.testing import sqs_event
from letsgo_stripe.once import DONE_TTL_SECONDS, MIN_LEASE_SECONDS
from letsgo_stripe.testing import stripe_message

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"
STRIPE_ONLY = {"LETSGO_WORKER_PLUGINS": "letsgo_stripe"}


def paid_event() -> dict:
    event = json.loads((FIXTURES / "invoice.paid.json").read_text())
    event["id"] = f"evt_{uuid.uuid4().hex}"  # the fixtures share zeroed ids
    return event


class Billing:
    """Two handlers of invoice.paid; ``fail_times`` makes the second fail that many times."""

    __name__ = "billing"

    def __init__(self, fail_times: int = 0):
        self.fail_times = fail_times
        self.calls: list[str] = []

    def record_payment(self, event, ctx):
        self.calls.append("record_payment")

    def email_receipt(self, event, ctx):
        self.calls.append("email_receipt")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TimeoutError("smtp.example.com timed out")

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.record_payment)
        register("invoice.paid", self.email_receipt)


def deliver(worker, event, receive_count=1):
    return process_sqs_event(worker, sqs_event(stripe_message(event), receive_count=receive_count))


@pytest.fixture
def local_worker(make_worker, notifications, tmp_path):
    """A worker as ``serve`` runs it: the idempotency store is SQLite beside the local queue."""

    def make(*plugins):
        worker = make_worker(plugins=[*plugins, notifications], env=STRIPE_ONLY)
        worker.local_db_path = str(tmp_path / "worker.db")
        assert isinstance(get_store(worker), SqliteIdempotencyStore)
        return worker

    return make


def test_a_duplicate_delivery_runs_each_handler_once(local_worker, notifications):
    billing = Billing()
    worker = local_worker(billing)
    event = paid_event()

    assert deliver(worker, event).response() == {"batchItemFailures": []}
    assert deliver(worker, event).response() == {"batchItemFailures": []}  # Stripe resent it

    assert billing.calls == ["record_payment", "email_receipt"]
    assert len(notifications.texts) == 1


def test_duplicates_in_one_batch_run_once(local_worker, notifications):
    billing = Billing()
    worker = local_worker(billing)
    event = paid_event()
    result = process_sqs_event(worker, sqs_event(stripe_message(event), stripe_message(event), stripe_message(event)))

    assert result.response() == {"batchItemFailures": []}
    assert sorted(billing.calls) == ["email_receipt", "record_payment"]
    assert len(notifications.texts) == 1


def test_a_retry_runs_only_the_handler_that_failed(local_worker, notifications):
    billing = Billing(fail_times=1)
    worker = local_worker(billing)
    event = paid_event()

    first = deliver(worker, event)
    assert len(first.response()["batchItemFailures"]) == 1
    assert "email_receipt of plugin 'billing'" in first.outcomes[0].reason
    second = deliver(worker, event, receive_count=2)
    assert second.response() == {"batchItemFailures": []}
    deliver(worker, event, receive_count=3)

    assert billing.calls == ["record_payment", "email_receipt", "email_receipt"]
    assert len(notifications.texts) == 1  # the built-in ran once, on the first delivery


def test_different_events_and_unhandled_types_are_deduplicated_separately(local_worker, notifications):
    worker = local_worker()
    unhandled = json.loads((FIXTURES / "charge.succeeded.unhandled-type.json").read_text())
    for _ in range(2):
        deliver(worker, unhandled)
        deliver(worker, {**unhandled, "id": "evt_other"})
    assert len(notifications.texts) == 2


def test_without_a_store_a_duplicate_runs_again(make_worker, notifications):
    billing = Billing()
    worker = make_worker(plugins=[billing, notifications], env=STRIPE_ONLY)
    assert get_store(worker) is None
    event = paid_event()
    deliver(worker, event)
    deliver(worker, event)
    assert billing.calls == ["record_payment", "email_receipt"] * 2


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def timed(make_worker, notifications, tmp_path):
    """A worker whose SQLite idempotency store reads a clock the test moves."""
    clock = Clock()
    billing = Billing()
    worker = make_worker(plugins=[billing, notifications], env={**STRIPE_ONLY, "LETSGO_WORKER_VISIBILITY_TIMEOUT": "120"})
    worker.idempotency_store = SqliteIdempotencyStore(str(tmp_path / "claims.db"), clock=clock)
    event = paid_event()
    name = f"{Billing.record_payment.__module__}.{Billing.record_payment.__qualname__}"
    return worker, worker.idempotency_store, clock, billing, event, f"stripe:{event['id']}:{name}"


def test_a_first_delivery_skips_a_handler_that_another_delivery_is_running(timed):
    worker, store, clock, billing, event, record_key = timed
    assert store.claim(f"{record_key}:running", ttl_seconds=120)  # a duplicate is in record_payment now

    assert deliver(worker, event).response() == {"batchItemFailures": []}
    assert billing.calls == ["email_receipt"]

    clock.now += 121  # that delivery died: its lease lapsed, the next delivery runs the handler
    deliver(worker, event)
    assert billing.calls == ["email_receipt", "record_payment"]


def test_a_redelivery_takes_over_a_lease_left_by_its_own_crashed_attempt(timed):
    """kill -9 inside a handler, then the local queue delivers the message again at once."""
    worker, store, clock, billing, event, record_key = timed
    assert store.claim(f"{record_key}:running", ttl_seconds=120)

    assert deliver(worker, event, receive_count=2).response() == {"batchItemFailures": []}
    assert billing.calls == ["record_payment", "email_receipt"]
    deliver(worker, event, receive_count=3)
    assert billing.calls == ["record_payment", "email_receipt"]  # done now


def test_a_success_is_remembered_for_days_and_no_lease_is_left(timed):
    worker, store, clock, billing, event, record_key = timed
    deliver(worker, event)
    assert not store.claim(record_key, ttl_seconds=1)  # done
    assert store.claim(f"{record_key}:running", ttl_seconds=1)  # the lease was released
    store.release(f"{record_key}:running")

    clock.now += DONE_TTL_SECONDS - 60  # Stripe resends days later
    deliver(worker, event)
    assert billing.calls == ["record_payment", "email_receipt"]

    clock.now += 120  # past the memory of the success
    deliver(worker, event)
    assert billing.calls == ["record_payment", "email_receipt"] * 2


def test_the_lease_is_at_least_a_minute(make_worker, notifications, tmp_path):
    billing = Billing()
    worker = make_worker(plugins=[billing, notifications], env={**STRIPE_ONLY, "LETSGO_WORKER_VISIBILITY_TIMEOUT": "0"})
    store = SqliteIdempotencyStore(str(tmp_path / "claims.db"))

    class Recording:
        """The SQLite store, recording the TTL of every claim."""

        def claim(self, key, ttl_seconds):
            claims.append((key.rsplit(".", 1)[-1], ttl_seconds))
            return store.claim(key, ttl_seconds=ttl_seconds)

        def release(self, key):
            store.release(key)

    claims: list = []
    worker.idempotency_store = Recording()
    deliver(worker, paid_event())
    assert ("email_receipt:running", MIN_LEASE_SECONDS) in claims
    assert ("email_receipt", DONE_TTL_SECONDS) in claims


def test_an_idempotency_store_that_is_down_fails_the_message_before_any_handler_runs(make_worker, notifications):
    billing = Billing()
    worker = make_worker(plugins=[billing, notifications], env=STRIPE_ONLY)

    class Down:
        def claim(self, key, ttl_seconds):
            raise ConnectionError("dynamodb.us-east-1.amazonaws.com unreachable")

        def release(self, key):
            raise ConnectionError("dynamodb.us-east-1.amazonaws.com unreachable")

    worker.idempotency_store = Down()
    result = deliver(worker, paid_event())
    assert len(result.response()["batchItemFailures"]) == 1
    assert "unreachable" in result.outcomes[0].reason
    assert billing.calls == []
