"""Large messages: bodies over 256 KiB in S3, in the SQS Extended Client's pointer format (moto's SQS and S3).

The pointers are written here exactly as the other libraries write them: the
Python ``amazon-sqs-extended-client`` (``json.dumps`` with its default spaces,
``ExtendedPayloadSize``) and older Java clients (compact JSON, the
``com.amazon.sqs.javamessaging.MessageS3Pointer`` class, ``SQSLargePayloadSize``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

import lambda_entry
from aws_events import Context, receive_until
from host import hookimpl
from host.aws.large_messages import MAX_SQS_MESSAGE_BYTES, sqs_size
from host.aws.sqs_source import SqsSource
from host.config import Settings
from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from host.core.worker import get_worker, set_worker
from host.services.enqueue import InvalidMessageError, SqsEnqueuer, enqueue
from moto_server import aws, create_queue, moto_server, unique  # noqa: F401 (fixtures)
from test_server import JSON, Home

BIG = "x" * (300 * 1024)


class Plugin:
    """``test:big`` keeps the size of each payload it gets; ``test:fail`` always fails."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    @hookimpl
    def letsgo_register_messages(self, register):
        def big(message, ctx):
            self.sizes.append(len(message.payload["data"]))

        def fail(message, ctx):
            raise RuntimeError("not this time")

        register("test:big", big)
        register("test:fail", fail)


@pytest.fixture
def bucket(aws):
    name = unique("large-messages")
    aws.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def plugin(make_worker, aws):
    plugin = Plugin()
    set_worker(make_worker(plugins=[plugin], env=aws.environ(), entry_points=False))
    return plugin


def python_client_pointer(s3, sqs, queue_url: str, bucket: str, body: str) -> str:
    """Send ``body`` as the Python amazon-sqs-extended-client does; return the S3 key."""
    key = str(uuid.uuid4())
    data = body.encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    pointer = json.dumps(["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": bucket, "s3Key": key}])
    sqs.send_message(QueueUrl=queue_url, MessageBody=pointer,
                     MessageAttributes={"ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(data))}})
    return key


def legacy_java_pointer(s3, sqs, queue_url: str, bucket: str, body: str) -> str:
    """Send ``body`` as older Java extended clients do; return the S3 key."""
    key = str(uuid.uuid4())
    data = body.encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    pointer = json.dumps(["com.amazon.sqs.javamessaging.MessageS3Pointer", {"s3BucketName": bucket, "s3Key": key}],
                         separators=(",", ":"))
    sqs.send_message(QueueUrl=queue_url, MessageBody=pointer,
                     MessageAttributes={"SQSLargePayloadSize": {"DataType": "Number", "StringValue": str(len(data))}})
    return key


def exists(s3, bucket: str, key: str) -> bool:
    return any(item["Key"] == key for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def big_message(type_: str = "test:big") -> str:
    return json.dumps({"type": type_, "payload": {"data": BIG}})


# -- consumers ---------------------------------------------------------------------------


def test_lambda_resolves_a_python_extended_client_pointer_and_deletes_its_object_after_success(aws, bucket, plugin):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs)
    key = python_client_pointer(s3, sqs, queue["url"], bucket, big_message())
    failing = python_client_pointer(s3, sqs, queue["url"], bucket, big_message("test:fail"))
    event = receive_until(sqs, queue["url"], count=2)
    assert all(r["body"].startswith('["software.amazon.payloadoffloading.PayloadS3Pointer", {') for r in event["Records"])

    response = lambda_entry.handler(event, Context())
    assert plugin.sizes == [len(BIG)]
    assert len(response["batchItemFailures"]) == 1
    assert not exists(s3, bucket, key)  # succeeded: gone
    assert exists(s3, bucket, failing)  # failed: kept for the retry


def test_serve_sqs_resolves_a_legacy_java_pointer_and_deletes_its_object_once_the_message_is_deleted(aws, bucket, make_worker):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs)
    key = legacy_java_pointer(s3, sqs, queue["url"], bucket, big_message())
    plugin = Plugin()
    worker = make_worker(plugins=[plugin], entry_points=False)
    source = SqsSource(queue["url"], Settings.from_env({"AWS_REGION": "us-east-1"}))
    records = []
    deadline = time.monotonic() + 30
    while not records and time.monotonic() < deadline:
        records = source.receive(10, 2)
    outcomes = process_sqs_event(worker, {"Records": records}).outcomes
    assert [o.status for o in outcomes] == [Status.SUCCEEDED] and plugin.sizes == [len(BIG)]
    assert exists(s3, bucket, key)  # not before the message is settled
    source.settle(records, outcomes)
    assert not exists(s3, bucket, key)


def test_a_pointer_to_a_missing_object_is_a_rejection_that_says_so(aws, bucket, plugin, make_worker):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    key = python_client_pointer(s3, sqs, queue["url"], bucket, big_message())
    s3.delete_object(Bucket=bucket, Key=key)
    event = receive_until(sqs, queue["url"], count=1)
    outcome = process_sqs_event(get_worker(), event).outcomes[0]
    assert outcome.status is Status.REJECTED
    assert f"s3://{bucket}/{key}" in outcome.reason and "does not exist" in outcome.reason
    # With the dead-letter queue known, Lambda moves it there at once, pointer and size attribute as they were.
    set_worker(make_worker(plugins=[Plugin()], env={**aws.environ(), "LETSGO_WORKER_DLQ_URL": queue["dlq_url"]},
                           entry_points=False))
    assert lambda_entry.handler(event, Context()) == {"batchItemFailures": []}
    (dead,) = sqs.receive_message(QueueUrl=queue["dlq_url"], WaitTimeSeconds=2, MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == event["Records"][0]["body"]
    assert "ExtendedPayloadSize" in dead["MessageAttributes"]
    assert "does not exist" in dead["MessageAttributes"]["letsgo.reason"]["StringValue"]


def test_s3_out_of_reach_fails_the_message_for_a_retry_and_keeps_its_object(aws, bucket, plugin, monkeypatch):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs)
    key = python_client_pointer(s3, sqs, queue["url"], bucket, big_message())
    event = receive_until(sqs, queue["url"], count=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    response = lambda_entry.handler(event, Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    assert plugin.sizes == [] and exists(s3, bucket, key)


# -- producers --------------------------------------------------------------------------------


def test_enqueue_over_256_kib_stores_the_body_in_s3_and_sends_a_pointer_lambda_resolves(aws, bucket, plugin):
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs)
    enqueuer = SqsEnqueuer(queue["url"], "us-east-1", bucket)
    enqueue({"type": "test:big", "payload": {"data": BIG}}, enqueuer=enqueuer)
    (message,) = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=2, MessageAttributeNames=["All"])["Messages"]
    kind, location = json.loads(message["Body"])
    assert kind == "software.amazon.payloadoffloading.PayloadS3Pointer" and location["s3BucketName"] == bucket
    stored = s3.get_object(Bucket=bucket, Key=location["s3Key"])["Body"].read()
    assert message["MessageAttributes"]["ExtendedPayloadSize"] == {"DataType": "Number", "StringValue": str(len(stored))}
    assert json.loads(stored)["payload"]["data"] == BIG
    sqs.change_message_visibility(QueueUrl=queue["url"], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)

    event = receive_until(sqs, queue["url"], count=1)
    assert lambda_entry.handler(event, Context()) == {"batchItemFailures": []}
    assert plugin.sizes == [len(BIG)] and not exists(s3, bucket, location["s3Key"])


def test_without_a_bucket_a_large_message_is_refused_naming_the_setting(aws):
    queue = create_queue(aws.client("sqs"))
    with pytest.raises(InvalidMessageError, match="LETSGO_WORKER_LARGE_MESSAGE_BUCKET"):
        enqueue({"type": "test:big", "payload": {"data": BIG}}, enqueuer=SqsEnqueuer(queue["url"], "us-east-1"))


def test_the_size_counts_message_attributes_as_sqs_does():
    attributes = {"ExtendedPayloadSize": {"DataType": "Number", "StringValue": "300000"}}
    assert sqs_size("héllo", attributes) == 6 + len("ExtendedPayloadSize") + len("Number") + len("300000")
    assert sqs_size("x", {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}) == 1 + 4 + 6 + 2
    assert MAX_SQS_MESSAGE_BYTES == 262144


def test_send_sqs_on_the_command_line_sends_a_large_payload_through_s3(aws, bucket, tmp_path):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"data": BIG}))
    environ = {**aws.environ(), "LETSGO_WORKER_LARGE_MESSAGE_BUCKET": bucket, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "host.cli", "send", "test:big", "--file", str(payload), "--sqs", queue["url"], "--no-check"],
                          capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    (message,) = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=2, MessageAttributeNames=["All"])["Messages"]
    assert message["MessageId"] == done.stdout.strip()
    assert json.loads(message["Body"])[0] == "software.amazon.payloadoffloading.PayloadS3Pointer"
    without = subprocess.run([sys.executable, "-m", "host.cli", "send", "test:big", "--file", str(payload), "--sqs", queue["url"], "--no-check"],
                             capture_output=True, text=True, env={**environ, "LETSGO_WORKER_LARGE_MESSAGE_BUCKET": ""},
                             cwd=tmp_path, timeout=60)
    assert without.returncode == 2 and "LETSGO_WORKER_LARGE_MESSAGE_BUCKET" in without.stderr


# -- the local runtime ---------------------------------------------------------------------------


def test_local_intake_limits_each_record_not_the_request_and_keeps_big_bodies_inline(tmp_path):
    from host.testing import wait_until

    home = Home(tmp_path)
    server = home.serve()
    try:
        # Three records of 200 KiB: 600 KiB in one request, each within what SQS takes.
        records = [{"messageId": f"r{n}", "body": json.dumps({"type": "test:record", "payload": {"n": n, "pad": "y" * 200_000}})}
                   for n in range(3)]
        assert server.post({"Records": records})["messageIds"] == ["r0", "r1", "r2"]
        too_big = records[:1] + [{"body": json.dumps({"type": "test:record", "payload": "z" * MAX_SQS_MESSAGE_BYTES})}]
        status, _, answer = server.request("POST", "/", {"Records": too_big})
        assert status == 413 and answer["error"].startswith("Records[1].body is ") and "262144 bytes per message" in answer["error"]
        # A handler's (here a route's) enqueue of a body over 256 KiB is kept inline by the local queue.
        status, _, answer = server.request("POST", "/test/hook", {"data": BIG}, JSON)
        assert status == 202, answer
        wait_until(lambda: len(home.entries("record")) == 4, timeout=60)
        sizes = sorted(len(json.dumps(entry["payload"])) for entry in home.entries("record"))
        assert sizes[-1] > MAX_SQS_MESSAGE_BYTES
    finally:
        server.stop()


SERVE_PLUGIN = '''
import json, os
from host import hookimpl

def big(message, ctx):
    with open(os.environ["LARGE_TEST_LOG"], "a") as log:
        log.write(json.dumps({"size": len(message.payload["data"])}) + "\\n")

@hookimpl
def letsgo_register_messages(register):
    register("test:big", big)
    register("test:wake-up", lambda message, ctx: None)
'''


def test_serve_sqs_in_a_subprocess_resolves_a_pointer_and_deletes_its_object(aws, bucket, tmp_path):
    import os
    import signal

    from host.testing import wait_until, write_distribution

    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=3)
    write_distribution(tmp_path / "site", "large-test-plugin", "large_test_plugin", SERVE_PLUGIN)
    log = tmp_path / "handled.jsonl"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "AWS_"))}
    environ.update(aws.environ(), PYTHONPATH=str(tmp_path / "site"), LARGE_TEST_LOG=str(log),
                   LETSGO_WORKER_PLUGINS="large_test_plugin")
    key = python_client_pointer(s3, sqs, queue["url"], bucket, big_message())
    with (tmp_path / "stderr.log").open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "host.cli", "serve", "--sqs", queue["url"], "--port", "0"],
                                   env=environ, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_until(lambda: log.exists() and log.read_text().strip(), timeout=60)
            assert json.loads(log.read_text().splitlines()[0]) == {"size": len(BIG)}
            wait_until(lambda: not exists(s3, bucket, key), timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            # The delivery loop stops once its long poll returns: a message now and then ends it early.
            for _ in range(30):
                try:
                    process.wait(1)
                    break
                except subprocess.TimeoutExpired:
                    sqs.send_message(QueueUrl=queue["url"], MessageBody=json.dumps({"type": "test:wake-up", "payload": None}))
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert process.returncode == 0, (tmp_path / "stderr.log").read_text()
