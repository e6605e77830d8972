"""enqueue() and `letsgo-worker send`: to a real local HTTP endpoint and to SQS on moto's server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host.config import Settings
from host.core.context import Context
from host.services.enqueue import (
    MAX_MESSAGE_BYTES,
    EnqueueError,
    InvalidMessageError,
    enqueue,
    message_body,
)

CLI = [sys.executable, "-m", "host.cli"]
ORDER = {"type": "OrderNew", "payload": {"orderId": "123", "customerId": "456"}}
#: The record fields LetsGo's queue client (packages/queue, enqueueLocal) posts.
LETSGO_RECORD_FIELDS = {
    "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
    "eventSource", "eventSourceARN", "awsRegion",
}


class RecordingIntake:
    """A local-queue endpoint on 127.0.0.1 that records each POST and answers like the local server."""

    def __init__(self, status: int = 201):
        self.status = status
        self.posts: list[dict] = []
        intake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                intake.posts.append(data)
                ids = [f"stored-{len(intake.posts)}"]
                body = json.dumps({"messageIds": ids} if intake.status == 201 else {"error": "queue is full"}).encode()
                self.send_response(intake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def intake():
    with RecordingIntake() as server:
        yield server


def local_settings(url: str) -> Settings:
    return Settings.from_env({"LETSGO_LOCAL_QUEUE_URL": url})


# -- local server ---------------------------------------------------------------------


def test_local_enqueue_posts_letsgo_queue_client_body(intake):
    message_id = enqueue(ORDER, settings=local_settings(intake.url))
    assert message_id == "stored-1"
    (post,) = intake.posts
    assert set(post) == {"Records"}
    (record,) = post["Records"]
    assert set(record) == LETSGO_RECORD_FIELDS
    assert json.loads(record["body"]) == ORDER
    assert record["eventSource"] == "letsgo:local"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["eventSourceARN"].startswith("letsgo:local:")


def test_local_enqueue_sends_the_delay(intake):
    enqueue(ORDER, delay_seconds=120, settings=local_settings(intake.url))
    assert intake.posts[0]["delaySeconds"] == 120


def test_local_enqueue_error_names_the_url_and_status():
    with RecordingIntake(status=503) as server, pytest.raises(EnqueueError, match=r"refused the message: HTTP 503"):
        enqueue(ORDER, settings=local_settings(server.url))


def test_local_enqueue_to_nothing_says_to_start_serve():
    with RecordingIntake() as server:
        url = server.url
    with pytest.raises(EnqueueError, match=f"cannot reach the local queue at {url}.*letsgo-worker serve"):
        enqueue(ORDER, settings=local_settings(url))


def test_ctx_enqueue_uses_the_worker_settings(intake, make_worker):
    worker = make_worker(env={"LETSGO_LOCAL_QUEUE_URL": intake.url}, entry_points=False)
    ctx = Context(worker, logging.getLogger("test"))
    assert ctx.enqueue({"type": "order:retry", "payload": {"orderId": "1"}}, delay_seconds=30) == "stored-1"
    assert json.loads(intake.posts[0]["Records"][0]["body"])["type"] == "order:retry"
    assert intake.posts[0]["delaySeconds"] == 30


def test_ctx_aenqueue_sends_from_async_code(intake, make_worker):
    import asyncio

    worker = make_worker(env={"LETSGO_LOCAL_QUEUE_URL": intake.url}, entry_points=False)
    ctx = Context(worker, logging.getLogger("test"))
    message_id = asyncio.run(ctx.aenqueue({"type": "order:later", "payload": None}, delay_seconds=5))
    assert message_id == "stored-1"
    assert json.loads(intake.posts[0]["Records"][0]["body"])["type"] == "order:later"
    assert intake.posts[0]["delaySeconds"] == 5


def test_local_enqueue_is_stored_by_the_real_local_server(tmp_path):
    from host.local.http_server import LocalServer
    from host.local.queue import LocalQueue

    with LocalQueue(tmp_path / "worker.db") as queue:
        server = LocalServer("127.0.0.1", 0, queue=queue).start()
        try:
            now_id = enqueue(ORDER, settings=local_settings(server.url))
            enqueue({"type": "order:later", "payload": None}, delay_seconds=600, settings=local_settings(server.url))
        finally:
            server.stop()
        assert queue.counts() == {"visible": 1, "in_flight": 0, "waiting": 1, "dead_letters": 0}
        (record,) = queue.receive(10, 0)
    assert record["messageId"] == now_id
    assert json.loads(record["body"]) == ORDER


def test_enqueue_async_from_async_code(intake):
    import asyncio

    from host.services.enqueue import enqueue_async

    async def handler():
        return await enqueue_async(ORDER, 5, settings=local_settings(intake.url))

    assert asyncio.run(handler()) == "stored-1"
    assert intake.posts[0]["delaySeconds"] == 5


# -- checks before sending ----------------------------------------------------------------


def test_size_limit_is_checked_before_sending(intake):
    overhead = len(message_body({"type": "big", "payload": ""}))
    fits = {"type": "big", "payload": "x" * (MAX_MESSAGE_BYTES - overhead)}
    assert len(message_body(fits).encode()) == MAX_MESSAGE_BYTES
    enqueue(fits, settings=local_settings(intake.url))
    too_big = {"type": "big", "payload": "x" * (MAX_MESSAGE_BYTES - overhead + 1)}
    with pytest.raises(InvalidMessageError, match=r"is 262,145 bytes.*at most 262,144 \(256 KiB\)"):
        enqueue(too_big, settings=local_settings(intake.url))
    assert len(intake.posts) == 1


def test_multibyte_characters_count_as_bytes():
    payload = "é" * (MAX_MESSAGE_BYTES // 2)
    with pytest.raises(InvalidMessageError, match="bytes as JSON"):
        message_body({"type": "t", "payload": payload})


@pytest.mark.parametrize("delay", [-1, 901, -0.5, 900.5, float("nan"), True, "10", None])
def test_bad_delays_are_refused(intake, delay):
    with pytest.raises(InvalidMessageError, match="delay_seconds"):
        enqueue(ORDER, delay_seconds=delay, settings=local_settings(intake.url))
    assert intake.posts == []


def test_a_fractional_delay_is_kept_on_its_way_to_the_local_server(intake):
    enqueue(ORDER, delay_seconds=1.5, settings=local_settings(intake.url))
    assert intake.posts[0]["delaySeconds"] == 1.5


def test_longest_delay_is_accepted(intake):
    enqueue(ORDER, delay_seconds=900, settings=local_settings(intake.url))
    assert intake.posts[0]["delaySeconds"] == 900


@pytest.mark.parametrize(
    "message, error",
    [
        ("OrderNew", "must be a dict"),
        ({"payload": {}}, "non-empty string 'type'"),
        ({"type": "", "payload": {}}, "non-empty string 'type'"),
        ({"type": "t", "payload": {1, 2}}, "cannot be sent as JSON"),
        ({"type": "t", "payload": float("nan")}, "cannot be sent as JSON"),
    ],
)
def test_invalid_messages_are_refused(message, error):
    with pytest.raises(InvalidMessageError, match=error):
        message_body(message)


def test_pydantic_payloads_are_serialised():
    from pydantic import BaseModel

    class Order(BaseModel):
        orderId: str

    assert json.loads(message_body({"type": "t", "payload": Order(orderId="1")})) == {"type": "t", "payload": {"orderId": "1"}}


def test_no_queue_configured_names_both_variables():
    with pytest.raises(EnqueueError, match="LETSGO_LOCAL_QUEUE_URL.*LETSGO_WORKER_QUEUE_URL"):
        enqueue(ORDER, settings=Settings.from_env({}))


# -- SQS ------------------------------------------------------------------------------------


def sqs_settings(queue_url: str) -> Settings:
    return Settings.from_env({"LETSGO_WORKER_QUEUE_URL": queue_url, "AWS_REGION": "us-east-1"})


def test_sqs_enqueue_sends_the_body(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    message_id = enqueue(ORDER, settings=sqs_settings(queue["url"]))
    received = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=5)["Messages"]
    assert [(m["MessageId"], json.loads(m["Body"])) for m in received] == [(message_id, ORDER)]


def test_sqs_enqueue_with_delay_holds_the_message_back(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    enqueue(ORDER, delay_seconds=2, settings=sqs_settings(queue["url"]))
    attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["ApproximateNumberOfMessages"] == "0"
    received = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=10)["Messages"]
    assert json.loads(received[0]["Body"]) == ORDER


def test_sqs_enqueue_rounds_a_fractional_delay_up_so_it_never_arrives_early(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    enqueue(ORDER, delay_seconds=0.2, settings=sqs_settings(queue["url"]))
    attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["ApproximateNumberOfMessages"] == "0"


def test_sqs_enqueue_through_the_environment(aws, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    monkeypatch.setenv("LETSGO_WORKER_QUEUE_URL", queue["url"])
    monkeypatch.delenv("LETSGO_LOCAL_QUEUE_URL", raising=False)
    enqueue({"type": "order:retry", "payload": None})
    (message,) = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=5)["Messages"]
    assert json.loads(message["Body"])["type"] == "order:retry"


def test_fifo_queue_needs_a_group_and_no_delay(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, "orders-test.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    settings = sqs_settings(queue["url"])
    with pytest.raises(InvalidMessageError, match="pass group_id"):
        enqueue(ORDER, settings=settings)
    with pytest.raises(InvalidMessageError, match="does not delay single messages"):
        enqueue(ORDER, delay_seconds=5, settings=settings, group_id="customer-456")
    enqueue(ORDER, settings=settings, group_id="customer-456")
    (message,) = sqs.receive_message(QueueUrl=queue["url"], AttributeNames=["All"], WaitTimeSeconds=5)["Messages"]
    assert message["Attributes"]["MessageGroupId"] == "customer-456"


def test_missing_sqs_queue_is_an_enqueue_error(aws):
    missing = f"{aws.url}/123456789012/no-such-queue"
    with pytest.raises(EnqueueError, match="SQS SendMessage to .*no-such-queue failed"):
        enqueue(ORDER, settings=sqs_settings(missing))


# -- letsgo-worker send ------------------------------------------------------------------------


def send(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "AWS_"))}
    environ.update(env or {})
    return subprocess.run([*CLI, "send", *args], capture_output=True, text=True, timeout=60, env=environ)


def test_send_posts_and_prints_the_message_id(intake):
    result = send("OrderNew", '{"orderId": "123", "customerId": "456"}', "--delay", "5", "--url", intake.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stored-1\n"
    assert json.loads(intake.posts[0]["Records"][0]["body"]) == ORDER
    assert intake.posts[0]["delaySeconds"] == 5


def test_send_defaults_to_letsgo_local_queue_url_and_sends_an_explicit_null(intake):
    result = send("SomeRemoteType", "null", "--no-check", env={"LETSGO_LOCAL_QUEUE_URL": intake.url})
    assert result.returncode == 0, result.stderr
    assert json.loads(intake.posts[0]["Records"][0]["body"]) == {"type": "SomeRemoteType", "payload": None}


def test_send_reads_the_payload_from_a_file(intake, tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps(ORDER["payload"]))
    result = send("OrderNew", "--file", str(path), "--url", intake.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(intake.posts[0]["Records"][0]["body"]) == ORDER


@pytest.mark.parametrize(
    "args, error",
    [
        (["OrderNew", "{not json"], "PAYLOAD is not valid JSON"),
        (["OrderNew", "{}", "--file", "x.json"], "not both"),
        (["OrderNew", "--file", "/nonexistent/order.json"], "cannot read /nonexistent/order.json"),
        (["OrderNew", "{}", "--delay", "901"], "delay_seconds must be from 0 to 900"),
        (["", "{}"], "non-empty string 'type'"),
    ],
)
def test_send_bad_input_exits_2(intake, args, error):
    result = send(*args, "--url", intake.url)
    assert result.returncode == 2
    assert error in result.stderr
    assert intake.posts == []


def test_send_to_a_url_that_is_not_http_exits_2(intake):
    result = send("OrderNew", "{}", "--url", "notaurl")
    assert result.returncode == 2
    assert "--url 'notaurl' is not an http:// or https:// URL" in result.stderr


def test_send_to_a_stopped_server_exits_1():
    with RecordingIntake() as server:
        url = server.url
    result = send("OrderNew", json.dumps(ORDER["payload"]), "--url", url)
    assert result.returncode == 1
    assert "is `letsgo-worker serve` running" in result.stderr


def test_send_to_sqs(aws):
    sqs = aws.client("sqs")
    queue = create_queue(sqs)
    result = send("OrderNew", json.dumps(ORDER["payload"]), "--sqs", queue["url"], env=aws.environ())
    assert result.returncode == 0, result.stderr
    (message,) = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=5)["Messages"]
    assert message["MessageId"] == result.stdout.strip()
    assert json.loads(message["Body"]) == ORDER


def test_importing_host_queue_loads_no_heavy_library():
    code = "import sys, host.services.enqueue; print([m for m in ('boto3', 'botocore', 'httpx') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
