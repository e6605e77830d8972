"""Lambda backs a failed message off with ChangeMessageVisibility (against moto's SQS server).

The batches are received from moto as the event source mapping receives them and
handed to the real ``lambda_entry.handler``; the message's visibility is read back
by when moto makes it receivable again, and the receive count is left to grow so
that the queue's redrive policy still dead-letters it.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import lambda_entry
from aws_events import Context, receive_event, receive_until, spy_on_clients
from host import hookimpl
from host.core.backoff import backoff_seconds, visibility_seconds
from host.core.worker import set_worker
from moto_server import aws, create_queue, moto_server, unique  # noqa: F401 (fixtures)


class Plugin:
    """``test:boom`` always fails; ``test:ok`` succeeds."""

    @hookimpl
    def letsgo_register_messages(self, register):
        def ok(message, ctx):
            return None

        def boom(message, ctx):
            raise RuntimeError(f"boom on receive {ctx.receive_count}")

        register("test:ok", ok)
        register("test:boom", boom)


@pytest.fixture
def use_worker(make_worker, aws):
    """Install a worker with :class:`Plugin` as the process's worker; ``use_worker(**environ)``."""

    def use(**environ: str):
        worker = make_worker(plugins=[Plugin()], env={**aws.environ(), **environ}, entry_points=False)
        set_worker(worker)
        return worker

    return use


def send(sqs, url: str, message: dict, **options) -> str:
    return sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message), **options)["MessageId"]


def test_a_failed_message_is_backed_off_and_its_growing_receive_count_reaches_the_dlq(aws, use_worker, monkeypatch):
    sqs = aws.client("sqs")
    # Without the back-off, a failed message would be hidden for the queue's 600 s.
    queue = create_queue(sqs, dlq_max_receive_count=3, VisibilityTimeout=600)
    message_id = send(sqs, queue["url"], {"type": "test:boom", "payload": None})
    use_worker(LETSGO_WORKER_LAMBDA_BACKOFF="on", LETSGO_WORKER_BACKOFF_BASE_SECONDS="1",
               LETSGO_WORKER_BACKOFF_MAX_SECONDS="1")
    spies = spy_on_clients(monkeypatch, "change_message_visibility_batch")

    counts = []
    for _ in range(3):
        event = receive_until(sqs, queue["url"], count=1, timeout=60)
        (record,) = event["Records"]
        counts.append(record["attributes"]["ApproximateReceiveCount"])
        assert lambda_entry.handler(event, Context()) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert counts == ["1", "2", "3"]
    # Nominal 1 s, of which the upper half is jitter: 0.5 to 1 s, rounded up to whole seconds.
    changes = spies["sqs"].requests("change_message_visibility_batch")
    assert [entry["VisibilityTimeout"] for change in changes for entry in change["Entries"]] == [1, 1, 1]
    assert all(change["QueueUrl"] == queue["url"] for change in changes)

    # The fourth receive is the one that makes SQS move it: the redrive policy still works.
    dead = []
    deadline = time.monotonic() + 60
    while not dead and time.monotonic() < deadline:
        assert receive_event(sqs, queue["url"], wait=1)["Records"] == []
        dead = sqs.receive_message(QueueUrl=queue["dlq_url"], WaitTimeSeconds=1).get("Messages", [])
    assert [message["MessageId"] for message in dead] == [message_id]


def test_the_back_off_grows_with_the_receive_count_and_holds_the_message_back(aws, use_worker, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=10, VisibilityTimeout=600)
    send(sqs, queue["url"], {"type": "test:boom", "payload": None})
    use_worker(LETSGO_WORKER_LAMBDA_BACKOFF="on", LETSGO_WORKER_BACKOFF_BASE_SECONDS="2",
               LETSGO_WORKER_BACKOFF_MAX_SECONDS="300")
    spies = spy_on_clients(monkeypatch, "change_message_visibility_batch")
    event = receive_until(sqs, queue["url"], count=1)
    # As if this were the fourth delivery: nominal 2 * 2**3 = 16 s, at least half of it.
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "4"
    lambda_entry.handler(event, Context())
    (change,) = spies["sqs"].requests("change_message_visibility_batch")
    delay = change["Entries"][0]["VisibilityTimeout"]
    assert 8 <= delay <= 16
    # moto holds it back at least that long (5 s of it checked here), and far less than the queue's 600 s.
    assert receive_event(sqs, queue["url"], wait=5)["Records"] == []
    assert len(receive_until(sqs, queue["url"], count=1, timeout=120)["Records"]) == 1


def test_one_formula_serves_the_local_queue_serve_sqs_and_lambda():
    from host.aws import sqs_source
    from host.local import settlement

    assert settlement.backoff_seconds is backoff_seconds
    assert sqs_source.retry_delay_seconds is visibility_seconds
    rng = random.Random(3)
    for count, nominal in [(1, 2), (2, 4), (5, 32), (9, 300), (60, 300)]:
        for _ in range(20):
            assert nominal / 2 <= visibility_seconds(count, 2, 300, rng) <= nominal
    assert visibility_seconds(40, 100000, 100000) == 43200  # SQS's longest visibility timeout


def test_fifo_records_after_a_failure_in_their_group_keep_their_visibility(aws, use_worker, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, unique("fifo") + ".fifo", FifoQueue="true", ContentBasedDeduplication="true")
    first = send(sqs, queue["url"], {"type": "test:boom", "payload": 1}, MessageGroupId="g")
    second = send(sqs, queue["url"], {"type": "test:ok", "payload": 2}, MessageGroupId="g")
    other = send(sqs, queue["url"], {"type": "test:boom", "payload": 3}, MessageGroupId="h")
    use_worker(LETSGO_WORKER_LAMBDA_BACKOFF="on")
    spies = spy_on_clients(monkeypatch, "change_message_visibility_batch")
    event = receive_until(sqs, queue["url"], count=3)
    assert [r["messageId"] for r in event["Records"]] == [first, second, other]

    response = lambda_entry.handler(event, Context())
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {first, second, other}
    receipts = {r["receiptHandle"]: r["messageId"] for r in event["Records"]}
    (change,) = spies["sqs"].requests("change_message_visibility_batch")
    # The group's later record is reported failed untouched: it comes back after the first, in order.
    assert sorted(receipts[entry["ReceiptHandle"]] for entry in change["Entries"]) == sorted([first, other])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sqs_out_of_reach_still_reports_the_failures_and_logs_once(aws, use_worker, monkeypatch, caplog):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    for n in range(3):
        send(sqs, queue["url"], {"type": "test:boom", "payload": n})
    event = receive_until(sqs, queue["url"], count=3)
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", nowhere)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    use_worker(LETSGO_WORKER_LAMBDA_BACKOFF="on", AWS_ENDPOINT_URL=nowhere)
    with caplog.at_level(logging.WARNING, logger="letsgo.lambda"):
        response = lambda_entry.handler(event, Context())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(r["messageId"] for r in event["Records"])
    lines = [r for r in caplog.records if r.name == "letsgo.lambda"]
    assert len(lines) == 1 and "ChangeMessageVisibility" in lines[0].getMessage()
    assert "come back after the queue's visibility timeout" in lines[0].getMessage()


def test_auto_backs_off_only_inside_lambda_and_off_turns_it_off(aws, use_worker, monkeypatch):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=5)
    for setting, runtime_api, expected in [("auto", None, 0), ("auto", "127.0.0.1:9001", 1), ("off", "127.0.0.1:9001", 0)]:
        send(sqs, queue["url"], {"type": "test:boom", "payload": setting})
        environ = {"LETSGO_WORKER_LAMBDA_BACKOFF": setting, "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0"}
        if runtime_api:
            environ["AWS_LAMBDA_RUNTIME_API"] = runtime_api
        use_worker(**environ)
        spies = spy_on_clients(monkeypatch, "change_message_visibility_batch")
        event = receive_until(sqs, queue["url"], count=1)
        assert len(lambda_entry.handler(event, Context())["batchItemFailures"]) == 1
        changes = spies["sqs"].requests("change_message_visibility_batch") if "sqs" in spies else []
        assert len(changes) == expected, (setting, runtime_api)
        # Leave nothing for the next round.
        sqs.delete_message(QueueUrl=queue["url"], ReceiptHandle=event["Records"][0]["receiptHandle"])


LAZY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from host import hookimpl
    from host.config import Settings
    from host.core.worker import Worker, set_worker
    import lambda_entry

    class Plugin:
        @hookimpl
        def letsgo_register_messages(self, register):
            register("test:ok", lambda message, ctx: None)
            register("test:boom", lambda message, ctx: 1 / 0)

    settings = Settings.from_env({"LETSGO_WORKER_LAMBDA_BACKOFF": "on", "AWS_ENDPOINT_URL": sys.argv[1],
                                  "AWS_REGION": "us-east-1"})
    set_worker(Worker(settings, plugins=[Plugin()], load_entry_points=False).start())

    def event(type_):
        return {"Records": [{"messageId": "m", "receiptHandle": "r", "eventSource": "aws:sqs",
                             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                             "attributes": {"ApproximateReceiveCount": "1"},
                             "body": json.dumps({"type": type_, "payload": None})}]}

    report = {"ok": lambda_entry.handler(event("test:ok"), None), "after_ok": "boto3" in sys.modules}
    report["boom"] = lambda_entry.handler(event("test:boom"), None)
    report["after_boom"] = "boto3" in sys.modules
    print(json.dumps(report))
    """
)


def test_boto3_is_imported_only_when_a_message_fails(tmp_path):
    environ = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
               "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", LAZY_SCRIPT, f"http://127.0.0.1:{_closed_port()}"], capture_output=True, text=True,
        cwd=tmp_path, timeout=120, env=environ, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] == {"batchItemFailures": []} and report["after_ok"] is False
    assert report["boom"] == {"batchItemFailures": [{"itemIdentifier": "m"}]} and report["after_boom"] is True


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [("LETSGO_WORKER_LAMBDA_BACKOFF", "maybe", "expected auto, 1/0"), ("LETSGO_WORKER_REJECTED_TO_DLQ", "2", "expected 1/0")],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(variable, value, expected):
    from host.config import Settings
    from host.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{variable}='{value}' is invalid: {expected}"):
        Settings.from_env({variable: value})
    assert Settings.from_env({"LETSGO_WORKER_LAMBDA_BACKOFF": "AUTO"}).lambda_backoff is None
    assert Settings.from_env({"LETSGO_WORKER_LAMBDA_BACKOFF": "off"}).lambda_backoff is False
