"""Per-message settlement: a message is acknowledged once it succeeds, never held hostage by its batch.

The batch processor tells its caller each record's outcome as soon as it is
known (``on_outcome``); the local delivery loop settles it then, so a hung
batch-mate no longer keeps healthy messages in flight until the visibility
timeout, to be run again. Lambda still gets ``batchItemFailures`` at the end.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from host import hookimpl
from host.core.batch import process_records, process_sqs_event
from host.core.dispatch import Status
from host.local.delivery import Delivery
from host.local.queue import LocalQueue
from tests.reliability.reliability_kit import (
    Server,
    health,
    in_process_worker,
    install_ledger_plugin,
    post,
    read_ledger,
    record,
    server_env,
    wait_until,
)


class Timed:
    """``wait`` sleeps ``payload["seconds"]``; ``fail`` raises; ``gate`` blocks until released."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    async def wait(self, message, ctx) -> None:
        await asyncio.sleep(message.payload["seconds"])

    def fail(self, message, ctx) -> None:
        raise RuntimeError("fails on purpose")

    def blocked(self, message, ctx) -> None:
        self.gate.wait(10)

    @hookimpl
    def letsgo_register_messages(self, register):
        register("t.wait", self.wait)
        register("t.fail", self.fail)
        register("t.gate", self.blocked)


def _wait(seconds: float, message_id: str, group: str | None = None) -> dict:
    r = record({"type": "t.wait", "payload": {"seconds": seconds}}, message_id)
    if group is not None:
        r["attributes"]["MessageGroupId"] = group
        r["eventSourceARN"] += ".fifo"
    return r


def test_each_outcome_is_told_as_soon_as_it_is_known_in_the_order_records_finish():
    worker = in_process_worker(Timed())
    failing = record({"type": "t.fail", "payload": None}, "g-1")
    failing["attributes"]["MessageGroupId"] = "g"
    failing["eventSourceARN"] += ".fifo"
    records = [
        _wait(0.6, "slow"),
        _wait(0.2, "middle"),
        _wait(0.0, "fast"),
        failing,
        _wait(0.0, "g-2", group="g"),  # after a failure in its group: failed without running
    ]
    told: list[tuple[int, str, str, float]] = []

    def on_outcome(index, record, outcome):
        told.append((index, record["messageId"], outcome.status.value, time.monotonic()))

    async def main():
        began = time.monotonic()
        outcomes = await process_records(worker, records, on_outcome=on_outcome)
        return began, time.monotonic(), outcomes

    began, ended, outcomes = asyncio.run(main())
    assert [message_id for _, message_id, _, _ in told] == ["fast", "g-1", "g-2", "middle", "slow"], told
    assert sorted(index for index, *_ in told) == [0, 1, 2, 3, 4]  # each record once
    by_id = {message_id: (status, at) for _, message_id, status, at in told}
    assert by_id["fast"][0] == "succeeded" and by_id["fast"][1] - began < 0.3
    assert by_id["g-1"][0] == by_id["g-2"][0] == "failed"
    assert by_id["middle"][1] < ended - 0.2  # told well before the batch ended
    # The outcomes returned at the end are the very ones told along the way.
    assert [o.status.value for o in outcomes] == ["succeeded", "succeeded", "succeeded", "failed", "failed"]
    assert "before it in FIFO group 'g'" in outcomes[4].reason


def test_a_failing_callback_changes_no_outcome_and_the_lambda_response_is_unchanged():
    worker = in_process_worker(Timed())
    records = [_wait(0.0, "a"), record({"type": "t.fail", "payload": None}, "b")]

    def broken(index, record, outcome):
        raise RuntimeError("the callback is broken")

    with_callback = process_sqs_event(worker, {"Records": records}, on_outcome=broken)
    without = process_sqs_event(worker, {"Records": records})
    assert with_callback.response() == without.response() == {"batchItemFailures": [{"itemIdentifier": "b"}]}


def test_records_the_deadline_stops_are_told_too():
    class Context:
        def __init__(self) -> None:
            self.ends = time.monotonic() + 1.4  # the default margin is 1000 ms

        def get_remaining_time_in_millis(self) -> float:
            return (self.ends - time.monotonic()) * 1000

    worker = in_process_worker(Timed())
    records = [_wait(0.0, "quick"), _wait(5.0, "late")]
    told = []
    outcomes = process_sqs_event(
        worker, {"Records": records}, Context(), on_outcome=lambda i, r, o: told.append((r["messageId"], o.status)),
    ).outcomes
    assert told == [("quick", Status.SUCCEEDED), ("late", Status.FAILED)]
    assert "before the Lambda timeout" in outcomes[1].reason


class SettleLog:
    """A source over a LocalQueue that notes every record it is asked to settle."""

    def __init__(self, inner: LocalQueue) -> None:
        self.inner = inner
        self.settled: list[str] = []

    def receive(self, max_messages, wait_seconds):
        return self.inner.receive(max_messages, wait_seconds)

    def settle(self, records, outcomes):
        # Noted once settled, so a test that sees a record here also sees it settled in the queue.
        self.inner.settle(records, outcomes)
        self.settled += [r["messageId"] for r in records]


def test_delivery_settles_a_finished_message_while_its_batch_mate_still_runs_and_nothing_twice(tmp_path):
    plugin = Timed()
    worker = in_process_worker(plugin)
    queue = LocalQueue(tmp_path / "queue.db")
    source = SettleLog(queue)
    delivery = None
    try:
        ids = queue.enqueue_many([
            (None, json.dumps({"type": "t.gate", "payload": None})),
            (None, json.dumps({"type": "t.wait", "payload": {"seconds": 0}})),
            (None, json.dumps({"type": "t.fail", "payload": None})),
        ])
        delivery = Delivery(worker, source, batch_size=3, batch_window=0.5, poll_seconds=0.1).start()
        # The two that end at once are settled while the blocked one still runs.
        wait_until(lambda: sorted(source.settled) == sorted(ids[1:]), 5, message="the finished messages to settle")
        assert queue.counts()["in_flight"] == 1
        plugin.gate.set()
        wait_until(lambda: len(source.settled) == 3, 5, message="the blocked message to settle")
        assert sorted(source.settled) == sorted(ids)  # each once
        assert queue.counts()["in_flight"] == 0 and queue.counts()["visible"] == 0
    finally:
        plugin.gate.set()
        if delivery is not None:
            delivery.stop(timeout=5)
        queue.close()


def test_serve_deletes_healthy_batch_mates_long_before_a_hung_one_returns(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        REL_HANG_SECONDS="20",
        LETSGO_WORKER_BATCH_SIZE="5",
        LETSGO_WORKER_BATCH_WINDOW_SECONDS="1",
        LETSGO_WORKER_VISIBILITY_TIMEOUT="60",  # its handler timeout (54 s) is far away
    )
    server = Server(tmp_path / "queue.db", tmp_path / "server.log", env).start()
    try:
        messages = [{"type": "rel.hang", "payload": {"n": 0}}] + [
            {"type": "rel.count", "payload": {"n": n}} for n in range(1, 5)
        ]
        posted = time.monotonic()
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in messages]})
        assert status == 201, reply

        def left() -> int:
            queue = health(server.url)["queue"]
            return queue["visible"] + queue["in_flight"]

        wait_until(lambda: left() == 1, 8, interval=0.1, message="the four healthy messages to be deleted")
        assert time.monotonic() - posted < 10  # the hung handler blocks for 20 s
        rows = read_ledger(ledger)
        assert sorted(n for kind, n, _, _ in rows if kind == "ok") == [1, 2, 3, 4], rows
        assert [kind for kind, n, _, _ in rows if n == 0] == ["hang"], rows  # still hung: it has not returned
        assert health(server.url)["queue"]["in_flight"] == 1  # the hung one, still held by its handler
    finally:
        server.kill()  # the hung handler would hold a graceful stop
