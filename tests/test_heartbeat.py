"""The visibility heartbeat: a long handler keeps its message; a hung one loses it at the cap.

Both sources the delivery loop drives: the local SQLite queue, and SQS on moto's server.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host import hookimpl
from host.config import Settings
from host.local.delivery import Delivery
from host.local.heartbeat import Heartbeat
from host.local.queue import LocalQueue

#: Seconds a received message is invisible; the heartbeat beats every half of it.
VISIBILITY = 2
#: The long handler runs three visibility timeouts.
LONG_RUN = 3 * VISIBILITY


class Runs:
    """``test:long`` sleeps LONG_RUN seconds; ``test:hang`` blocks on its first run (until released), then succeeds."""

    def __init__(self):
        self.runs: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()

    @hookimpl
    def letsgo_register_messages(self, register):
        def long(message, ctx):
            self._note("long", ctx)
            time.sleep(LONG_RUN)

        def hang(message, ctx):
            if self._note("hang", ctx) == 1:
                self.release.wait(60)  # bounded: the test releases it at its end

        register("test:long", long)
        register("test:hang", hang)

    def _note(self, name, ctx) -> int:
        with self.lock:
            self.runs.append((name, ctx.receive_count))
            return len(self.runs)


def wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


def worker_settings(cap: float, handler_timeout: str | None = "0") -> dict[str, str]:
    """The settings of a test; ``handler_timeout`` None leaves ``LETSGO_WORKER_HANDLER_TIMEOUT`` at its default."""
    settings = {
        "LETSGO_WORKER_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "LETSGO_WORKER_MAX_VISIBILITY_EXTENSION": str(cap),
        "LETSGO_WORKER_MAX_RECEIVE_COUNT": "5",
        "AWS_REGION": "us-east-1",
    }
    if handler_timeout is not None:
        settings["LETSGO_WORKER_HANDLER_TIMEOUT"] = handler_timeout
    return settings


@pytest.fixture
def runs():
    runs = Runs()
    yield runs
    runs.release.set()


@pytest.fixture(params=["local", "sqs"])
def source_factory(request, tmp_path):
    """Make a message source of each kind and send messages to it: ``make(env) -> (source, send, pending)``."""
    opened = []

    def make(env):
        settings = Settings.from_env(env)
        if request.param == "local":
            queue = LocalQueue.from_settings(settings, str(tmp_path / "queue.db"))
            opened.append(queue)

            def send(message):
                queue.enqueue(json.dumps(message))

            def pending():
                counts = queue.counts()
                return counts["visible"] + counts["in_flight"] + counts["waiting"]

            return queue, send, pending
        from host.aws.sqs_source import SqsSource

        server = request.getfixturevalue("aws")
        sqs = server.client("sqs")
        url = create_queue(sqs, VisibilityTimeout=VISIBILITY)["url"]
        source = SqsSource(url, settings, client=sqs)

        def send(message):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))

        def pending():
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

        return source, send, pending

    yield make
    for queue in opened:
        queue.close()


def start_delivery(make_worker, runs, source, env) -> Delivery:
    worker = make_worker(plugins=[runs], env=env, entry_points=False)
    return Delivery.from_settings(worker, source, worker.settings, poll_seconds=0.2).start()


def test_a_handler_running_three_visibility_timeouts_is_not_delivered_again(source_factory, make_worker, runs):
    # The default handler timeout follows the heartbeat's cap, not the visibility timeout.
    env = worker_settings(cap=60, handler_timeout=None)
    source, send, pending = source_factory(env)
    delivery = start_delivery(make_worker, runs, source, env)
    try:
        assert delivery.heartbeat is not None
        send({"type": "test:long", "payload": None})
        wait_until(lambda: runs.runs, 30, "the long handler to start")
        wait_until(lambda: pending() == 0, LONG_RUN + 30, "the long message to be deleted")
        # Two more visibility timeouts: a message that had lapsed would have been delivered again by now.
        time.sleep(2 * VISIBILITY)
        assert runs.runs == [("long", 1)]
        assert pending() == 0
    finally:
        delivery.stop(5)


def test_a_hung_handler_still_loses_its_message_at_the_cap(source_factory, make_worker, runs):
    env = worker_settings(cap=2 * VISIBILITY)
    source, send, pending = source_factory(env)
    delivery = start_delivery(make_worker, runs, source, env)
    try:
        send({"type": "test:hang", "payload": None})
        # The first run never returns; past the cap its message is visible again and runs a second time.
        wait_until(lambda: len(runs.runs) == 2, 60, "the hung message to be delivered again after the cap")
        assert runs.runs == [("hang", 1), ("hang", 2)]
        wait_until(lambda: pending() == 0, 30, "the second run to delete the message")
    finally:
        runs.release.set()
        delivery.stop(5)


def test_settled_records_are_no_longer_extended(tmp_path):
    class Recorder:
        def __init__(self):
            self.calls = []

        def change_visibility(self, records, seconds):
            self.calls.append(([r["messageId"] for r in records], seconds))
            return len(records)

    source = Recorder()
    heartbeat = Heartbeat(source, visibility_timeout=10, max_extension=100)
    running, settled = {"messageId": "running"}, {"messageId": "settled"}
    heartbeat.watch([running, settled])
    heartbeat.forget([settled])
    assert heartbeat.beat() == 1
    assert source.calls == [(["running"], 10)]
    assert heartbeat.watched() == 1


def test_the_heartbeat_is_off_when_the_cap_is_not_above_the_visibility_timeout(tmp_path):
    with LocalQueue(tmp_path / "q.db") as queue:
        assert Heartbeat.for_source(queue, 30, 0) is None
        assert Heartbeat.for_source(queue, 30, 30) is None
        assert Heartbeat.for_source(object(), 30, 3600) is None  # a source that cannot extend
        assert Heartbeat.for_source(queue, 30, 3600).interval == 15
