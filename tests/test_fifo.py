"""FIFO: message groups in order and deduplication ids, in Lambda and in the local queue.

The order cases are one table run on both runtimes: ``lambda_entry.handler``
given an SQS FIFO batch (and, as the event source mapping does, the records it
reports failed, again), and the local queue driven by the delivery loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import httpx
import pytest

import lambda_entry
from host import hookimpl
from host.core.worker import set_worker
from host.local.delivery import Delivery
from host.local.fifo import FIFO_EVENT_SOURCE_ARN
from host.local.http_server import LocalServer
from host.local.queue import LocalQueue
from tests.reliability.reliability_kit import clean_env, run_cli

FIFO_ARN = "arn:aws:sqs:us-east-1:123456789012:orders.fifo"


class Attempts:
    """``test:fifo`` notes each attempt per group; the messages in ``fail_first`` fail on their first attempt."""

    def __init__(self, fail_first: set[str]):
        self.fail_first = fail_first
        self.by_group: dict[str, list[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    @hookimpl
    def letsgo_register_messages(self, register):
        def handle(message, ctx):
            group, name = message.payload["group"], message.payload["name"]
            with self.lock:
                attempts = self.by_group.setdefault(group, [])
                first = all(done != name for done, _ in attempts)
                failing = first and name in self.fail_first
                attempts.append((name, "fail" if failing else "ok"))
            if failing:
                raise RuntimeError(f"{name} fails on its first attempt")

        register("test:fifo", handle)


#: (case, messages as (group, name) in send order, the names that fail once, the attempts expected per group)
CASES = [
    ("a group is handled in send order", [("A", "a1"), ("A", "a2"), ("A", "a3")], set(),
     {"A": [("a1", "ok"), ("a2", "ok"), ("a3", "ok")]}),
    ("after a failure the group waits for that message's retry", [("A", "a1"), ("A", "a2"), ("A", "a3")], {"a2"},
     {"A": [("a1", "ok"), ("a2", "fail"), ("a2", "ok"), ("a3", "ok")]}),
    ("a failed first message holds its whole group", [("A", "a1"), ("A", "a2")], {"a1"},
     {"A": [("a1", "fail"), ("a1", "ok"), ("a2", "ok")]}),
    ("groups are independent of each other", [("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2")], {"b1"},
     {"A": [("a1", "ok"), ("a2", "ok")], "B": [("b1", "fail"), ("b1", "ok"), ("b2", "ok")]}),
]


class Context:
    """A Lambda context with a minute left."""

    aws_request_id = "fifo-test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def body(group: str, name: str) -> str:
    return json.dumps({"type": "test:fifo", "payload": {"group": group, "name": name}})


def run_in_lambda(make_worker, messages, attempts: Attempts) -> None:
    """``lambda_entry.handler`` on a FIFO batch; what it reports failed comes back in the next batch, as from SQS."""
    set_worker(make_worker(plugins=[attempts], entry_points=False))
    records = [
        {
            "messageId": f"id-{name}", "receiptHandle": f"handle-{name}", "body": body(group, name),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "MessageGroupId": group,
                           "SequenceNumber": str(10**19 + seq), "MessageDeduplicationId": name},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": FIFO_ARN,
            "awsRegion": "us-east-1",
        }
        for seq, (group, name) in enumerate(messages)
    ]
    for _ in range(10):
        failed = {item["itemIdentifier"] for item in lambda_entry.handler({"Records": records}, Context())["batchItemFailures"]}
        records = [record for record in records if record["messageId"] in failed]
        if not records:
            return
        for record in records:
            record["attributes"]["ApproximateReceiveCount"] = str(int(record["attributes"]["ApproximateReceiveCount"]) + 1)
    raise AssertionError("the batch kept failing")


def run_locally(make_worker, messages, attempts: Attempts, tmp_path) -> None:
    """The local queue and the delivery loop, as ``serve`` runs them."""
    worker = make_worker(plugins=[attempts], entry_points=False)
    with LocalQueue(tmp_path / "queue.db", backoff_base=0.05, backoff_max=0.1) as queue:
        for group, name in messages:
            queue.send(body(group, name), 0, group_id=group)
        delivery = Delivery(worker, queue, poll_seconds=0.05, concurrency=4).start()
        try:
            deadline = time.monotonic() + 60
            while sum(queue.counts()[state] for state in ("visible", "in_flight", "waiting")):
                assert time.monotonic() < deadline, "the queue did not drain"
                time.sleep(0.05)
        finally:
            delivery.stop(5)
        assert queue.counts()["dead_letters"] == 0


@pytest.mark.parametrize("runtime", ["lambda", "local"])
@pytest.mark.parametrize("case,messages,fail_first,expected", CASES, ids=[case[0] for case in CASES])
def test_fifo_order(runtime, case, messages, fail_first, expected, make_worker, tmp_path):
    attempts = Attempts(fail_first)
    if runtime == "lambda":
        run_in_lambda(make_worker, messages, attempts)
    else:
        run_locally(make_worker, messages, attempts, tmp_path)
    assert attempts.by_group == expected


# -- the local queue's own FIFO rules ------------------------------------------------------------


def test_a_group_with_a_message_in_flight_is_not_received_from(tmp_path):
    with LocalQueue(tmp_path / "queue.db", group_batch_limit=1) as queue:
        a1 = queue.send(body("A", "a1"), 0, group_id="A")
        a2 = queue.send(body("A", "a2"), 0, group_id="A")
        b1 = queue.send(body("B", "b1"), 0, group_id="B")
        loose = queue.send(body("-", "loose"), 0)
        first = queue.receive(10, 0)
        # One batch (here: one message) of each group, and the message without a group.
        assert [r["messageId"] for r in first] == [a1, b1, loose]
        assert queue.receive(10, 0) == []  # a2 waits for a1
        record = first[0]
        assert record["attributes"]["MessageGroupId"] == "A"
        assert int(record["attributes"]["SequenceNumber"]) < int(first[1]["attributes"]["SequenceNumber"])
        assert record["eventSourceARN"] == FIFO_EVENT_SOURCE_ARN
        assert "MessageGroupId" not in first[2]["attributes"]
        from host.core.dispatch import Outcome, Status

        queue.settle([record], [Outcome(Status.SUCCEEDED, a1)])
        assert [r["messageId"] for r in queue.receive(10, 0)] == [a2]


def test_a_duplicate_deduplication_id_within_5_minutes_is_dropped_with_the_first_id(tmp_path):
    with LocalQueue(tmp_path / "queue.db") as queue:
        first = queue.send(body("A", "x"), 0, group_id="A", deduplication_id="order-1")
        again = queue.send(body("A", "x"), 0, group_id="A", deduplication_id="order-1")
        other = queue.send(body("A", "y"), 0, group_id="A", deduplication_id="order-2")
        assert again == first and other != first
        assert queue.counts()["visible"] == 2
        # Five minutes later the id is forgotten: the same id is a new message.
        connection = sqlite3.connect(queue.path)
        connection.execute("UPDATE deduplication SET expires_at = expires_at - 301")
        connection.commit()
        connection.close()
        later = queue.send(body("A", "x"), 0, group_id="A", deduplication_id="order-1")
        assert later != first and queue.counts()["visible"] == 3


@pytest.fixture
def server(tmp_path):
    queue = LocalQueue(tmp_path / "queue.db")
    server = LocalServer("127.0.0.1", 0, queue=queue).start()
    yield server, queue
    server.stop()
    queue.close()


def stored(queue: LocalQueue) -> list[tuple]:
    connection = sqlite3.connect(queue.path)
    try:
        return connection.execute("SELECT id, group_id, deduplication_id, body FROM messages ORDER BY seq").fetchall()
    finally:
        connection.close()


def test_post_takes_group_and_deduplication_ids_in_both_forms(server):
    server, queue = server
    record = {"messageId": "m-1", "body": body("A", "r"),
              "attributes": {"MessageGroupId": "A", "MessageDeduplicationId": "d-1"}}
    first = httpx.post(server.url, json={"Records": [record]})
    assert first.status_code == 201, first.text
    bare = {"type": "test:fifo", "payload": {"n": 1}, "groupId": "B", "deduplicationId": "d-2"}
    second = httpx.post(server.url, json=bare)
    assert second.status_code == 201, second.text
    duplicate = httpx.post(server.url, json={**bare, "payload": {"n": 2}})
    assert duplicate.json()["messageId"] == second.json()["messageId"]
    rows = stored(queue)
    assert [(row[0], row[1], row[2]) for row in rows] == [("m-1", "A", "d-1"), (second.json()["messageId"], "B", "d-2")]
    assert json.loads(rows[1][3]) == {"type": "test:fifo", "payload": {"n": 1}}  # the ids are not part of the body
    refused = httpx.post(server.url, json={**bare, "groupId": "has space"})
    assert refused.status_code == 400 and "groupId" in refused.json()["error"]
    refused = httpx.post(server.url, json={"Records": [{**record, "attributes": {"MessageGroupId": 7}}]})
    assert refused.status_code == 400 and "Records[0].attributes.MessageGroupId" in refused.json()["error"]


def test_send_takes_group_and_dedup_id(server):
    server, queue = server
    env = clean_env()
    # test:fifo is this test's own type, not installed where send runs: --no-check.
    first = run_cli("send", "test:fifo", '{"n": 1}', "--group", "G", "--dedup-id", "D", "--url", server.url, "--no-check", env=env)
    assert first.returncode == 0, first.stderr
    again = run_cli("send", "test:fifo", '{"n": 1}', "--group", "G", "--dedup-id", "D", "--url", server.url, "--no-check", env=env)
    assert again.stdout == first.stdout
    assert [(row[1], row[2]) for row in stored(queue)] == [("G", "D")]
    bad = run_cli("send", "test:fifo", "{}", "--group", "x" * 129, "--url", server.url, "--no-check", env=env)
    assert bad.returncode == 2 and "--group" in bad.stderr


def test_delivery_never_splits_a_group_over_two_batches():
    from host.local.fifo import split_batches

    def record(name, group=None):
        attributes = {"MessageGroupId": group} if group else {}
        return {"messageId": name, "attributes": attributes, "eventSourceARN": FIFO_EVENT_SOURCE_ARN}

    records = [record("x1"), record("a1", "A"), record("x2"), record("a2", "A"), record("b1", "B"), record("b2", "B")]
    batches = [[r["messageId"] for r in batch] for batch in split_batches(records, 3)]
    assert sorted(name for batch in batches for name in batch) == sorted(r["messageId"] for r in records)
    assert all(len(batch) <= 3 for batch in batches)
    for group in ("a", "b"):
        holding = [batch for batch in batches if any(name.startswith(group) for name in batch)]
        assert len(holding) == 1 and [n for n in holding[0] if n.startswith(group)] == [f"{group}1", f"{group}2"]
