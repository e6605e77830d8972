"""SQS batch semantics: partial failures, concurrency, FIFO order, the deadline guard, logs.

Batches are real AWS sample events from tests/fixtures/aws, or events built
from them, run through ``host.aws.events.handle_event`` (what ``lambda_entry.handler``
calls) or ``host.core.batch.process_sqs_event`` (what the local runtime calls).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from host import hookimpl
from host.core.batch import process_sqs_event, run
from host.core.records import record_group
from host.core.dispatch import Status
from host.aws.events import handle_event
from host.core.logs import ROOT_LOGGER, configure_logging

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "aws"
WAIT = 10  # seconds a test waits for something that should happen at once; never reached when correct


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def standard_batch(*bodies: object) -> dict:
    """``sqs-standard-batch.json`` with one record per body (ids ``m0``, ``m1``...)."""
    template = fixture("sqs-standard-batch.json")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"m{index}"
        record["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(record)
    return {"Records": records}


def fifo_batch(*items: tuple[str, object]) -> dict:
    """``sqs-fifo-batch.json`` with one record per ``(group, body)`` (ids ``f0``, ``f1``...)."""
    template = fixture("sqs-fifo-batch.json")["Records"][0]
    records = []
    for index, (group, body) in enumerate(items):
        record = copy.deepcopy(template)
        record["messageId"] = f"f{index}"
        record["body"] = json.dumps(body)
        record["attributes"]["MessageGroupId"] = group
        record["attributes"]["SequenceNumber"] = str(18849496460467696128 + index)
        records.append(record)
    return {"Records": records}


def failed_ids(response: dict) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


class Order(BaseModel):
    orderId: str


class Shop:
    """Message types for the tests: sync and async, succeeding, failing, blocking."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown: frees blocked sync handlers
        self.started = threading.Event()
        self.cleaned_up: list[str] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.barrier: threading.Barrier | None = None
        self.async_gate: tuple[int, list[str]] | None = None
        self.in_threads = 0
        self.most_threads = 0

    def _done(self, message) -> None:
        with self.lock:
            self.handled.append(message.payload["orderId"] if isinstance(message.payload, dict) else message.payload.orderId)

    def sync_ok(self, message, ctx) -> None:
        self._done(message)

    async def async_ok(self, message, ctx) -> None:
        await asyncio.sleep(float(message.payload.get("sleep", 0)))
        self.loops.append(asyncio.get_running_loop())
        self._done(message)

    def sync_fail(self, message, ctx) -> None:
        raise ValueError(f"cannot ship {message.payload['orderId']}")

    async def async_fail(self, message, ctx) -> None:
        raise RuntimeError("payment service unavailable")

    def sync_block(self, message, ctx) -> None:
        self.started.set()
        self.release.wait(WAIT)

    async def async_block(self, message, ctx) -> None:
        self.started.set()
        try:
            await asyncio.sleep(WAIT)
        finally:
            self.cleaned_up.append(ctx.message_id)

    def sync_barrier(self, message, ctx) -> None:
        assert self.barrier is not None
        self.barrier.wait()  # breaks (raises) unless every party arrives at once
        self._done(message)

    async def async_together(self, message, ctx) -> None:
        expected, arrived = self.async_gate
        arrived.append(ctx.message_id)
        for _ in range(WAIT * 100):
            if len(arrived) >= expected:
                break
            await asyncio.sleep(0.01)
        assert len(arrived) >= expected, "async handlers did not run concurrently"
        self._done(message)

    def sync_counted(self, message, ctx) -> None:
        with self.lock:
            self.in_threads += 1
            self.most_threads = max(self.most_threads, self.in_threads)
        time.sleep(0.02)
        with self.lock:
            self.in_threads -= 1
        self._done(message)

    def sys_exit(self, message, ctx) -> None:
        raise SystemExit(3)

    @hookimpl
    def letsgo_register_messages(self, register):
        register("order.sync", self.sync_ok, payload=Order)
        register("order.async", self.async_ok)
        register("order.sync_fail", self.sync_fail)
        register("order.async_fail", self.async_fail)
        register("order.sync_block", self.sync_block)
        register("order.async_block", self.async_block)
        register("order.barrier", self.sync_barrier)
        register("order.together", self.async_together)
        register("order.counted", self.sync_counted)
        register("order.exit", self.sys_exit)


@pytest.fixture
def shop():
    shop = Shop()
    yield shop
    shop.release.set()


@pytest.fixture
def shop_worker(make_worker, shop, notifications):
    return make_worker(plugins=[shop, notifications], entry_points=False)


class Context:
    """A Lambda context whose remaining time counts down in real time from ``timeout_ms``."""

    aws_request_id = "6f1c5a4e-0000-4000-8000-000000000001"
    function_name = "letsgo-worker"

    def __init__(self, timeout_ms: int) -> None:
        self.deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def msg(type_: str, order_id: str, **payload) -> dict:
    return {"type": type_, "payload": {"orderId": order_id, **payload}}


# -- partial batch failures ----------------------------------------------------


def test_sample_event_with_one_good_record_reports_exactly_the_bad_one(shop_worker, shop):
    """The AWS sample batch, record 1 replaced by a good message; record 2 stays "Test message."."""
    event = fixture("sqs-standard-batch.json")
    event["Records"][0]["body"] = json.dumps(msg("order.sync", "A-1"))
    response = handle_event(event, Context(60_000), worker=shop_worker)
    assert response == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}
    assert shop.handled == ["A-1"]


def test_mixed_batch_reports_exactly_the_failed_and_rejected_ids_in_record_order(shop_worker, shop, notifications):
    event = standard_batch(
        msg("order.sync", "ok-sync"),
        msg("order.sync_fail", "boom"),
        msg("order.async", "ok-async"),
        "Test message.",
        msg("order.async_fail", "down"),
        {"type": "order.unknown", "payload": {}},
        {"type": "order.sync", "payload": {"orderId": 5}},  # fails validation
        msg("order.sync", "ok-last"),
    )
    result = process_sqs_event(shop_worker, event, Context(60_000))
    assert [o.status for o in result.outcomes] == [
        Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED, Status.REJECTED,
        Status.FAILED, Status.REJECTED, Status.REJECTED, Status.SUCCEEDED,
    ]
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": i} for i in ["m1", "m3", "m4", "m5", "m6"]]}
    assert sorted(shop.handled) == ["ok-async", "ok-last", "ok-sync"]
    assert "ValueError: cannot ship boom" in result.outcomes[1].reason
    assert len(notifications.texts) == 3  # one per rejected message


def test_a_batch_where_everything_fails_is_returned_not_raised(shop_worker):
    event = standard_batch(*(msg("order.sync_fail", f"x{i}") for i in range(5)), "not json")
    response = handle_event(event, Context(60_000), worker=shop_worker)
    assert failed_ids(response) == ["m0", "m1", "m2", "m3", "m4", "m5"]


def test_a_handler_calling_sys_exit_fails_only_its_message(shop_worker, shop):
    response = handle_event(standard_batch(msg("order.exit", "bye"), msg("order.sync", "ok")), Context(60_000), worker=shop_worker)
    assert failed_ids(response) == ["m0"]
    assert shop.handled == ["ok"]


# -- concurrency ---------------------------------------------------------------


def test_async_handlers_of_a_batch_run_concurrently_on_one_loop(shop_worker, shop):
    shop.async_gate = (4, [])
    response = handle_event(standard_batch(*(msg("order.together", f"t{i}") for i in range(4))), None, worker=shop_worker)
    assert response == {"batchItemFailures": []}


def test_sync_handlers_of_a_batch_run_in_threads_at_the_same_time(shop_worker, shop):
    shop.barrier = threading.Barrier(4, timeout=WAIT)
    response = handle_event(standard_batch(*(msg("order.barrier", f"b{i}") for i in range(4))), None, worker=shop_worker)
    assert response == {"batchItemFailures": []}


def test_sync_handlers_are_bounded_by_the_thread_pool(make_worker, shop):
    worker = make_worker(plugins=[shop], env={"LETSGO_WORKER_THREADS": "2"}, entry_points=False)
    response = handle_event(standard_batch(*(msg("order.counted", f"c{i}") for i in range(8))), None, worker=worker)
    assert response == {"batchItemFailures": []}
    assert shop.most_threads == 2


def test_the_event_loop_is_reused_across_warm_invocations(shop_worker, shop):
    for index in range(3):
        handle_event(standard_batch(msg("order.async", f"w{index}")), Context(60_000), worker=shop_worker)
    assert len(shop.loops) == 3 and len(set(map(id, shop.loops))) == 1
    assert not shop.loops[0].is_closed()


def test_batches_from_another_thread_get_their_own_loop(shop_worker, shop):
    handle_event(standard_batch(msg("order.async", "main")), None, worker=shop_worker)
    thread = threading.Thread(target=handle_event, args=(standard_batch(msg("order.async", "other")), None), kwargs={"worker": shop_worker})
    thread.start()
    thread.join(WAIT)
    assert sorted(shop.handled) == ["main", "other"]
    assert shop.loops[0] is not shop.loops[1]


def test_calling_a_batch_from_a_running_loop_is_a_clear_error(shop_worker):
    async def inside() -> None:
        process_sqs_event(shop_worker, standard_batch(msg("order.sync", "x")))

    with pytest.raises(RuntimeError, match="from a running event loop"):
        asyncio.run(inside())
    # The thread's own loop is still usable afterwards.
    assert run(asyncio.sleep(0, result=7)) == 7


# -- FIFO ------------------------------------------------------------------------


def test_fifo_groups_run_in_order_and_a_failure_stops_only_its_group(shop_worker, shop):
    event = fifo_batch(
        ("A", msg("order.async", "a1", sleep=0.05)),
        ("B", msg("order.async", "b1", sleep=0.03)),
        ("A", msg("order.async", "a2")),
        ("B", msg("order.sync_fail", "b2")),
        ("A", msg("order.sync", "a3")),
        ("B", msg("order.sync", "b3")),  # after the failure: not run
        ("C", msg("order.sync", "c1")),
        ("B", msg("order.async", "b4")),  # not run either
    )
    result = process_sqs_event(shop_worker, event, Context(60_000))
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": i} for i in ["f3", "f5", "f7"]]}
    handled = shop.handled
    assert sorted(handled) == ["a1", "a2", "a3", "b1", "c1"]
    assert handled.index("a1") < handled.index("a2") < handled.index("a3")
    skipped = result.outcomes[5]
    assert skipped.status is Status.FAILED and "FIFO group 'B'" in skipped.reason and "f3" in skipped.reason
    assert skipped.type == "order.sync" and skipped.plugin is not None


def test_a_rejected_fifo_message_also_holds_back_its_group(shop_worker, shop):
    event = fifo_batch(("A", {"type": "order.nope"}), ("A", msg("order.sync", "a2")), ("B", msg("order.sync", "b1")))
    response = handle_event(event, Context(60_000), worker=shop_worker)
    assert failed_ids(response) == ["f0", "f1"]
    assert shop.handled == ["b1"]


def test_the_real_fifo_sample_is_one_group_and_its_foreign_body_is_reported(shop_worker):
    event = fixture("sqs-fifo-batch.json")
    assert record_group(event["Records"][0]) == "1"
    response = handle_event(event, Context(60_000), worker=shop_worker)
    assert failed_ids(response) == ["11d6ee51-4cc7-4302-9e22-7cd8afdaadf5"]


def test_message_group_on_a_standard_queue_does_not_serialise(shop_worker):
    """Standard (fair) queues may carry MessageGroupId, with no order to keep."""
    record = fixture("sqs-standard-batch.json")["Records"][0]
    record["attributes"]["MessageGroupId"] = "tenant-1"
    assert record_group(record) is None
    del record["eventSourceARN"]  # the local runtime's records: the group is honoured
    assert record_group(record) == "tenant-1"


# -- the deadline --------------------------------------------------------------


def test_overrunning_async_handler_is_cancelled_and_reported_before_the_timeout(make_worker, shop):
    worker = make_worker(plugins=[shop], env={"LETSGO_WORKER_DEADLINE_MARGIN_MS": "1000"}, entry_points=False)
    context = Context(1800)
    event = standard_batch(msg("order.async_block", "slow"), msg("order.sync", "quick"))
    result = process_sqs_event(worker, event, context)
    assert context.get_remaining_time_in_millis() > 0, "the handler must return before Lambda's timeout"
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert "did not finish" in result.outcomes[0].reason and result.outcomes[0].type == "order.async_block"
    assert shop.cleaned_up == ["m0"], "the cancelled handler's finally block ran"


def test_overrunning_sync_handler_is_reported_while_its_thread_runs_on(make_worker, shop):
    worker = make_worker(plugins=[shop], env={"LETSGO_WORKER_DEADLINE_MARGIN_MS": "1000"}, entry_points=False)
    context = Context(1800)
    result = process_sqs_event(worker, standard_batch(msg("order.sync", "quick"), msg("order.sync_block", "stuck")), context)
    assert context.get_remaining_time_in_millis() > 0
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert shop.started.is_set() and "did not finish" in result.outcomes[1].reason


def test_fifo_messages_after_the_deadline_are_not_started(make_worker, shop):
    worker = make_worker(plugins=[shop], env={"LETSGO_WORKER_DEADLINE_MARGIN_MS": "1000"}, entry_points=False)
    event = fifo_batch(("A", msg("order.async_block", "a1")), ("A", msg("order.sync", "a2")), ("B", msg("order.sync", "b1")))
    result = process_sqs_event(worker, event, Context(1800))
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "f0"}, {"itemIdentifier": "f1"}]}
    assert "did not finish" in result.outcomes[0].reason
    assert result.outcomes[1].reason.startswith("not started")
    assert shop.handled == ["b1"]


def test_a_context_that_has_run_out_starts_nothing(shop_worker, shop):
    event = standard_batch(msg("order.sync", "x"), msg("order.async", "y"))
    result = process_sqs_event(shop_worker, event, Context(500))  # below the 1000 ms default margin
    assert failed_ids(result.response()) == ["m0", "m1"]
    assert all(o.reason.startswith("not started") for o in result.outcomes)
    assert shop.handled == []


def test_a_context_without_remaining_time_means_no_deadline(shop_worker, shop):
    """The original local server passed ``{}`` as the context."""
    response = handle_event(standard_batch(msg("order.sync", "x")), {}, worker=shop_worker)
    assert response == {"batchItemFailures": []} and shop.handled == ["x"]


# -- logs ------------------------------------------------------------------------


@pytest.fixture
def json_log():
    """The ``letsgo`` loggers as the Lambda entry point sets them up, into a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger(ROOT_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    configure_logging("DEBUG", stream=stream)

    def lines(level: str | None = None) -> list[dict]:
        parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in parsed if level is None or line["level"] == level]

    yield lines
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_one_json_line_per_failed_message_and_one_summary(shop_worker, json_log):
    event = standard_batch(msg("order.sync", "ok"), msg("order.sync_fail", "bad"), "Test message.")
    handle_event(event, Context(60_000), worker=shop_worker)
    batch_lines = [line for line in json_log() if line["logger"] == "letsgo.batch"]
    failed = [line for line in batch_lines if line.get("outcome") in ("failed", "rejected")]
    assert [(line["message_id"], line["outcome"], line["level"]) for line in failed] == [
        ("m1", "failed", "ERROR"), ("m2", "rejected", "WARNING"),
    ]
    assert failed[0]["type"] == "order.sync_fail" and failed[0]["plugin"]
    assert "ValueError: cannot ship bad" in failed[0]["reason"] and "Traceback" in failed[0]["error"]
    assert "not valid JSON" in failed[1]["reason"] and isinstance(failed[1]["duration_ms"], float)
    assert failed[0]["request_id"] == Context.aws_request_id
    [success] = [line for line in batch_lines if line.get("outcome") == "succeeded"]
    assert success["level"] == "DEBUG"
    [summary] = [line for line in batch_lines if "records" in line]
    assert summary["level"] == "INFO"
    assert (summary["records"], summary["succeeded"], summary["failed"], summary["rejected"]) == (3, 1, 1, 1)


def test_a_healthy_batch_logs_a_single_line_at_info(shop_worker, json_log):
    logging.getLogger(ROOT_LOGGER).setLevel("INFO")
    handle_event(standard_batch(*(msg("order.sync", f"o{i}") for i in range(10))), Context(60_000), worker=shop_worker)
    lines = json_log()
    assert len(lines) == 1 and lines[0]["records"] == 10 and lines[0]["succeeded"] == 10


def test_fifo_and_deadline_show_in_the_summary(make_worker, shop, json_log):
    worker = make_worker(plugins=[shop], entry_points=False)
    handle_event(fifo_batch(("A", msg("order.sync", "a")), ("B", msg("order.sync", "b"))), Context(500), worker=worker)
    [summary] = [line for line in json_log() if "records" in line]
    assert summary["fifo_groups"] == 2 and summary["deadline_reached"] is True
    assert [line["group"] for line in json_log("WARNING")] == ["A", "B"]
