"""letsgo-stripe: handlers of one Stripe event id run once where the worker has an idempotency store."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from host import hookimpl
from host.core.batch import process_sqs_event
from host.services.idempotency import COMPLETED, IN_PROGRESS, SqliteIdempotencyStore, get_store
from host.testing import sqs_event
from letsgo_stripe.dispatch import DONE_TTL_SECONDS
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
        self.lock = threading.Lock()

    def record_payment(self, event, ctx):
        with self.lock:
            self.calls.append("record_payment")

    def email_receipt(self, event, ctx):
        with self.lock:
            self.calls.append("email_receipt")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TimeoutError("smtp.example.com timed out")

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.record_payment)
        register("invoice.paid", self.email_receipt)


def handler_key(event: dict, method) -> str:
    return f"stripe:{event['id']}:{method.__module__}.{method.__qualname__}"


def deliver(worker, event, receive_count=1, message_id=None, lambda_context=None):
    record_options = {"receive_count": receive_count, "message_id": message_id}
    return process_sqs_event(worker, sqs_event(stripe_message(event), **record_options), lambda_context)


@pytest.fixture
def local_worker(make_worker, notifications, tmp_path):
    """A worker as ``serve`` runs it: the idempotency store is SQLite beside the local queue."""

    def make(*plugins, env=None):
        worker = make_worker(plugins=[*plugins, notifications], env={**STRIPE_ONLY, **(env or {})})
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
    assert get_store(worker).get(handler_key(event, Billing.email_receipt)) is None  # given up: free for the retry
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
    worker.idempotency_store = SqliteIdempotencyStore(str(tmp_path / "records.db"), clock=clock)
    event = paid_event()
    return worker, worker.idempotency_store, clock, billing, event, handler_key(event, Billing.record_payment)


def test_a_delivery_skips_a_handler_that_another_delivery_is_running(timed):
    worker, store, clock, billing, event, record_key = timed
    assert store.begin(record_key, expires_in=120, owner="another-message").started  # a duplicate is in it now

    # Whatever its receive count: the other delivery's message stays queued until the handler succeeded.
    assert deliver(worker, event, receive_count=3).response() == {"batchItemFailures": []}
    assert billing.calls == ["email_receipt"]

    clock.now += 121  # that delivery died: its record expired, the next delivery runs the handler
    deliver(worker, event)
    assert billing.calls == ["email_receipt", "record_payment"]


def test_a_redelivered_message_takes_over_the_record_of_its_own_crashed_attempt(timed):
    """kill -9 inside a handler, then the local queue delivers the same message again at once."""
    worker, store, clock, billing, event, record_key = timed
    assert store.begin(record_key, expires_in=120, owner="message-1").started

    assert deliver(worker, event, receive_count=2, message_id="message-1").response() == {"batchItemFailures": []}
    assert billing.calls == ["record_payment", "email_receipt"]
    deliver(worker, event, receive_count=3, message_id="message-1")
    assert billing.calls == ["record_payment", "email_receipt"]  # done now


def test_a_success_is_completed_for_seven_days(timed):
    worker, store, clock, billing, event, record_key = timed
    deliver(worker, event)
    record = store.get(record_key)
    assert record.status == COMPLETED and record.expires_at == clock.now + DONE_TTL_SECONDS

    clock.now += DONE_TTL_SECONDS - 60  # Stripe resends days later
    deliver(worker, event)
    assert billing.calls == ["record_payment", "email_receipt"]

    clock.now += 120  # past the memory of the success
    deliver(worker, event)
    assert billing.calls == ["record_payment", "email_receipt"] * 2


class LambdaContext:
    def __init__(self, remaining_ms):
        self.remaining_ms = remaining_ms
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


@pytest.mark.parametrize(
    ("env", "remaining_ms", "expected"),
    [
        ({}, None, 120.0),  # outside Lambda: the visibility timeout
        ({}, 42_000, 42.0),  # in Lambda: the time the invocation has left
        ({"LETSGO_STRIPE_IN_PROGRESS_SECONDS": "30"}, 42_000, 30.0),  # configured
    ],
)
def test_a_running_handler_holds_its_record_until_the_delivery_must_be_over(
    make_worker, notifications, tmp_path, env, remaining_ms, expected
):
    clock = Clock()
    seen = []

    class Inspecting:
        __name__ = "inspecting"

        def look(self, event, ctx):
            record = store.get(handler_key(event, Inspecting.look))
            seen.append((record.status, record.expires_at - clock.now, record.owner))

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("invoice.paid", self.look)

    worker = make_worker(
        plugins=[Inspecting(), notifications],
        env={**STRIPE_ONLY, "LETSGO_WORKER_VISIBILITY_TIMEOUT": "120", **env},
    )
    worker.idempotency_store = store = SqliteIdempotencyStore(str(tmp_path / "records.db"), clock=clock)
    context = LambdaContext(remaining_ms) if remaining_ms is not None else None
    assert deliver(worker, paid_event(), message_id="m-1", lambda_context=context).response() == {"batchItemFailures": []}
    assert seen == [(IN_PROGRESS, expected, "m-1")]


def test_an_idempotency_store_that_is_down_fails_the_message_before_any_handler_runs(make_worker, notifications):
    billing = Billing()
    worker = make_worker(plugins=[billing, notifications], env=STRIPE_ONLY)

    class Down:
        def begin(self, key, *, expires_in, owner=None):
            raise ConnectionError("dynamodb.us-east-1.amazonaws.com unreachable")

    worker.idempotency_store = Down()
    result = deliver(worker, paid_event())
    assert len(result.response()["batchItemFailures"]) == 1
    assert "unreachable" in result.outcomes[0].reason
    assert billing.calls == []


# -- concurrent deliveries (threads against SQLite) ----------------------------------------------------


class Slow:
    """One invoice.paid handler that takes a while, counting its runs per event."""

    __name__ = "slow"

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.runs: dict[str, int] = {}
        self.lock = threading.Lock()

    def record(self, event, ctx):
        with self.lock:
            self.runs[event.id] = self.runs.get(event.id, 0) + 1
        time.sleep(self.seconds)

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.record)


def test_a_redelivery_arriving_while_the_handler_runs_does_not_run_it_again(local_worker):
    """Delivery A is in the handler; B, another message of the same event on its second receive, arrives."""
    started, finish = threading.Event(), threading.Event()
    runs = []

    class Blocking:
        __name__ = "blocking"

        def record(self, event, ctx):
            runs.append(ctx.message_id)
            if len(runs) == 1:
                started.set()
                assert finish.wait(10)

        @hookimpl
        def letsgo_stripe_handlers(self, register):
            register("invoice.paid", self.record)

    worker = local_worker(Blocking())
    event = paid_event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(deliver, worker, event, 1, "message-a")
        assert started.wait(10)
        second = deliver(worker, event, receive_count=2, message_id="message-b")
        finish.set()
        assert first.result(10).response() == {"batchItemFailures": []}
    assert second.response() == {"batchItemFailures": []}
    third = deliver(worker, event, message_id="message-c")  # the success is remembered
    assert third.response() == {"batchItemFailures": []}
    assert runs == ["message-a"]


def test_concurrent_deliveries_of_many_events_run_each_handler_once(local_worker):
    """Stripe resends and SQS redeliveries of 10 events, 6 deliveries each, all at once from 12 threads."""
    slow = Slow()
    worker = local_worker(slow)
    events = [paid_event() for _ in range(10)]
    deliveries = [(event, 1 + n % 3) for event in events for n in range(6)]

    def run(delivery):
        event, receive_count = delivery
        return deliver(worker, event, receive_count=receive_count).response()

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(run, deliveries))
    assert all(response == {"batchItemFailures": []} for response in responses)
    # Afterwards every event's handler is completed: one more round runs nothing.
    for event in events:
        deliver(worker, event)
    assert slow.runs == {event["id"]: 1 for event in events}
