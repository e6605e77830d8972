"""Nothing fails silently: a message dead-lettered after its last retry notifies once, locally and under serve --sqs."""

from __future__ import annotations

import json

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host import hookimpl
from host.aws.sqs_source import SqsSource
from host.config import Settings
from host.local.delivery import Delivery
from host.local.queue import LocalQueue
from host.testing import NotificationRecorder, wait_until


class Handlers:
    """``test:boom`` always fails; ``test:flaky`` fails on its first receive only."""

    @hookimpl
    def letsgo_register_messages(self, register):
        def boom(message, ctx):
            raise RuntimeError(f"API down on receive {ctx.receive_count}")

        def flaky(message, ctx):
            if ctx.receive_count == 1:
                raise RuntimeError("first try fails")

        register("test:boom", boom)
        register("test:flaky", flaky)


def body(type_: str) -> str:
    return json.dumps({"type": type_, "payload": {}})


@pytest.fixture
def recorder():
    return NotificationRecorder()


@pytest.fixture
def start(make_worker, recorder):
    """``start(source)``: a running delivery loop over ``source`` with the handlers and the recorder."""
    worker = make_worker(plugins=[Handlers(), recorder], entry_points=False,
                         env={"LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0", "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "0"})
    started = []

    def run(source):
        delivery = Delivery(worker, source, poll_seconds=0.2).start()
        started.append(delivery)
        return delivery

    yield run
    for delivery in started:
        delivery.stop(timeout=5)


def dead_letter_texts(recorder: NotificationRecorder) -> list[str]:
    return [text for text in recorder.texts if "goes to the dead-letter queue" in text and ":x:" in text]


def test_a_local_message_that_fails_its_last_retry_notifies_once_naming_type_receives_and_error(tmp_path, start, recorder):
    queue = LocalQueue(tmp_path / "worker.db", max_receive_count=3, backoff_base=0, backoff_max=0)
    try:
        failing = queue.enqueue(body("test:boom"))
        queue.enqueue(body("test:flaky"))
        start(queue)
        wait_until(lambda: queue.counts() == {"visible": 0, "in_flight": 0, "waiting": 0, "dead_letters": 1})
        wait_until(lambda: dead_letter_texts(recorder))
        [text] = dead_letter_texts(recorder)  # the flaky message, which succeeded on its retry, said nothing
        assert "failed on its last retry" in text
        assert f"*Message Id:* {failing}" in text
        assert "*Type:* test:boom" in text
        assert "*Receive count:* 3" in text
        assert "*Last error:* RuntimeError: API down on receive 3" in text
        assert [n.level for n in recorder.notifications if n.text == text] == ["error"]
    finally:
        queue.close()


def test_a_rejected_message_still_notifies_once_and_only_as_a_rejection(tmp_path, start, recorder):
    queue = LocalQueue(tmp_path / "worker.db", max_receive_count=1)
    try:
        queue.enqueue(body("test:unknown"))
        start(queue)
        wait_until(lambda: queue.counts()["dead_letters"] == 1)
        wait_until(lambda: recorder.texts)
        assert len(recorder.texts) == 1 and "unsupported message type" in recorder.texts[0]
        assert dead_letter_texts(recorder) == []
    finally:
        queue.close()


def test_a_local_message_that_never_completed_is_dead_lettered_when_claimed_and_notifies(tmp_path, start, recorder):
    queue = LocalQueue(tmp_path / "worker.db", max_receive_count=2)
    try:
        hung = queue.enqueue(body("test:boom"))
        for _ in range(2):  # received twice, settled never: its handler hung or its process died each time
            queue.release(queue.receive(10, 1))
        start(queue)
        wait_until(lambda: queue.counts()["dead_letters"] == 1)
        [text] = wait_until(lambda: dead_letter_texts(recorder))
        assert "never completed in its allowed receives" in text
        assert f"*Message Id:* {hung}" in text and "*Type:* test:boom" in text and "*Receive count:* 2" in text
    finally:
        queue.close()


def test_under_serve_sqs_the_last_receive_the_redrive_policy_allows_notifies_once(aws, start, recorder):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=2, VisibilityTimeout=30)
    message_id = sqs.send_message(QueueUrl=queue["url"], MessageBody=body("test:boom"))["MessageId"]
    settings = Settings.from_env({"AWS_REGION": "us-east-1", "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0",
                                  "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "0"})
    source = SqsSource(queue["url"], settings)
    assert source.max_receive_count == 2
    start(source)

    def in_dead_letter_queue():
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue["dlq_url"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) == 1

    wait_until(in_dead_letter_queue, timeout=60)
    [text] = wait_until(lambda: dead_letter_texts(recorder))
    assert f"*Message Id:* {message_id}" in text and "*Type:* test:boom" in text
    assert "*Receive count:* 2" in text and "RuntimeError: API down on receive 2" in text


def test_without_a_known_maximum_a_failure_does_not_notify(make_worker, recorder):
    from host.testing import run_batch

    worker = make_worker(plugins=[Handlers(), recorder], entry_points=False)
    result = run_batch(worker, {"type": "test:boom", "payload": {}}, receive_count=99)  # Lambda: no redrive policy known
    assert result.response()["batchItemFailures"] and recorder.texts == []


SINK_PLUGIN = '''
import json, os
from host import hookimpl

@hookimpl
def letsgo_register_messages(register):
    def boom(message, ctx):
        raise RuntimeError(f"API down on receive {ctx.receive_count}")
    register("test:boom", boom)

@hookimpl
def letsgo_notify(notification):
    with open(os.environ["SINK_LOG"], "a") as log:
        log.write(json.dumps({"text": notification.text, "level": notification.level}) + "\\n")
'''


def test_serve_notifies_once_when_a_message_uses_up_its_retries(tmp_path):
    """The whole path in a real ``serve``: a message that always fails, and what reaches the sink."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from host.testing import write_distribution

    write_distribution(tmp_path / "site", "sink-test-plugin", "sink_test_plugin", SINK_PLUGIN)
    sink = tmp_path / "sink.jsonl"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
    env.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               SINK_LOG=str(sink), LETSGO_WORKER_MAX_RECEIVE_COUNT="3", LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.05",
               LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.1", LETSGO_WORKER_LOG_LEVEL="INFO")
    log = tmp_path / "serve.log"
    with open(log, "w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "host.cli", "serve", "--port", "0", "--db", str(tmp_path / "q.db")],
                                  cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        def port():
            for line in log.read_text().splitlines():
                if line.startswith("letsgo-worker listening on http://127.0.0.1:"):
                    return int(line.rsplit(":", 1)[1])
            assert server.poll() is None, log.read_text()
            return None

        url = f"http://127.0.0.1:{wait_until(port, timeout=30)}/"
        request = urllib.request.Request(url, data=body("test:boom").encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
            [message_id] = json.loads(answer.read())["messageIds"]

        def notified():
            lines = sink.read_text().splitlines() if sink.exists() else []
            return [json.loads(line) for line in lines]

        [notice] = wait_until(notified, timeout=30, message="the dead-letter notification")
        assert notice["level"] == "error" and "*Receive count:* 3" in notice["text"]
        assert "*Type:* test:boom" in notice["text"] and "API down on receive 3" in notice["text"]
        assert f"*Message Id:* {message_id}" in notice["text"]
        stats = subprocess.run([sys.executable, "-m", "host.cli", "queue", "stats", "--json", "--db", str(tmp_path / "q.db")],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(stats.stdout)["dead_letter"] == 1, stats.stderr
        assert len(notified()) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
