"""Any exception a handler raises fails its own message only, ``BaseException`` included.

A ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` or any other
``BaseException`` subclass raised by a handler (sync or async) fails that message,
with a reason naming the exception; its batch-mates run and succeed, and the
batch settles. Only signals delivered to the process stop the worker.
"""

from __future__ import annotations

import json

import pytest

from host import hookimpl
from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from tests.reliability.reliability_kit import (
    Server,
    dead_letters,
    drained,
    health,
    in_process_worker,
    post,
    read_ledger,
    record,
    server_env,
    wait_until,
    write_distribution,
)


class Fatal(BaseException):
    """A BaseException subclass that is none of Python's own."""


RAISED = {
    "KeyboardInterrupt": KeyboardInterrupt("from a handler"),
    "SystemExit": SystemExit(3),
    "GeneratorExit": GeneratorExit("from a handler"),
    "Fatal": Fatal("beyond Exception"),
}


class Raising:
    """``raise.sync`` and ``raise.async`` raise ``RAISED[payload]``; ``ok.*`` succeed."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    def raise_sync(self, message, ctx) -> None:
        raise RAISED[message.payload]

    async def raise_async(self, message, ctx) -> None:
        raise RAISED[message.payload]

    def ok_sync(self, message, ctx) -> None:
        self.handled.append(ctx.message_id)

    async def ok_async(self, message, ctx) -> None:
        self.handled.append(ctx.message_id)

    @hookimpl
    def letsgo_register_messages(self, register):
        register("raise.sync", self.raise_sync)
        register("raise.async", self.raise_async)
        register("ok.sync", self.ok_sync)
        register("ok.async", self.ok_async)


def fifo(body, message_id: str, group: str = "g1") -> dict:
    message = record(body, message_id)
    message["attributes"]["MessageGroupId"] = group
    message["eventSourceARN"] = "arn:aws:sqs:us-east-1:123456789012:letsgo-worker.fifo"
    return message


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(RAISED))
def test_a_base_exception_fails_its_own_message_and_the_others_succeed(kind, name):
    plugin = Raising()
    worker = in_process_worker(plugin)
    try:
        records = [record({"type": f"raise.{kind}", "payload": name}, "bad")]
        records += [record({"type": f"ok.{k}", "payload": None}, f"ok-{k}-{i}") for i in range(2) for k in ("sync", "async")]
        outcomes = process_sqs_event(worker, {"Records": records}).outcomes
    finally:
        worker.stop()
    bad, *others = outcomes
    assert bad.status is Status.FAILED
    assert bad.reason.startswith(f"{name}: "), bad.reason
    assert "Lambda timeout" not in bad.reason
    assert bad.plugin is not None and bad.type == f"raise.{kind}"
    assert [o.status for o in others] == [Status.SUCCEEDED] * 4
    assert sorted(plugin.handled) == sorted(r["messageId"] for r in records[1:])


def test_a_base_exception_in_a_fifo_group_stops_only_that_group_and_says_why():
    plugin = Raising()
    worker = in_process_worker(plugin)
    try:
        records = [
            fifo({"type": "raise.async", "payload": "Fatal"}, "first"),
            fifo({"type": "ok.async", "payload": None}, "second"),
            fifo({"type": "ok.async", "payload": None}, "other-group", group="g2"),
        ]
        first, second, other = process_sqs_event(worker, {"Records": records}).outcomes
    finally:
        worker.stop()
    assert first.status is Status.FAILED and first.reason == "Fatal: beyond Exception"
    assert second.status is Status.FAILED
    assert "FIFO group 'g1'" in second.reason and "Lambda timeout" not in second.reason
    assert other.status is Status.SUCCEEDED
    assert plugin.handled == ["other-group"]


def test_a_handler_raising_cancelled_error_itself_fails_only_its_message():
    import asyncio

    RAISED["CancelledError"] = asyncio.CancelledError("raised by the handler")
    plugin = Raising()
    worker = in_process_worker(plugin)
    try:
        records = [record({"type": "raise.async", "payload": "CancelledError"}, "bad"), record({"type": "ok.async"}, "ok")]
        bad, ok = process_sqs_event(worker, {"Records": records}).outcomes
    finally:
        worker.stop()
        del RAISED["CancelledError"]
    assert bad.status is Status.FAILED and bad.reason.startswith("CancelledError"), bad.reason
    assert ok.status is Status.SUCCEEDED


_SERVE_PLUGIN = '''
import os

from host import hookimpl


class Fatal(BaseException):
    pass


def _write(kind, ctx):
    fd = os.open(os.environ["REL_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} 0 {ctx.message_id} {ctx.receive_count}\\n".encode())
    finally:
        os.close(fd)


def interrupt(message, ctx):
    _write("fail", ctx)
    raise KeyboardInterrupt("pressed by a handler")


async def interrupt_async(message, ctx):
    _write("fail", ctx)
    raise KeyboardInterrupt("pressed by an async handler")


async def fatal(message, ctx):
    _write("fail", ctx)
    raise Fatal("not an Exception")


def ok(message, ctx):
    _write("ok", ctx)


@hookimpl
def letsgo_register_messages(register):
    register("iso.interrupt", interrupt)
    register("iso.interrupt_async", interrupt_async)
    register("iso.fatal", fatal)
    register("iso.ok", ok)
'''


def test_serve_survives_handlers_raising_base_exceptions_and_settles_their_batches(tmp_path):
    root = tmp_path / "plugins"
    write_distribution(root, "rel-isolation", {"reliso": "reliso"}, {"reliso": _SERVE_PLUGIN})
    ledger = str(tmp_path / "ledger")
    env = server_env(
        str(root), LETSGO_WORKER_PLUGINS="reliso", REL_LEDGER=ledger,
        LETSGO_WORKER_MAX_RECEIVE_COUNT="2", LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.1",
        LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.2", LETSGO_WORKER_BATCH_WINDOW_SECONDS="0.5",
        LETSGO_WORKER_CONCURRENCY="1",
    )
    server = Server(tmp_path / "queue.db", tmp_path / "server.log", env).start()
    try:
        bad_types = ["iso.interrupt", "iso.interrupt_async", "iso.fatal"]
        messages = [{"type": t, "payload": None} for t in bad_types] + [{"type": "iso.ok", "payload": None}] * 6
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in messages]})
        assert status == 201, reply
        wait_until(lambda: drained(server.url), 60, interval=0.2, message="every message to settle")
        rows = read_ledger(ledger)
        oks = [message_id for kind, _, message_id, _ in rows if kind == "ok"]
        assert len(oks) == 6 and len(set(oks)) == 6, rows  # each healthy one ran once: its batch settled
        letters = dead_letters(server.db)
        assert sorted(json.loads(letter["body"])["type"] for letter in letters) == sorted(bad_types), letters
        reasons = " | ".join(str(letter) for letter in letters)
        for name in ("KeyboardInterrupt: pressed by a handler", "KeyboardInterrupt: pressed by an async handler",
                     "Fatal: not an Exception"):
            assert name in reasons, reasons
        assert "Lambda timeout" not in reasons
        assert server.process.poll() is None and health(server.url)
        assert "Exception in thread" not in server.log()
    finally:
        code = server.stop(30)
    assert code == 0, server.log()[-3000:]


_SIGINT_SCRIPT = '''
import asyncio, os, signal, threading
from host import hookimpl
from host.core.batch import process_sqs_event
from tests.reliability.reliability_kit import in_process_worker, record


class Slow:
    @hookimpl
    def letsgo_register_messages(self, register):
        async def slow(message, ctx):
            await asyncio.sleep(60)
        register("slow", slow)


worker = in_process_worker(Slow())
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
process_sqs_event(worker, {"Records": [record({"type": "slow", "payload": None})]})
print("the batch returned")
'''


def test_a_real_sigint_still_stops_a_batch_on_the_main_thread():
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-c", _SIGINT_SCRIPT], cwd=root, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0, result.stdout
    assert "the batch returned" not in result.stdout
    assert "KeyboardInterrupt" in result.stderr, result.stderr[-2000:]
