"""The inspectors of the dashboard and the queue/dlq commands: the local queue's and SQS's (on moto's server).

The cases both can answer run against both; then what only one of them has.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host import hookimpl
from host.core.dispatch import Outcome, Status
from host.errors import QueueError
from host.local.delivery import Delivery
from host.local.queue import LocalQueue
from host.ops.inspector import STATES, Inspector, MessageView
from host.ops.local_inspector import LocalInspector
from host.testing import wait_until

ORDER = json.dumps({"type": "OrderNew", "payload": {"orderId": "A-17"}})
CONTACT = json.dumps({"type": "letsgo:contact", "payload": {"message": "hello there"}})


class Scenario:
    """An inspector whose dead-letter queue holds an OrderNew and a contact message, and how to reach them."""

    def __init__(self, inspector: Inspector, ids: dict[str, str], kind: str):
        self.inspector = inspector
        self.ids = ids
        self.kind = kind

    def dead_ids(self) -> set[str]:
        return {view.id for view in self.inspector.messages("dead_letter")}


def local_scenario(tmp_path) -> tuple[Scenario, LocalQueue]:
    queue = LocalQueue(tmp_path / "worker.db", max_receive_count=5)
    ids = dict(zip(("order", "contact"), queue.enqueue_many([(None, ORDER), (None, CONTACT)])))
    records = queue.receive(10, 1)
    queue.settle(records, [Outcome(Status.REJECTED, r["messageId"], reason="invalid payload") for r in records])
    return Scenario(LocalInspector.of_queue(queue), ids, "local"), queue


def sqs_scenario(aws_server) -> Scenario:
    from host.ops.sqs_inspector import SqsInspector

    sqs = aws_server.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=3)
    ids = {name: sqs.send_message(QueueUrl=queue["dlq_url"], MessageBody=body)["MessageId"]
           for name, body in (("order", ORDER), ("contact", CONTACT))}
    return Scenario(SqsInspector(queue["url"], client=sqs), ids, "sqs")


@pytest.fixture(params=["local", "sqs"])
def scenario(request, tmp_path):
    if request.param == "local":
        built, queue = local_scenario(tmp_path)
        yield built
        built.inspector.close()
        queue.close()
    else:
        yield sqs_scenario(request.getfixturevalue("aws"))


# -- the same cases for both -----------------------------------------------------------


def test_stats_count_the_dead_letters(scenario):
    stats = scenario.inspector.stats()
    assert stats.dead_letter == 2 and stats.visible == 0 and stats.in_flight == 0 and stats.delayed == 0
    assert stats.approximate is (scenario.kind == "sqs")
    assert set(stats.to_json()) == {"visible", "in_flight", "delayed", "dead_letter", "oldest_age_seconds", "approximate"}


def test_dead_letters_are_listed_with_their_body_type_and_receive_count(scenario):
    views = {view.id: view for view in scenario.inspector.messages("dead_letter")}
    assert set(views) == set(scenario.ids.values())
    order = views[scenario.ids["order"]]
    assert order.state == "dead_letter" and order.type == "OrderNew" and order.body == ORDER
    assert order.receive_count >= 1 and order.reason
    assert order.to_json()["sent_at"].endswith("Z")


def test_search_by_type_and_by_text(scenario):
    by_type = scenario.inspector.messages("dead_letter", type="letsgo:contact")
    assert [view.id for view in by_type] == [scenario.ids["contact"]]
    by_text = scenario.inspector.messages("dead_letter", text="A-17")
    assert [view.id for view in by_text] == [scenario.ids["order"]]
    assert scenario.inspector.messages("dead_letter", type="OrderNew", text="hello") == []


def test_one_message_by_id_and_none_for_an_unknown_id(scenario):
    view = scenario.inspector.message("dead_letter", scenario.ids["contact"])
    assert isinstance(view, MessageView) and view.body == CONTACT
    assert scenario.inspector.message("dead_letter", "no-such-id") is None


def test_redrive_one_moves_it_back_and_an_unknown_id_moves_nothing(scenario):
    with pytest.raises(QueueError, match="not in the dead-letter queue: no-such-id"):
        scenario.inspector.redrive([scenario.ids["order"], "no-such-id"])
    assert scenario.dead_ids() == set(scenario.ids.values())
    assert scenario.inspector.redrive([scenario.ids["order"]]) == 1
    assert scenario.dead_ids() == {scenario.ids["contact"]}
    assert wait_until(lambda: scenario.inspector.stats().visible == 1)


def test_redrive_all(scenario):
    assert scenario.inspector.redrive(None) == 2
    assert scenario.dead_ids() == set()
    assert wait_until(lambda: scenario.inspector.stats().visible == 2)


def test_delete_one_then_purge(scenario):
    assert scenario.inspector.delete("dead_letter", [scenario.ids["order"]]) == 1
    assert scenario.dead_ids() == {scenario.ids["contact"]}
    assert scenario.inspector.purge_dead_letters() == 1
    assert scenario.dead_ids() == set()
    assert scenario.inspector.stats().dead_letter == 0


def test_an_unknown_state_is_refused_naming_the_states(scenario):
    with pytest.raises(ValueError, match="one of visible, delayed, in_flight, dead_letter"):
        scenario.inspector.messages("waiting")  # type: ignore[arg-type]
    assert STATES == ("visible", "delayed", "in_flight", "dead_letter")


# -- the local queue -----------------------------------------------------------------------


class Handlers:
    @hookimpl
    def letsgo_register_messages(self, register):
        register("test:ok", lambda message, ctx: None)
        register("test:boom", fail_in_plugin_code)


def fail_in_plugin_code(message, ctx):
    charge_card(message.payload)


def charge_card(payload):
    raise RuntimeError(f"card declined for {payload['orderId']}")


@pytest.fixture
def delivered(tmp_path, make_worker):
    """A local queue after delivery: one succeeded, one failed on each of its 2 receives, one rejected."""
    queue = LocalQueue(tmp_path / "worker.db", max_receive_count=2, backoff_base=0, backoff_max=0)
    worker = make_worker(plugins=[Handlers()], entry_points=False)
    queue.enqueue_many([(None, json.dumps({"type": "test:ok", "payload": {}})),
                        ("boom-1", json.dumps({"type": "test:boom", "payload": {"orderId": "A-17"}})),
                        ("bad-1", "not json")])
    delivery = Delivery(worker, queue, poll_seconds=0.2).start()
    try:
        wait_until(lambda: queue.counts()["dead_letters"] == 2 and queue.counts()["visible"] == 0
                   and queue.counts()["in_flight"] == 0)
    finally:
        delivery.stop(timeout=5)
    inspector = LocalInspector.of_queue(queue)
    yield inspector
    inspector.close()
    queue.close()


def test_a_failure_keeps_its_traceback_without_the_hosts_frames(delivered):
    view = delivered.message("dead_letter", "boom-1")
    assert view.last_error == "RuntimeError: card declined for A-17"
    trace = view.last_traceback
    assert trace.startswith("Traceback (most recent call last):")
    first_frame = trace.splitlines()[1]  # the plugin's own: not the host's, nor the thread pool that ran it
    assert first_frame.strip().startswith(f'File "{__file__}"') and first_frame.endswith("in fail_in_plugin_code")
    assert "fail_in_plugin_code" in trace and "charge_card" in trace and trace.endswith("RuntimeError: card declined for A-17")
    host_folder = os.path.dirname(os.path.dirname(os.path.abspath(__import__("host").__file__)))
    assert f"{os.sep}host{os.sep}" not in trace.replace(host_folder + os.sep + "tests", "")
    assert view.receive_count == 2 and view.first_received_at <= view.last_received_at


def test_outcomes_are_counted_per_minute_and_type(delivered):
    counts: dict[tuple[str, str], int] = {}
    for minute, type_, outcome, count in delivered.outcome_minutes(30):
        assert minute % 60 == 0 and minute <= time.time()
        counts[type_, outcome] = counts.get((type_, outcome), 0) + count
    assert counts == {("test:ok", "succeeded"): 1, ("test:boom", "failed"): 2, ("(unknown)", "rejected"): 1}


def test_minutes_older_than_an_hour_are_pruned(tmp_path):
    with LocalQueue(tmp_path / "worker.db") as queue:
        old = (int(time.time()) // 60 - 90) * 60
        queue.transaction(lambda c: c.execute("INSERT INTO outcome_minutes VALUES (?, 'x', 'succeeded', 3)", (old,)))
        [record] = (queue.enqueue("{}"), queue.receive(1, 1))[1]
        queue.settle([record], [Outcome(Status.SUCCEEDED, record["messageId"], "y")])
        rows = queue.transaction(lambda c: c.execute("SELECT minute, type, outcome, count FROM outcome_minutes").fetchall())
        assert [(type_, outcome, count) for _, type_, outcome, count in rows] == [("y", "succeeded", 1)]


def test_states_visible_delayed_and_in_flight_with_the_oldest_waiting_age(tmp_path):
    with LocalQueue(tmp_path / "worker.db") as queue:
        [claimed] = queue.enqueue_many([("flight-1", ORDER)])
        [record] = queue.receive(1, 1)
        queue.enqueue_many([("visible-1", CONTACT)])
        queue.enqueue_many([("later-1", ORDER)], delay_seconds=600)
        inspector = LocalInspector.of_queue(queue)
        try:
            stats = inspector.stats()
            assert (stats.visible, stats.in_flight, stats.delayed, stats.dead_letter) == (1, 1, 1, 0)
            assert 0 <= stats.oldest_age_seconds < 600
            assert [v.id for v in inspector.messages("visible")] == ["visible-1"]
            assert [v.id for v in inspector.messages("delayed")] == ["later-1"]
            [flight] = inspector.messages("in_flight")
            assert flight.id == "flight-1" and flight.receive_count == 1 and flight.last_received_at is not None
            assert inspector.delete("delayed", ["later-1", "visible-1"]) == 1  # visible-1 is not delayed
            assert inspector.stats().delayed == 0
        finally:
            inspector.close()


def test_paging_with_limit_and_offset(tmp_path):
    with LocalQueue(tmp_path / "worker.db") as queue:
        queue.enqueue_many([(f"m-{n}", ORDER) for n in range(5)])
        with LocalInspector.of_queue(queue) as inspector:
            assert [v.id for v in inspector.messages("visible", limit=2, offset=1)] == ["m-1", "m-2"]


def test_last_ticks_come_from_the_ticks_table(tmp_path):
    with LocalQueue(tmp_path / "worker.db") as queue:
        queue.transaction(lambda c: c.execute("INSERT INTO ticks VALUES ('nightly', 1700000000.5, 'failed', 'boom')"))
        with LocalInspector.of_queue(queue) as inspector:
            [tick] = inspector.last_ticks()
            assert (tick.name, tick.outcome, tick.detail) == ("nightly", "failed", "boom")
            assert tick.to_json()["fired_at"] == "2023-11-14T22:13:20.500Z"


def test_without_a_queue_writes_go_through_a_connection_of_their_own(tmp_path):
    scenario, queue = local_scenario(tmp_path)
    scenario.inspector.close()
    queue.close()
    with LocalInspector(tmp_path / "worker.db") as inspector:
        assert inspector.redrive(None) == 2 and inspector.stats().visible == 2
    with LocalInspector(tmp_path / "worker.db", read_only=True) as inspector:
        with pytest.raises(QueueError, match="read-only"):
            inspector.purge_dead_letters()


def test_overview_reads_stay_cheap_on_a_long_queue(tmp_path):
    """Not a timing assertion: the counts must not read the bodies of the visible messages."""
    with LocalQueue(tmp_path / "worker.db") as queue, LocalInspector.of_queue(queue) as inspector:
        plan = [row[-1] for row in inspector._read(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM messages WHERE visible_at <= ?", (time.time(),))]
        assert any("COVERING INDEX messages_by_visibility" in step for step in plan), plan


# -- SQS -----------------------------------------------------------------------------------


def test_sqs_says_a_look_is_a_receive_and_a_look_counts(aws):
    scenario = sqs_scenario(aws)
    inspector = scenario.inspector
    assert inspector.can_peek is False and "no true peek" in inspector.peek_note and "receive" in inspector.peek_note
    first = {v.id: v.receive_count for v in inspector.messages("dead_letter")}
    second = {v.id: v.receive_count for v in inspector.messages("dead_letter")}
    assert all(second[i] == first[i] + 1 for i in first)
    assert inspector.messages("visible") == [] and inspector.outcome_minutes() == [] and inspector.last_ticks() == []


def test_sqs_finds_the_dead_letter_queue_from_the_redrive_policy_or_takes_it(aws):
    from host.ops.sqs_inspector import REDRIVE_BY_MESSAGE, SqsInspector

    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=4)
    found = SqsInspector(queue["url"], client=sqs)
    assert found.dlq_url == queue["dlq_url"] and found.max_receive_count == 4
    plain = create_queue(sqs)["url"]
    alone = SqsInspector(plain, client=sqs)  # counted still (serve --sqs on such a queue shows its numbers)
    assert alone.stats().dead_letter == 0 and alone.messages("dead_letter") == []
    assert "no dead-letter queue" in alone.dlq_problem and "--dlq" in alone.dlq_problem
    for action in (lambda: alone.redrive(None), lambda: alone.purge_dead_letters(), lambda: alone.delete("dead_letter", ["x"])):
        with pytest.raises(QueueError, match="no dead-letter queue"):
            action()
    given = SqsInspector(plain, queue["dlq_url"], client=sqs)
    sqs.send_message(QueueUrl=queue["dlq_url"], MessageBody=ORDER)
    assert given.redrive(None) == 1
    assert given.redrive_method == REDRIVE_BY_MESSAGE  # moto has no StartMessageMoveTask
    [moved] = sqs.receive_message(QueueUrl=plain, WaitTimeSeconds=1)["Messages"]
    assert moved["Body"] == ORDER


def test_sqs_refuses_to_delete_from_the_live_queue(aws):
    scenario = sqs_scenario(aws)
    with pytest.raises(QueueError, match="only dead letters"):
        scenario.inspector.delete("visible", ["x"])


def test_sqs_shows_why_the_worker_rejected_a_message_and_redrives_it_without_that_note(aws):
    from host.aws.sqs_calls import REASON_ATTRIBUTE, TYPE_ATTRIBUTE
    from host.ops.sqs_inspector import SqsInspector

    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=3)
    notes = {REASON_ATTRIBUTE: {"DataType": "String", "StringValue": "unknown message type 'OrderNwe'"},
             TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": "OrderNwe"},
             "tenant": {"DataType": "String", "StringValue": "t-1"}}
    sent = sqs.send_message(QueueUrl=queue["dlq_url"], MessageBody=ORDER, MessageAttributes=notes)["MessageId"]
    inspector = SqsInspector(queue["url"], client=sqs)
    view = inspector.message("dead_letter", sent)
    assert view.reason.startswith("rejected") and view.last_error == "unknown message type 'OrderNwe'"
    assert inspector.redrive([sent]) == 1
    [back] = sqs.receive_message(QueueUrl=queue["url"], WaitTimeSeconds=1, MessageAttributeNames=["All"])["Messages"]
    assert set(back["MessageAttributes"]) == {"tenant"}
