"""The local queue (SQLite, SQS semantics) and the delivery loop, in process on real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time

import pytest

from host import hookimpl
from host.core.backoff import backoff_seconds
from host.local.delivery import Delivery, MessageSource
from host.core.dispatch import Outcome, Status
from host.errors import StartupError
from host.local.queue import LocalQueue, QueueError
from host.services.enqueue import InvalidMessageError
from host.local.runtime import ServeLock
from host.testing import wait_until


@pytest.fixture
def make_queue(tmp_path):
    """``make_queue(**options)``: a LocalQueue on a fresh file, closed after the test."""
    made = []

    def make(name: str = "queue.db", **options) -> LocalQueue:
        queue = LocalQueue(tmp_path / name, **options)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        try:
            queue.close()
        except Exception:
            pass


def message(type_: str = "test:record", **payload) -> str:
    return json.dumps({"type": type_, "payload": payload})


def outcome(record, status: Status, reason: str | None = None) -> Outcome:
    return Outcome(status, record["messageId"], reason=reason)




# -- the queue ------------------------------------------------------------------


def test_received_records_have_the_sqs_shape_and_succeeded_ones_are_deleted(make_queue):
    queue = make_queue()
    assert isinstance(queue, MessageSource)
    body = message(n=1)
    [message_id] = queue.enqueue_many([("given-id", body)])
    other_id = queue.enqueue(message(n=2))
    assert message_id == "given-id" and other_id != message_id

    records = queue.receive(10, 0)
    assert [r["messageId"] for r in records] == ["given-id", other_id]
    first = records[0]
    assert first["body"] == body
    assert first["eventSource"] == "letsgo:local"
    assert first["eventSourceARN"] == "arn:letsgo:local:queue"
    assert first["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert int(first["attributes"]["ApproximateFirstReceiveTimestamp"]) >= int(first["attributes"]["SentTimestamp"])
    assert first["receiptHandle"] != records[1]["receiptHandle"]

    queue.settle(records, [outcome(r, Status.SUCCEEDED) for r in records])
    assert queue.counts() == {"visible": 0, "in_flight": 0, "waiting": 0, "dead_letters": 0}


def test_a_received_message_is_invisible_until_its_visibility_timeout_then_received_again(make_queue):
    queue = make_queue(visibility_timeout=0.3)
    queue.enqueue(message())
    [first] = queue.receive(10, 0)
    assert queue.receive(10, 0) == []
    assert queue.counts()["in_flight"] == 1

    [second] = queue.receive(10, 5)
    assert second["messageId"] == first["messageId"]
    assert second["attributes"]["ApproximateReceiveCount"] == "2"
    assert second["receiptHandle"] != first["receiptHandle"]

    # Only the latest receipt handle settles the message, as in SQS.
    queue.settle([first], [outcome(first, Status.SUCCEEDED)])
    assert queue.counts()["in_flight"] == 1
    queue.settle([second], [outcome(second, Status.SUCCEEDED)])
    assert queue.counts()["in_flight"] == 0


def test_a_claim_hands_out_each_body_exactly_as_stored(make_queue):
    queue = make_queue()
    body = json.dumps({"type": "test:record", "payload": {"text": "quotes \" backslash \\ é 🚀 \u0000 end"}})
    ids = queue.enqueue_many([(None, body), ("given-id", message(n=2))])
    before = time.time()
    records = queue.receive(10, 0)
    assert [r["messageId"] for r in records] == ids
    assert ids[1] == "given-id"
    assert records[0]["body"] == body
    assert records[0]["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert abs(int(records[0]["attributes"]["SentTimestamp"]) / 1000 - before) < 5


def test_a_delayed_message_is_not_received_before_its_delay(make_queue):
    queue = make_queue()
    sent = time.time()
    queue.enqueue(message(), delay_seconds=0.4)
    assert queue.receive(10, 0) == []
    assert queue.counts()["waiting"] == 1
    [record] = queue.receive(10, 5)
    assert time.time() >= sent + 0.4
    assert record["attributes"]["ApproximateReceiveCount"] == "1"


@pytest.mark.parametrize("delay", [-1, 901])
def test_a_delay_outside_0_to_900_is_refused(make_queue, delay):
    queue = make_queue()
    with pytest.raises(InvalidMessageError, match="from 0 to 900"):
        queue.enqueue(message(), delay_seconds=delay)
    assert queue.counts()["waiting"] + queue.counts()["visible"] == 0


def test_a_failed_message_backs_off_more_each_time_then_is_dead_lettered_with_its_error(make_queue):
    queue = make_queue(max_receive_count=3, backoff_base=0.1, backoff_max=10)
    message_id = queue.enqueue(message())
    failed_at = []
    for attempt in (1, 2, 3):
        [record] = queue.receive(10, 5)
        if failed_at:
            # Equal jitter: never sooner than half the nominal delay 0.1 * 2**(n-1).
            assert time.time() - failed_at[-1] >= 0.1 * 2 ** (attempt - 2) / 2
        assert record["attributes"]["ApproximateReceiveCount"] == str(attempt)
        queue.settle([record], [outcome(record, Status.FAILED, f"RuntimeError: boom {attempt}")])
        failed_at.append(time.time())
        if attempt < 3:
            assert queue.receive(10, 0) == []  # backing off, not visible at once
            assert queue.counts()["waiting"] == 1

    assert queue.counts() == {"visible": 0, "in_flight": 0, "waiting": 0, "dead_letters": 1}
    [letter] = queue.dead_letters()
    assert letter.id == message_id
    assert letter.receive_count == 3
    assert letter.last_error == "RuntimeError: boom 3"
    assert "3 receives" in letter.reason and "LETSGO_WORKER_MAX_RECEIVE_COUNT=3" in letter.reason


def test_a_rejected_message_is_dead_lettered_at_once_with_its_reason(make_queue):
    queue = make_queue(max_receive_count=5)
    queue.enqueue("not json")
    [record] = queue.receive(10, 0)
    queue.settle([record], [outcome(record, Status.REJECTED, "body is not valid JSON: Expecting value")])
    [letter] = queue.dead_letters()
    assert letter.receive_count == 1
    assert letter.body == "not json"
    assert letter.reason.startswith("rejected")
    assert letter.last_error == "body is not valid JSON: Expecting value"


def test_a_message_received_the_maximum_times_without_being_settled_is_dead_lettered(make_queue):
    queue = make_queue(max_receive_count=2, visibility_timeout=0.05)
    queue.enqueue(message())
    for _ in range(2):
        assert len(queue.receive(10, 5)) == 1  # claimed, never settled (a hung handler, a crash)
    assert queue.receive(10, 0.3) == []
    [letter] = queue.dead_letters()
    assert letter.receive_count == 2
    assert "visibility timeout" in letter.reason


def test_redrive_by_id_or_all_and_purge(make_queue):
    queue = make_queue()
    ids = queue.enqueue_many([(None, message(n=n)) for n in range(3)])
    records = queue.receive(10, 0)
    queue.settle(records, [outcome(r, Status.REJECTED, "no") for r in records])
    assert [letter.id for letter in queue.dead_letters()] == ids

    with pytest.raises(QueueError, match="not in the dead-letter queue: nope"):
        queue.redrive([ids[0], "nope"])
    assert len(queue.dead_letters()) == 3  # nothing moved

    assert queue.redrive([ids[1]]) == 1
    [again] = queue.receive(10, 0)
    assert again["messageId"] == ids[1]
    assert again["attributes"]["ApproximateReceiveCount"] == "1"  # a fresh start
    assert queue.redrive() == 2
    assert {r["messageId"] for r in queue.receive(10, 0)} == {ids[0], ids[2]}

    queue.settle([again], [outcome(again, Status.REJECTED, "no")])
    assert queue.purge_dead_letters() == 1
    assert queue.dead_letters() == []


def test_messages_survive_reopening_and_a_dead_servers_claims_are_reclaimed(tmp_path):
    path = tmp_path / "queue.db"
    with LocalQueue(path, visibility_timeout=300) as queue:
        queue.enqueue(message(n=1))
        queue.enqueue(message(n=2))
        assert len(queue.receive(1, 0)) == 1  # claimed by a server that then dies

    with LocalQueue(path, visibility_timeout=300) as queue:
        assert queue.counts() == {"visible": 1, "in_flight": 1, "waiting": 0, "dead_letters": 0}
        assert queue.reclaim_in_flight() == 1
        # The message in flight when the server died is a suspect: it comes alone, first.
        (suspect,) = queue.receive(10, 0)
        assert suspect["attributes"]["ApproximateReceiveCount"] == "2" and queue.is_suspect(suspect)
        (other,) = queue.receive(10, 0)
        assert other["attributes"]["ApproximateReceiveCount"] == "1" and not queue.is_suspect(other)


def test_a_suspect_that_fails_normally_is_a_suspect_no_more(tmp_path):
    path = tmp_path / "queue.db"
    with LocalQueue(path, backoff_base=0, backoff_max=0) as queue:
        queue.enqueue_many([(None, message(n=n)) for n in range(3)])
        queue.receive(10, 0)  # the server holding these dies
    with LocalQueue(path, backoff_base=0, backoff_max=0) as queue:
        assert queue.reclaim_in_flight() == 3
        (first,) = queue.receive(10, 0)
        queue.settle([first], [outcome(first, Status.FAILED, "RuntimeError: no crash, just a failure")])
        later = [queue.receive(10, 0) for _ in range(3)]
        assert [len(batch) for batch in later] == [1, 1, 1]  # the other two suspects, then the failed one
        assert not queue.is_suspect(later[-1][0]) and later[-1][0]["messageId"] == first["messageId"]


# The schema of a file written by version 1 (before crash suspects), as it was shipped.
VERSION_1_SCHEMA = """
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, body TEXT NOT NULL, sent_at REAL NOT NULL,
    visible_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, first_received_at REAL,
    receipt_handle TEXT, last_error TEXT
);
CREATE INDEX messages_by_visibility ON messages (visible_at);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, body TEXT NOT NULL, sent_at REAL NOT NULL,
    receive_count INTEGER NOT NULL, first_received_at REAL, dead_lettered_at REAL NOT NULL,
    reason TEXT NOT NULL, last_error TEXT
);
CREATE INDEX dead_letters_by_id ON dead_letters (id);
INSERT INTO messages (id, body, sent_at, visible_at) VALUES ('m-1', '{"type": "t", "payload": {"n": 1}}', 1, 1);
INSERT INTO dead_letters (id, body, sent_at, receive_count, dead_lettered_at, reason)
    VALUES ('d-1', '{"type": "t", "payload": {}}', 1, 3, 2, 'failed');
PRAGMA user_version=1;
"""


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_queue_file_is_migrated_and_keeps_its_messages(tmp_path, version):
    import sqlite3

    from host.local.schema import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "queue.db"
    connection = sqlite3.connect(path)
    connection.executescript(VERSION_1_SCHEMA)
    for older in range(1, version):
        connection.executescript(MIGRATIONS[older])
    connection.execute(f"PRAGMA user_version={version}")
    connection.close()
    with LocalQueue(path) as queue:
        (record,) = queue.receive(10, 0)
        assert json.loads(record["body"])["payload"]["n"] == 1 and not queue.is_suspect(record)
        assert [letter.id for letter in queue.dead_letters()] == ["d-1"]
        assert queue.redrive(["d-1"]) == 1
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()


def test_concurrent_enqueues_are_all_stored(make_queue):
    queue = make_queue()
    ids: list[str] = []
    lock = threading.Lock()

    def send(thread: int) -> None:
        for n in range(40):
            message_id = queue.enqueue(message(thread=thread, n=n))
            with lock:
                ids.append(message_id)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 320
    assert queue.counts()["visible"] == 320


def test_requests_committed_together_stay_apart_when_one_of_them_fails(make_queue):
    queue = make_queue()
    holding, release = threading.Event(), threading.Event()

    def hold(connection):
        holding.set()
        release.wait(10)

    async def store_together():
        # Keep the writer busy, so that the stores below wait together and share one transaction.
        held = queue._writer.submit(hold)
        await asyncio.to_thread(holding.wait, 10)
        stores = asyncio.gather(
            queue.store([(None, message(n=1))], 0),
            queue.store([(None, "\ud800")], 0),  # not encodable: its insert fails
            queue.store([(None, message(n=2)), ("kept-id", message(n=3))], 0),
            queue.store([(None, message(n=4))], 0),
            return_exceptions=True,
        )
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wrap_future(held)
        return await stores

    first, unencodable, more, last = asyncio.run(store_together())
    assert isinstance(unencodable, UnicodeEncodeError)
    assert more[1] == "kept-id" and len({first[0], more[0], last[0]}) == 3
    bodies = sorted(json.loads(r["body"])["payload"]["n"] for r in queue.receive(10, 0))
    assert bodies == [1, 2, 3, 4]


def test_a_waiting_receive_wakes_when_a_message_arrives(make_queue):
    queue = make_queue()
    threading.Timer(0.2, queue.enqueue, args=(message(),)).start()
    assert len(queue.receive(10, 10)) == 1


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "queue.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(QueueError, match="cannot open the local queue database"):
        LocalQueue(path)


def test_only_one_server_may_hold_a_database(tmp_path):
    first = ServeLock(str(tmp_path / "queue.db"))
    assert first.acquire()
    try:
        with pytest.raises(StartupError, match="another `letsgo-worker serve`"):
            ServeLock(str(tmp_path / "queue.db")).acquire()
    finally:
        first.release()
    second = ServeLock(str(tmp_path / "queue.db"))
    assert second.acquire()
    second.release()


def test_backoff_doubles_per_receive_with_equal_jitter_up_to_the_maximum():
    rng = random.Random(7)
    for receive_count, nominal in [(1, 2), (2, 4), (3, 8), (4, 16), (9, 300), (500, 300)]:
        for _ in range(50):
            delay = backoff_seconds(receive_count, 2, 300, rng)
            assert nominal / 2 <= delay <= nominal


# -- the delivery loop -----------------------------------------------------------


class Recorder:
    """An in-process plugin whose handlers record what ran, and can fail or block."""

    __name__ = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.barrier = threading.Barrier(2, timeout=10)
        self.places: list[tuple[str, int]] = []

    def _note(self, message, ctx) -> None:
        with self.lock:
            self.calls.append((ctx.message_id, ctx.receive_count, message.payload))

    @hookimpl
    def letsgo_register_messages(self, register):
        def record(message, ctx):
            self._note(message, ctx)

        def flaky(message, ctx):
            self._note(message, ctx)
            if ctx.receive_count < 2:
                raise RuntimeError("first time fails")

        def hang_once(message, ctx):
            self._note(message, ctx)
            if ctx.receive_count == 1:
                self.release.wait(30)

        def meet(message, ctx):
            self.barrier.wait()
            self._note(message, ctx)

        async def where(message, ctx):
            with self.lock:
                self.places.append((threading.current_thread().name, id(asyncio.get_running_loop())))

        register("test:record", record)
        register("test:where", where)
        register("test:flaky", flaky)
        register("test:hang", hang_once)
        register("test:meet", meet)


class CountingSource:
    """Wraps a source to see the batches the delivery loop settles."""

    def __init__(self, inner: LocalQueue) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def receive(self, max_messages, wait_seconds):
        return self.inner.receive(max_messages, wait_seconds)

    def settle(self, records, outcomes):
        self.batches.append(len(records))
        self.inner.settle(records, outcomes)


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def deliver(make_worker, recorder):
    """``deliver(queue, **options)``: a started Delivery over ``queue`` with the Recorder plugin."""
    worker = make_worker(plugins=[recorder], entry_points=False, env={"LETSGO_WORKER_THREADS": "8"})
    started = []

    def start(source, **options) -> Delivery:
        options.setdefault("poll_seconds", 0.2)
        delivery = Delivery(worker, source, **options).start()
        started.append(delivery)
        return delivery

    yield start
    recorder.release.set()
    for delivery in started:
        delivery.stop(timeout=5)


def test_delivery_settles_outcomes_and_retries_what_failed(make_queue, deliver, recorder):
    queue = make_queue(backoff_base=0.05, backoff_max=0.1)
    ok_id = queue.enqueue(message("test:record", n=1))
    flaky_id = queue.enqueue(message("test:flaky"))
    unknown_id = queue.enqueue(message("test:unknown"))
    deliver(queue)
    wait_until(lambda: queue.counts() == {"visible": 0, "in_flight": 0, "waiting": 0, "dead_letters": 1})
    assert (ok_id, 1, {"n": 1}) in recorder.calls
    assert [(i, n) for i, n, _ in recorder.calls if i == flaky_id] == [(flaky_id, 1), (flaky_id, 2)]
    [letter] = queue.dead_letters()
    assert letter.id == unknown_id and "unknown message type 'test:unknown'" in letter.last_error


def test_batches_hold_at_most_the_batch_size(make_queue, deliver, recorder):
    queue = make_queue()
    queue.enqueue_many([(None, message(n=n)) for n in range(7)])
    source = CountingSource(queue)
    deliver(source, batch_size=3, concurrency=1)
    wait_until(lambda: sum(source.batches) == 7)
    assert sorted(source.batches, reverse=True) == [3, 3, 1]


def test_the_batching_window_gathers_messages_that_arrive_after_the_first(make_queue, deliver, recorder):
    queue = make_queue()
    source = CountingSource(queue)
    deliver(source, batch_size=5, batch_window=0.8)
    time.sleep(0.3)  # the loop is waiting for a first message
    queue.enqueue(message(n=1))
    queue.enqueue(message(n=2))
    wait_until(lambda: sum(source.batches) == 2)
    assert source.batches == [2]


def test_batches_run_concurrently_up_to_the_concurrency(make_queue, deliver, recorder):
    queue = make_queue()
    queue.enqueue_many([(None, message("test:meet", n=n)) for n in range(2)])
    deliver(queue, batch_size=1, concurrency=2)
    # Each handler waits for the other at a barrier: both must be running at once.
    wait_until(lambda: len(recorder.calls) == 2)
    assert not recorder.barrier.broken


def test_batches_run_on_threads_that_live_on_with_their_event_loops(make_queue, deliver, recorder):
    queue = make_queue()
    delivery = deliver(queue, batch_size=1, concurrency=1)
    for n in range(3):  # one after another: each batch starts once the previous one is settled
        queue.enqueue(message("test:where", n=n))
        wait_until(lambda: len(recorder.places) == n + 1 and delivery.in_flight() == 0)
    assert len(set(recorder.places)) == 1, recorder.places


def test_a_hung_handler_does_not_stall_delivery_and_its_message_is_delivered_again(make_queue, deliver, recorder):
    queue = make_queue(visibility_timeout=0.5)
    hung_id = queue.enqueue(message("test:hang"))
    delivery = deliver(queue, batch_size=1, concurrency=1, visibility_timeout=0.5)
    # With one slot, the redelivery can only run because the hung batch gave its slot back.
    wait_until(lambda: (hung_id, 2) in [(i, n) for i, n, _ in recorder.calls])
    later_id = queue.enqueue(message("test:record", n=9))
    wait_until(lambda: later_id in [i for i, _, _ in recorder.calls])
    assert delivery.in_flight() == 0
    recorder.release.set()
    wait_until(lambda: queue.counts()["in_flight"] == 0 and queue.counts()["visible"] == 0)


def test_stop_waits_for_running_batches_and_releases_those_that_outlast_the_bound(make_queue, deliver, recorder):
    queue = make_queue(visibility_timeout=300)
    queue.enqueue(message("test:hang"))
    delivery = deliver(queue, batch_size=1)
    wait_until(lambda: recorder.calls)
    assert delivery.stop(timeout=0.3) == 1  # one batch still running when the bound ran out
    # Released: visible again for the next start instead of waiting out the 300 s visibility timeout.
    assert queue.counts()["visible"] == 1


class FakeClocks:
    """A wall clock and a monotonic clock that the test moves; the wall one can jump."""

    def __init__(self) -> None:
        self.wall_at, self.monotonic_at = time.time(), 1000.0

    def wall(self) -> float:
        return self.wall_at

    def monotonic(self) -> float:
        return self.monotonic_at

    def tick(self, seconds: float) -> None:
        self.wall_at += seconds
        self.monotonic_at += seconds


@pytest.mark.parametrize("jump", [3600.0, -3600.0], ids=["clock-set-an-hour-forward", "clock-set-an-hour-back"])
def test_a_wall_clock_jump_moves_the_queues_times_so_each_message_keeps_the_time_it_had_left(make_queue, jump):
    from host.local.clock import ClockWatch

    queue = make_queue(visibility_timeout=60)
    clocks = FakeClocks()
    watch = ClockWatch(queue, wall=clocks.wall, monotonic=clocks.monotonic)
    queue.enqueue(message(n=1))
    (in_flight,) = queue.receive(10, 0)
    queue.enqueue(message(n=2), delay_seconds=2)
    clocks.tick(0.5)
    assert watch.check() == 0.0  # both clocks moved together: no jump

    # The wall clock jumps. For the queue, which reads the real clock, that is simulated by moving
    # its stored instants the other way, straight in SQLite; the watch must undo it.
    clocks.wall_at += jump
    queue._write(lambda connection: connection.execute("UPDATE messages SET visible_at = visible_at - ?", (jump,)))
    assert watch.check() == jump
    counts = queue.counts()
    assert counts["in_flight"] == 1 and counts["waiting"] == 1 and counts["visible"] == 0
    (row,) = queue._read("SELECT visible_at - ? FROM messages WHERE receipt_handle IS NULL", (time.time(),))
    assert 0 < row[0] <= 2  # the delayed message still has under 2 s to wait, not an hour more or less
    assert in_flight["messageId"] not in [r["messageId"] for r in queue.receive(10, 0)]


def test_small_clock_differences_are_not_taken_for_a_jump(make_queue):
    from host.local.clock import ClockWatch

    queue = make_queue()
    clocks = FakeClocks()
    watch = ClockWatch(queue, wall=clocks.wall, monotonic=clocks.monotonic)
    queue.enqueue(message(n=1), delay_seconds=5)
    (before,) = queue._read("SELECT visible_at FROM messages")
    clocks.wall_at += 0.5  # an NTP slew
    assert watch.check() == 0.0
    assert queue._read("SELECT visible_at FROM messages") == [before]
