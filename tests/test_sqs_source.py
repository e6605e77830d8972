"""The SQS message source and `serve --sqs`, against SQS on moto's server."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host import hookimpl
from host.core.batch import process_sqs_event
from host.config import Settings
from host.local.delivery import MessageSource
from host.core.dispatch import Outcome, Status
from host.errors import StartupError
from host.aws.sqs_source import SqsSource, retry_delay_seconds
from host.testing import write_distribution

FIXTURE_RECORD = Path(__file__).resolve().parent / "fixtures" / "aws" / "sqs-standard-batch.json"


class Handlers:
    """Message types for these tests: one that succeeds, one that always fails."""

    def __init__(self):
        self.handled: list[tuple[str, int]] = []

    @hookimpl
    def letsgo_register_messages(self, register):
        def ok(message, ctx):
            self.handled.append((message.payload, ctx.receive_count))

        def boom(message, ctx):
            raise RuntimeError(f"boom on receive {ctx.receive_count}")

        register("test:ok", ok)
        register("test:boom", boom)


class RecordingClient:
    """A real boto3 SQS client that also keeps the arguments of visibility changes."""

    def __init__(self, client):
        self._client = client
        self.visibility_changes: list[dict] = []

    def change_message_visibility_batch(self, **request):
        self.visibility_changes.extend(request["Entries"])
        return self._client.change_message_visibility_batch(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


def settings(**environ: str) -> Settings:
    return Settings.from_env({"AWS_REGION": "us-east-1", **environ})


def send(sqs, queue_url: str, message: dict, **options) -> str:
    return sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message), **options)["MessageId"]


def counts(sqs, queue_url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def deliver(source: SqsSource, worker, wait: float = 5) -> list[Outcome]:
    """One turn of the delivery loop: receive a batch, process it as Lambda would, settle it."""
    records = source.receive(10, wait)
    if not records:
        return []
    outcomes = process_sqs_event(worker, {"Records": records}).outcomes
    source.settle(records, outcomes)
    return outcomes


@pytest.fixture
def handlers():
    return Handlers()


@pytest.fixture
def test_worker(make_worker, handlers):
    return make_worker(plugins=[handlers], entry_points=False)


# -- receive -------------------------------------------------------------------------------


def test_is_a_message_source(aws):
    queue = create_queue(aws.client("sqs"))
    assert isinstance(SqsSource(queue["url"], settings()), MessageSource)


def test_records_have_the_shape_of_a_lambda_sqs_event(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    message_id = send(
        sqs, queue["url"], {"type": "test:ok", "payload": 1},
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "t-1"}},
    )
    source = SqsSource(queue["url"], settings())
    (record,) = source.receive(10, 5)
    with open(FIXTURE_RECORD) as file:
        lambda_record = json.load(file)["Records"][0]
    assert set(record) == set(lambda_record)
    assert set(lambda_record["attributes"]) <= set(record["attributes"])
    assert record["messageId"] == message_id
    assert json.loads(record["body"]) == {"type": "test:ok", "payload": 1}
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == source.describe()["QueueArn"]
    assert record["eventSourceARN"].startswith("arn:aws:sqs:us-east-1:")
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "tenant": {"stringValue": "t-1", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }


def test_receive_gathers_more_than_ten_with_several_calls(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    for start in range(0, 15, 5):
        sqs.send_message_batch(QueueUrl=queue["url"], Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"type": "test:ok", "payload": n})} for n in range(start, start + 5)
        ])
    records = SqsSource(queue["url"], settings()).receive(15, 1)
    assert sorted(json.loads(r["body"])["payload"] for r in records) == list(range(15))


def test_an_empty_queue_returns_nothing_after_the_wait(aws):
    queue = create_queue(aws.client("sqs"))
    assert SqsSource(queue["url"], settings()).receive(10, 0) == []


def test_a_missing_queue_stops_start_up(aws):
    with pytest.raises(StartupError, match="cannot read the SQS queue .*no-such-queue.*check the queue URL"):
        SqsSource(f"{aws.url}/123456789012/no-such-queue", settings())


def test_a_queue_without_redrive_policy_is_warned_about(aws, caplog):
    queue = create_queue(aws.client("sqs"))
    with caplog.at_level(logging.WARNING, logger="letsgo.sqs"):
        SqsSource(queue["url"], settings())
    assert "has no redrive policy" in caplog.text


# -- settle ----------------------------------------------------------------------------------


def test_success_is_deleted_and_failure_backs_off_then_comes_back(aws, test_worker, handlers):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    send(sqs, queue["url"], {"type": "test:ok", "payload": "a"})
    send(sqs, queue["url"], {"type": "test:boom", "payload": None})
    source = SqsSource(queue["url"], settings(LETSGO_WORKER_BACKOFF_BASE_SECONDS="1"))
    source._client = client = RecordingClient(source.client)

    outcomes = []
    while len(outcomes) < 2:
        outcomes += deliver(source, test_worker)
    assert sorted(o.status.value for o in outcomes) == ["failed", "succeeded"]
    assert handlers.handled == [("a", 1)]
    assert counts(sqs, queue["url"]) == (0, 1)  # the success is gone, the failure is hidden
    assert [entry["VisibilityTimeout"] for entry in client.visibility_changes] == [1]

    again = []
    while not again:
        again = deliver(source, test_worker, wait=10)
    assert [(o.type, o.status) for o in again] == [("test:boom", Status.FAILED)]
    assert "boom on receive 2" in again[0].reason


def test_back_off_grows_with_approximate_receive_count(aws, test_worker):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=10)
    send(sqs, queue["url"], {"type": "test:boom", "payload": None})
    source = SqsSource(queue["url"], settings(LETSGO_WORKER_BACKOFF_BASE_SECONDS="1", LETSGO_WORKER_BACKOFF_MAX_SECONDS="600"))
    source._client = client = RecordingClient(source.client)
    (record,) = source.receive(10, 5)
    # As if this were the fifth delivery: the back-off is 2**4 = 16 s nominal, at least half of it.
    record["attributes"]["ApproximateReceiveCount"] = "5"
    source.settle([record], process_sqs_event(test_worker, {"Records": [record]}).outcomes)
    (change,) = client.visibility_changes
    assert 8 <= change["VisibilityTimeout"] <= 16
    assert counts(sqs, queue["url"]) == (0, 1)
    assert source.receive(10, 0) == []


def test_retry_delay_doubles_up_to_the_maximum():
    rng = random.Random(7)
    for count, nominal in [(1, 2), (2, 4), (3, 8), (4, 16), (9, 300), (50, 300)]:
        for _ in range(20):
            assert nominal / 2 <= retry_delay_seconds(count, 2, 300, rng) <= nominal
    assert retry_delay_seconds(1, 0, 300) == 0
    assert retry_delay_seconds(30, 100000, 100000) == 43200  # SQS's longest visibility timeout


def test_redrive_policy_moves_a_poison_message_to_the_dlq(aws, test_worker):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=2)
    poison = {"type": "test:unknown-type", "payload": {"x": 1}}
    message_id = send(sqs, queue["url"], poison)
    # Without straight-to-DLQ (tests/test_aws_dlq.py), the redrive policy dead-letters a rejected message.
    source = SqsSource(queue["url"], settings(LETSGO_WORKER_BACKOFF_BASE_SECONDS="0", LETSGO_WORKER_REJECTED_TO_DLQ="0"))
    assert source.max_receive_count == 2

    statuses, dead = [], []
    for _ in range(10):
        statuses += [o.status for o in deliver(source, test_worker, wait=1)]
        # The receive after the second failure is the one that makes SQS move the message.
        dead = sqs.receive_message(QueueUrl=queue["dlq_url"], WaitTimeSeconds=0).get("Messages", [])
        if dead:
            break
    assert statuses == [Status.REJECTED, Status.REJECTED]
    (dead,) = dead
    assert dead["MessageId"] == message_id and json.loads(dead["Body"]) == poison
    assert counts(sqs, queue["url"]) == (0, 0)


def test_release_makes_messages_visible_at_once(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, VisibilityTimeout=600)
    send(sqs, queue["url"], {"type": "test:ok", "payload": 1})
    source = SqsSource(queue["url"], settings())
    records = source.receive(10, 5)
    assert source.receive(10, 0) == []
    assert source.release(records) == 1
    (again,) = source.receive(10, 5)
    assert again["attributes"]["ApproximateReceiveCount"] == "2"


def test_settling_a_stale_receipt_is_logged_not_raised(aws, caplog):
    queue = create_queue(aws.client("sqs"))
    source = SqsSource(queue["url"], settings())
    record = {"messageId": "m-1", "receiptHandle": "not-a-receipt-handle", "attributes": {"ApproximateReceiveCount": "1"}}
    with caplog.at_level(logging.WARNING, logger="letsgo.sqs"):
        source.settle([record], [Outcome(Status.SUCCEEDED, "m-1")])
        source.settle([record], [Outcome(Status.FAILED, "m-1", reason="boom")])
    assert caplog.text.count("DeleteMessageBatch") == 1
    assert caplog.text.count("ChangeMessageVisibilityBatch") == 1


# -- serve --sqs, end to end -------------------------------------------------------------------

E2E_PLUGIN = '''
import json, os
from host import hookimpl

def _log(ctx, name):
    with open(os.environ["E2E_LOG"], "a") as file:
        file.write(json.dumps({"type": name, "receive_count": ctx.receive_count}) + "\\n")

def ok(message, ctx):
    _log(ctx, "e2e:ok")

def flaky(message, ctx):
    if ctx.receive_count == 1:
        raise RuntimeError("first delivery always fails")
    _log(ctx, "e2e:flaky")

@hookimpl
def letsgo_register_messages(register):
    register("e2e:ok", ok)
    register("e2e:flaky", flaky)
'''


def test_serve_sqs_delivers_retries_and_dead_letters(aws, tmp_path):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=2)
    site = tmp_path / "site"
    write_distribution(site, "e2e-plugin", "e2e_plugin", E2E_PLUGIN)
    log = tmp_path / "handled.jsonl"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "AWS_"))}
    environ.update(aws.environ())
    environ.update({
        "PYTHONPATH": str(site), "E2E_LOG": str(log),
        "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "1", "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "1",
        "LETSGO_WORKER_PLUGINS": "e2e_plugin,letsgo_builtins",
    })
    send(sqs, queue["url"], {"type": "e2e:ok", "payload": None})
    send(sqs, queue["url"], {"type": "e2e:flaky", "payload": None})
    poison_id = send(sqs, queue["url"], {"type": "e2e:nobody-handles-this", "payload": None})

    process = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "serve", "--sqs", queue["url"], "--port", "0"],
        env=environ, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=(stderr_file := (tmp_path / "stderr.log").open("w")),
    )
    try:
        deadline = time.monotonic() + 60
        handled: list[dict] = []
        dead: list[dict] = []
        while time.monotonic() < deadline and (len(handled) < 2 or not dead):
            time.sleep(0.2)
            handled = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            if not dead:
                dead = sqs.receive_message(
                    QueueUrl=queue["dlq_url"], WaitTimeSeconds=0, MessageAttributeNames=["All"],
                ).get("Messages", [])
        assert sorted(handled, key=lambda h: h["type"]) == [
            {"type": "e2e:flaky", "receive_count": 2},
            {"type": "e2e:ok", "receive_count": 1},
        ]
        # Rejected: sent to the redrive policy's dead-letter queue at once, naming its id in its queue.
        assert [m["MessageAttributes"]["letsgo.message_id"]["StringValue"] for m in dead] == [poison_id]
        assert counts(sqs, queue["url"]) == (0, 0)
    finally:
        process.send_signal(signal.SIGTERM)
        # The delivery loop stops once its current long poll (10 s under serve) returns; a message
        # sent now and then ends that poll early (it is released back to the queue, or handled).
        for _ in range(30):
            try:
                process.wait(1)
                break
            except subprocess.TimeoutExpired:
                send(sqs, queue["url"], {"type": "e2e:ok", "payload": "wake-up"})
        if process.poll() is None:
            process.kill()
            process.wait(10)
        stderr_file.close()
    stderr = (tmp_path / "stderr.log").read_text()
    assert process.returncode == 0, stderr
    assert "first delivery always fails" in stderr
    assert "sent to the dead-letter queue" in stderr


def test_importing_host_sqs_source_loads_no_heavy_library():
    code = "import sys, host.aws.sqs_source; print([m for m in ('boto3', 'botocore') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
