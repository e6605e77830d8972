"""Rejected messages go straight to the dead-letter queue, in Lambda and under ``serve --sqs`` (moto's SQS).

Also the SAM template's part of it: the function knows its dead-letter queue and
may send there, and failed ticks have a dead-letter queue the alarm watches too.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pydantic
import pytest

import lambda_entry
from aws_events import Context, receive_until, spy_on_clients
from host import hookimpl
from host.aws.sqs_source import SqsSource
from host.config import Settings
from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from host.core.worker import set_worker
from moto_server import aws, create_queue, moto_server, unique  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent


class Order(pydantic.BaseModel):
    order_id: str


class Plugin:
    """``test:order`` takes an :class:`Order`; ``test:boom`` always fails."""

    @hookimpl
    def letsgo_register_messages(self, register):
        register("test:order", lambda message, ctx: None, payload=Order)

        def boom(message, ctx):
            raise RuntimeError("boom")

        register("test:boom", boom)


#: One body per kind of rejection, and a word its reason must hold.
REJECTED = [
    ("this is not JSON", None, "not valid JSON"),
    (json.dumps({"type": "test:nobody-handles-this", "payload": {}}), "test:nobody-handles-this", "unknown message type"),
    (json.dumps({"type": "test:order", "payload": {"order_id": 42}}), "test:order", "order_id"),
]


@pytest.fixture
def use_worker(make_worker, aws):
    def use(**environ: str):
        worker = make_worker(plugins=[Plugin()], env={**aws.environ(), **environ}, entry_points=False)
        set_worker(worker)
        return worker

    return use


def dead_letters(sqs, dlq_url: str, count: int, timeout: float = 30) -> list[dict]:
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        found += sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"],
        ).get("Messages", [])
    return found


def attribute(message: dict, name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return value["StringValue"] if value else None


def settle_as_the_event_source_mapping_does(sqs, url: str, event: dict, response: dict) -> None:
    """Delete every record the function did not report failed."""
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


# -- Lambda ---------------------------------------------------------------------------


def test_lambda_sends_rejected_records_to_the_dlq_with_their_reason_after_one_receive(aws, use_worker):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5, VisibilityTimeout=600)
    ids = {}
    for body, type_, word in REJECTED:
        ids[sqs.send_message(QueueUrl=queue["url"], MessageBody=body)["MessageId"]] = (body, type_, word)
    failing = sqs.send_message(QueueUrl=queue["url"], MessageBody=json.dumps({"type": "test:boom", "payload": None}))["MessageId"]
    use_worker(LETSGO_WORKER_DLQ_URL=queue["dlq_url"])

    event = receive_until(sqs, queue["url"], count=4)
    assert {r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]} == {"1"}
    response = lambda_entry.handler(event, Context())
    # Only the failure is left to SQS; the rejected ones are done with.
    assert response == {"batchItemFailures": [{"itemIdentifier": failing}]}
    settle_as_the_event_source_mapping_does(sqs, queue["url"], event, response)

    dead = dead_letters(sqs, queue["dlq_url"], 3)
    assert sorted(attribute(m, "letsgo.message_id") for m in dead) == sorted(ids)
    for message in dead:
        body, type_, word = ids[attribute(message, "letsgo.message_id")]
        assert message["Body"] == body
        assert word in attribute(message, "letsgo.reason")
        assert attribute(message, "letsgo.type") == type_
    assert dead_letters(sqs, queue["dlq_url"], 1, timeout=1) == []  # the failure is not there


def test_a_failed_send_to_the_dlq_falls_back_to_reporting_the_record_failed(aws, use_worker, caplog):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    rejected = sqs.send_message(QueueUrl=queue["url"], MessageBody="not JSON")["MessageId"]
    missing = queue["dlq_url"] + "-no-such-queue"
    use_worker(LETSGO_WORKER_DLQ_URL=missing)
    event = receive_until(sqs, queue["url"], count=1)
    with caplog.at_level(logging.WARNING, logger="letsgo.lambda"):
        response = lambda_entry.handler(event, Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": rejected}]}
    assert any("could not send 1 rejected message(s) to the dead-letter queue" in r.getMessage() for r in caplog.records)


def test_with_the_setting_off_a_rejected_record_is_left_to_the_redrive_policy(aws, use_worker, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    rejected = sqs.send_message(QueueUrl=queue["url"], MessageBody="not JSON")["MessageId"]
    use_worker(LETSGO_WORKER_DLQ_URL=queue["dlq_url"], LETSGO_WORKER_REJECTED_TO_DLQ="0")
    spies = spy_on_clients(monkeypatch, "send_message_batch")
    event = receive_until(sqs, queue["url"], count=1)
    assert lambda_entry.handler(event, Context()) == {"batchItemFailures": [{"itemIdentifier": rejected}]}
    assert "sqs" not in spies  # no SQS call at all: boto3 is not even needed
    assert dead_letters(sqs, queue["dlq_url"], 1, timeout=1) == []


def test_a_fifo_dead_letter_queue_gets_the_group_and_a_deduplication_id(aws, use_worker):
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName=unique("dead-letters") + ".fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    queue = create_queue(sqs, unique("orders") + ".fifo", FifoQueue="true", ContentBasedDeduplication="true")
    rejected = sqs.send_message(QueueUrl=queue["url"], MessageBody="not JSON", MessageGroupId="g")["MessageId"]
    use_worker(LETSGO_WORKER_DLQ_URL=dlq)
    event = receive_until(sqs, queue["url"], count=1)
    assert lambda_entry.handler(event, Context()) == {"batchItemFailures": []}
    dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2, AttributeNames=["All"],
                               MessageAttributeNames=["All"])["Messages"]
    assert [attribute(m, "letsgo.message_id") for m in dead] == [rejected]
    assert dead[0]["Attributes"]["MessageGroupId"] == "g"


# -- serve --sqs ---------------------------------------------------------------------------


def deliver(source: SqsSource, worker, wait: float = 5) -> list:
    records = source.receive(10, wait)
    if not records:
        return []
    outcomes = process_sqs_event(worker, {"Records": records}).outcomes
    source.settle(records, outcomes)
    return outcomes


def test_serve_sqs_finds_the_dlq_in_the_redrive_policy_and_sends_rejected_messages_there(aws, make_worker):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5, VisibilityTimeout=600)
    ids = {sqs.send_message(QueueUrl=queue["url"], MessageBody=body)["MessageId"]: (body, word) for body, _, word in REJECTED}
    worker = make_worker(plugins=[Plugin()], entry_points=False)
    source = SqsSource(queue["url"], Settings.from_env({"AWS_REGION": "us-east-1"}))
    assert source.dead_letter_url == queue["dlq_url"]

    outcomes = []
    deadline = time.monotonic() + 30
    while len(outcomes) < 3 and time.monotonic() < deadline:
        outcomes += deliver(source, worker)
    assert [o.status for o in outcomes] == [Status.REJECTED] * 3
    dead = dead_letters(sqs, queue["dlq_url"], 3)
    assert sorted(attribute(m, "letsgo.message_id") for m in dead) == sorted(ids)
    for message in dead:
        assert ids[attribute(message, "letsgo.message_id")][1] in attribute(message, "letsgo.reason")
    # Deleted from the queue after one receive, not hidden for 600 s awaiting the redrive policy.
    attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


def test_serve_sqs_backs_a_rejected_message_off_when_the_dlq_cannot_take_it(aws, make_worker, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5, VisibilityTimeout=600)
    sqs.send_message(QueueUrl=queue["url"], MessageBody="not JSON")
    worker = make_worker(plugins=[Plugin()], entry_points=False)
    settings = Settings.from_env({"AWS_REGION": "us-east-1", "LETSGO_WORKER_DLQ_URL": queue["dlq_url"] + "-missing",
                                  "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "1", "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "1"})
    source = SqsSource(queue["url"], settings)
    (outcome,) = deliver(source, worker)
    assert outcome.status is Status.REJECTED
    # Still in its queue, and back after its 1 s back-off rather than the queue's 600 s.
    again = receive_until(sqs, queue["url"], count=1, timeout=60)["Records"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in again] == ["2"]


# -- the template ------------------------------------------------------------------------


def test_the_template_gives_the_function_its_dlq_bucket_and_rights_and_ticks_a_dlq_the_alarm_watches():
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    resources = template["Resources"]
    function = resources["Worker"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["LETSGO_WORKER_DLQ_URL"] == {"Ref": "DeadLetterQueue"}
    assert variables["LETSGO_WORKER_LARGE_MESSAGE_BUCKET"] == {"Ref": "LargeMessageBucket"}
    statements = [s for policy in function["Policies"] if isinstance(policy, dict) and "Statement" in policy
                  for s in policy["Statement"]]
    rights = {(json.dumps(s["Action"]), json.dumps(s["Resource"])) for s in statements}
    assert (json.dumps("sqs:ChangeMessageVisibility"), json.dumps({"Fn::GetAtt": ["Queue", "Arn"]})) in rights
    assert (json.dumps("sqs:SendMessage"), json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})) in rights
    s3 = next(s for s in statements if s["Sid"] == "LargeMessageBodies")
    assert sorted(s3["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]

    bucket = resources["LargeMessageBucket"]["Properties"]
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"Ref": "LargeMessageExpirationDays"}
    assert template["Parameters"]["LargeMessageExpirationDays"]["Default"] == 14

    ticks = function["Events"]["Ticks"]["Properties"]
    assert ticks["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["TicksDeadLetterQueue", "Arn"]}}
    assert ticks["RetryPolicy"]["MaximumRetryAttempts"] > 0
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["TicksDeadLetterQueue", "Arn"]}}
    policy = resources["TicksDeadLetterQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "TicksDeadLetterQueue"}]
    assert policy["PolicyDocument"]["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}

    watched = {
        metric["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for metric in resources["DeadLetterAlarm"]["Properties"]["Metrics"] if "MetricStat" in metric
    }
    assert watched == {"DeadLetterQueue", "TicksDeadLetterQueue"}
