"""letsgo-stripe in AWS: duplicates are caught by the DynamoDB idempotency store (moto's server)."""

from __future__ import annotations

import json
import uuid
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

    def record(self, event, ctx):
        self.payments.append(event.id)

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
