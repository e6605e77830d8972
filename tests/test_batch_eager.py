"""Async handlers of a standard (non-FIFO) batch, each record in an asyncio task of its own.

Handlers that wait overlap (real socket I/O here) with those that finish at
once, the deadline cancels the ones still waiting while the later records
still run, ``asyncio.timeout`` and ``TaskGroup`` in a handler act on its own
task only, a handler cancelling itself fails only its message, and context
variables do not leak from one record to the next.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from host import hookimpl
from host.core.batch import process_sqs_event
from host.core.dispatch import Status

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "aws"
WAIT = 10  # seconds; never reached when correct

current_order: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_order", default=None)


def batch(*bodies: dict) -> dict:
    """``sqs-standard-batch.json`` with one record per body (ids ``m0``, ``m1``...)."""
    template = json.loads((FIXTURES / "sqs-standard-batch.json").read_text())["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"m{index}"
        record["body"] = json.dumps(body)
        records.append(record)
    return {"Records": records}


def msg(type_: str, order_id: str) -> dict:
    return {"type": type_, "payload": {"orderId": order_id}}


class LambdaContext:
    """Remaining time counting down in real time from ``timeout_ms``."""

    aws_request_id = "6f1c5a4e-0000-4000-8000-000000000002"

    def __init__(self, timeout_ms: int) -> None:
        self.deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class EchoServer:
    """A TCP server on 127.0.0.1 that answers a line once told how many clients to wait for.

    Every client's answer is held back until ``expected`` clients are
    connected at the same time: a client gets its answer only if the others
    were started while it waited.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connected = threading.Semaphore(0)
        self.all_here = threading.Event()
        self.count = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(WAIT)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            line = conn.makefile("rb").readline()
            with self.lock:
                self.count += 1
                if self.count >= self.expected:
                    self.all_here.set()
            if self.all_here.wait(WAIT):
                conn.sendall(b"ok " + line)
            else:
                conn.sendall(b"alone\n")

    def close(self) -> None:
        self.sock.close()


class Plugin:
    def __init__(self) -> None:
        self.port = 0
        self.handled: list[str] = []
        self.seen_context: list[str | None] = []
        self.cleaned_up: list[str] = []
        self.tasks: dict[str, asyncio.Task | None] = {}

    async def instant(self, message, ctx) -> None:
        self.seen_context.append(current_order.get())
        current_order.set(message.payload["orderId"])  # must not be seen by the next record
        self.handled.append(message.payload["orderId"])

    async def network(self, message, ctx) -> None:
        current_order.set(message.payload["orderId"])  # before the first wait: kept across it
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(message.payload["orderId"].encode() + b"\n")
        answer = (await reader.readline()).decode().strip()
        writer.close()
        await writer.wait_closed()
        assert current_order.get() == message.payload["orderId"], "the record's context was lost after waiting"
        if answer != f"ok {message.payload['orderId']}":
            raise RuntimeError(f"server answered {answer!r}: the handlers did not overlap")
        self.handled.append(message.payload["orderId"])

    async def stuck(self, message, ctx) -> None:
        try:
            await asyncio.sleep(WAIT)
        finally:
            self.cleaned_up.append(ctx.message_id)

    async def times_out(self, message, ctx) -> None:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(WAIT)

    async def group_fails(self, message, ctx) -> None:
        async def child() -> None:
            await asyncio.sleep(0)
            raise ValueError("child failed")

        async with asyncio.TaskGroup() as group:
            group.create_task(child())
            group.create_task(asyncio.sleep(WAIT))

    async def cancelled_at_once(self, message, ctx) -> None:
        raise asyncio.CancelledError()

    async def which_task(self, message, ctx) -> None:
        await asyncio.sleep(0)
        self.tasks[message.payload["orderId"]] = asyncio.current_task()

    @hookimpl
    def letsgo_register_messages(self, register):
        register("instant", self.instant)
        register("network", self.network)
        register("stuck", self.stuck)
        register("times_out", self.times_out)
        register("group_fails", self.group_fails)
        register("cancelled_at_once", self.cancelled_at_once)
        register("which_task", self.which_task)


@pytest.fixture
def plugin():
    return Plugin()


@pytest.fixture
def worker(make_worker, plugin):
    return make_worker(plugins=[plugin], entry_points=False)


def test_handlers_waiting_on_real_sockets_overlap_between_instant_ones(worker, plugin):
    server = EchoServer(expected=3)
    plugin.port = server.port
    try:
        event = batch(msg("network", "n1"), msg("instant", "i1"), msg("network", "n2"), msg("instant", "i2"),
                      msg("network", "n3"))
        result = process_sqs_event(worker, event, LambdaContext(60_000))
    finally:
        server.close()
    assert result.response() == {"batchItemFailures": []}, [o.reason for o in result.outcomes]
    assert sorted(plugin.handled) == ["i1", "i2", "n1", "n2", "n3"]


def test_context_variables_do_not_leak_between_records(worker, plugin):
    result = process_sqs_event(worker, batch(*(msg("instant", f"o{i}") for i in range(4))), LambdaContext(60_000))
    assert result.response() == {"batchItemFailures": []}
    assert plugin.seen_context == [None, None, None, None]
    assert current_order.get() is None


def test_the_deadline_cancels_a_waiting_handler_and_the_later_records_still_run(make_worker, plugin):
    worker = make_worker(plugins=[plugin], env={"LETSGO_WORKER_DEADLINE_MARGIN_MS": "1000"}, entry_points=False)
    context = LambdaContext(1800)
    event = batch(msg("instant", "a"), msg("stuck", "s"), msg("instant", "b"), msg("stuck", "t"), msg("instant", "c"))
    result = process_sqs_event(worker, event, context)
    assert context.get_remaining_time_in_millis() > 0, "the batch must return before Lambda's timeout"
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]}
    assert all("did not finish" in result.outcomes[i].reason for i in (1, 3))
    assert sorted(plugin.cleaned_up) == ["m1", "m3"], "each cancelled handler's finally block ran"
    assert plugin.handled == ["a", "b", "c"]


def test_asyncio_timeout_in_a_handler_fails_only_its_message(worker, plugin):
    event = batch(msg("instant", "a"), msg("times_out", "t"), msg("instant", "b"))
    result = process_sqs_event(worker, event, LambdaContext(60_000))
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert result.outcomes[1].reason.startswith("TimeoutError")
    assert plugin.handled == ["a", "b"]


def test_a_task_group_failure_cancels_only_its_own_handler(worker, plugin):
    event = batch(msg("instant", "a"), msg("group_fails", "g"), msg("instant", "b"))
    result = process_sqs_event(worker, event, LambdaContext(60_000))
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    error = result.outcomes[1].error
    assert isinstance(error, ExceptionGroup) and [str(e) for e in error.exceptions] == ["child failed"]
    assert plugin.handled == ["a", "b"]


def test_handlers_that_wait_each_run_in_a_task_of_their_own(worker, plugin):
    result = process_sqs_event(worker, batch(*(msg("which_task", f"w{i}") for i in range(4))), LambdaContext(60_000))
    assert result.response() == {"batchItemFailures": []}
    assert len({id(task) for task in plugin.tasks.values()}) == 4


def test_a_handler_cancelling_itself_at_once_does_not_stop_the_others(worker, plugin):
    event = batch(msg("instant", "a"), msg("cancelled_at_once", "x"), msg("instant", "b"))
    result = process_sqs_event(worker, event, LambdaContext(60_000))
    assert [o.status for o in result.outcomes] == [Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    assert plugin.handled == ["a", "b"]


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Chatty:
    async def chatty(self, message, ctx) -> None:
        ctx.logger.info("handling %s", message.payload["orderId"])
        ctx.logger.log(logging.WARNING, "twice", extra={"ignored": True})
        ctx.logger.debug("not shown")

    @hookimpl
    def letsgo_register_messages(self, register):
        register("chatty", self.chatty)


def test_the_handlers_logger_names_the_handler_and_carries_the_message_fields(make_worker):
    worker = make_worker(plugins=[Chatty()], entry_points=False)
    recorder = Recorder()
    plugin_logger = logging.getLogger("letsgo.plugin")
    saved_level = plugin_logger.level
    plugin_logger.addHandler(recorder)
    plugin_logger.setLevel(logging.INFO)
    try:
        result = process_sqs_event(worker, batch(msg("chatty", "c1")), LambdaContext(60_000))
    finally:
        plugin_logger.removeHandler(recorder)
        plugin_logger.setLevel(saved_level)
    assert result.response() == {"batchItemFailures": []}
    assert [(r.levelname, r.getMessage()) for r in recorder.records] == [("INFO", "handling c1"), ("WARNING", "twice")]
    for record in recorder.records:
        assert (record.funcName, Path(record.pathname).name) == ("chatty", "test_batch_eager.py")
        assert (record.message_id, record.message_type) == ("m0", "chatty")
        assert not hasattr(record, "ignored"), "like LoggerAdapter, the message's fields replace the caller's extra"
