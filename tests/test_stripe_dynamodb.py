"""letsgo-stripe in AWS: duplicates are caught by the DynamoDB idempotency store (moto's server)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from moto_server import aws, serialized_moto_server, unique  # noqa: F401 (fixtures)

from host import hookimpl
from host.core.batch import process_sqs_event
from host.services.idempotency import DynamoIdempotencyStore, get_store
from host.testing import sqs_event
from letsgo_stripe.testing import stripe_message

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"

#: DynamoDB applies conditional writes to one item one after another; so does this moto server.
moto_server = pytest.fixture(scope="module")(serialized_moto_server)


class Ledger:
    """An app plugin recording every payment it is handed."""

    __name__ = "ledger"

    def __init__(self):
        self.payments: list[str] = []
        self.delay = 0.0  # seconds each payment takes to record

    def record(self, event, ctx):
        self.payments.append(event.id)
        time.sleep(self.delay)

    @hookimpl
    def letsgo_stripe_handlers(self, register):
        register("invoice.paid", self.record)


@pytest.fixture
def dynamo_worker(aws, make_worker, notifications):
    dynamodb = aws.client("dynamodb")
    table = unique("stripe-idempotency")
    # As template.yaml creates it: partition key "id", TTL attribute "expires_at".
    dynamodb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    ledger = Ledger()
    worker = make_worker(
        plugins=[ledger, notifications],
        env={"LETSGO_WORKER_PLUGINS": "letsgo_stripe", "LETSGO_WORKER_IDEMPOTENCY_TABLE": table, "AWS_REGION": "us-east-1"},
    )
    assert isinstance(get_store(worker), DynamoIdempotencyStore)
    return worker, ledger


def test_duplicates_across_and_within_batches_run_once(dynamo_worker, notifications):
    worker, ledger = dynamo_worker
    event = json.loads((FIXTURES / "invoice.paid.json").read_text())
    event["id"] = f"evt_{uuid.uuid4().hex}"
    message = stripe_message(event)

    first = process_sqs_event(worker, sqs_event(message, message, message))
    second = process_sqs_event(worker, sqs_event(message))

    assert first.response() == second.response() == {"batchItemFailures": []}
    assert ledger.payments == [event["id"]]
    assert len(notifications.texts) == 1


def test_concurrent_deliveries_from_many_threads_run_each_handler_once(dynamo_worker):
    """Stripe resends and SQS redeliveries of 5 events, 4 deliveries each, from 8 threads at once.

    The requests reach moto concurrently; its server applies them one at a time, as DynamoDB
    applies the conditional writes to one item (moto's threaded server does not: under it two
    conditional puts of one item can both succeed).
    """
    worker, ledger = dynamo_worker
    ledger.delay = 0.02  # long enough for the duplicates to arrive while it runs
    events = []
    for _ in range(5):
        event = json.loads((FIXTURES / "invoice.paid.json").read_text())
        event["id"] = f"evt_{uuid.uuid4().hex}"
        events.append(event)
    deliveries = [(event, 1 + n % 3) for event in events for n in range(4)]

    def deliver(delivery):
        event, receive_count = delivery
        return process_sqs_event(worker, sqs_event(stripe_message(event), receive_count=receive_count)).response()

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(deliver, deliveries))
    assert all(response == {"batchItemFailures": []} for response in responses)
    assert sorted(ledger.payments) == sorted(event["id"] for event in events)
