"""``LETSGO_WORKER_HANDLER_TIMEOUT``: a hung handler fails its own message, and holds nobody else.

Past the timeout the message fails with "timed out after N s" and is retried;
an async handler is cancelled; a sync handler's thread, which cannot be stopped,
is replaced in the pool (up to twice ``LETSGO_WORKER_THREADS``) with a warning
naming the handler and the message type. Healthy batch-mates succeed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

from host import hookimpl
from host.config import Settings
from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from tests.reliability.reliability_kit import (
    Server,
    dead_letters,
    drained,
    in_process_worker,
    post,
    read_ledger,
    record,
    server_env,
    wait_until,
    write_distribution,
)

#: How long a "hung" in-process handler blocks: far past the timeouts below, short enough that
#: the tests end (and fail) on a worker that waits for it.
HANG_SECONDS = 8


class Hanging:
    """``hang.async`` and ``hang.sync`` block until released; ``ok.*`` succeed."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.handled: list[str] = []
        self.cancelled: list[str] = []

    async def hang_async(self, message, ctx) -> None:
        try:
            await asyncio.sleep(HANG_SECONDS)
        except asyncio.CancelledError:
            self.cancelled.append(ctx.message_id)
            raise

    def hang_sync(self, message, ctx) -> None:
        self.released.wait(HANG_SECONDS)

    def ok_sync(self, message, ctx) -> None:
        self.handled.append(ctx.message_id)

    async def ok_async(self, message, ctx) -> None:
        await asyncio.sleep(0.01)
        self.handled.append(ctx.message_id)

    @hookimpl
    def letsgo_register_messages(self, register):
        register("hang.async", self.hang_async)
        register("hang.sync", self.hang_sync)
        register("ok.sync", self.ok_sync)
        register("ok.async", self.ok_async)


def batch(*types: str, prefix: str = "") -> list[dict]:
    return [record({"type": type_, "payload": None}, f"{prefix}{type_}-{i}") for i, type_ in enumerate(types)]


def test_the_default_is_the_visibility_timeout_less_ten_percent_and_zero_means_no_limit():
    from host.core.batch import handler_timeout_seconds

    assert handler_timeout_seconds(Settings.from_env({})) == 324
    assert handler_timeout_seconds(Settings.from_env({"LETSGO_WORKER_VISIBILITY_TIMEOUT": "20"})) == 18
    assert handler_timeout_seconds(Settings.from_env({"LETSGO_WORKER_HANDLER_TIMEOUT": "1.5"})) == 1.5
    assert handler_timeout_seconds(Settings.from_env({"LETSGO_WORKER_HANDLER_TIMEOUT": ""})) == 324
    assert handler_timeout_seconds(Settings.from_env({"LETSGO_WORKER_HANDLER_TIMEOUT": "0"})) is None


def test_a_hung_async_handler_times_out_alone_and_is_cancelled():
    plugin = Hanging()
    worker = in_process_worker(plugin, env={"LETSGO_WORKER_HANDLER_TIMEOUT": "0.5"})
    began = time.monotonic()
    try:
        records = batch("hang.async", "ok.async", "ok.sync", "ok.async", "ok.sync")
        hung, *others = process_sqs_event(worker, {"Records": records}).outcomes
    finally:
        plugin.released.set()
        worker.stop()
    assert time.monotonic() - began < HANG_SECONDS - 2  # the batch did not wait for the hung handler
    assert hung.status is Status.FAILED
    assert hung.reason.startswith("timed out after 0.5 s"), hung.reason
    assert hung.plugin is not None and hung.type == "hang.async"
    assert plugin.cancelled == [hung.message_id]
    assert [o.status for o in others] == [Status.SUCCEEDED] * 4
    assert sorted(plugin.handled) == sorted(r["messageId"] for r in records[1:])


def test_hung_sync_handlers_are_replaced_in_the_pool_and_later_sync_messages_run(caplog):
    plugin = Hanging()
    env = {"LETSGO_WORKER_HANDLER_TIMEOUT": "0.5", "LETSGO_WORKER_THREADS": "2"}
    worker = in_process_worker(plugin, env=env)
    began = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="letsgo"):
            first = process_sqs_event(worker, {"Records": batch("hang.sync", "hang.sync", "ok.async", prefix="a-")}).outcomes
            # Both pool threads are still held by the hung handlers: only their replacements can run these.
            second = process_sqs_event(worker, {"Records": batch("ok.sync", "ok.sync", "ok.sync", prefix="b-")}).outcomes
    finally:
        plugin.released.set()
        worker.stop()
    assert time.monotonic() - began < HANG_SECONDS - 2
    assert [o.status for o in first] == [Status.FAILED, Status.FAILED, Status.SUCCEEDED]
    assert all(o.reason.startswith("timed out after 0.5 s") for o in first[:2]), first
    assert [o.status for o in second] == [Status.SUCCEEDED] * 3, second
    warnings = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage() and "thread" in r.getMessage()]
    assert len(warnings) == 2, warnings
    for warning in warnings:
        assert "Hanging.hang_sync" in warning and "(hang.sync)" in warning, warning
        assert "a new thread takes its place" in warning


def test_the_pool_grows_no_further_than_twice_its_size(caplog):
    plugin = Hanging()
    worker = in_process_worker(plugin, env={"LETSGO_WORKER_HANDLER_TIMEOUT": "0.3", "LETSGO_WORKER_THREADS": "1"})
    try:
        with caplog.at_level(logging.WARNING, logger="letsgo"):
            for n in range(3):
                process_sqs_event(worker, {"Records": batch("hang.sync", prefix=f"{n}-")})
    finally:
        plugin.released.set()
        worker.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text.count("a new thread takes its place") == 1, text
    assert "at its cap of 2 threads" in text, text


class Paced:
    """``pace.slow`` takes 0.3 s; ``pace.stubborn`` swallows its cancellation and returns."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.swallowed: list[str] = []

    async def slow(self, message, ctx) -> None:
        await asyncio.sleep(0.3)
        self.handled.append(ctx.message_id)

    async def stubborn(self, message, ctx) -> None:
        try:
            await asyncio.sleep(HANG_SECONDS)
        except asyncio.CancelledError:
            self.swallowed.append(ctx.message_id)  # and returns as if it had succeeded

    @hookimpl
    def letsgo_register_messages(self, register):
        register("pace.slow", self.slow)
        register("pace.stubborn", self.stubborn)


def fifo(record_: dict, group: str) -> dict:
    record_["attributes"]["MessageGroupId"] = group
    record_["eventSourceARN"] += ".fifo"
    return record_


def test_each_record_of_a_fifo_group_gets_the_whole_timeout_from_its_own_start():
    plugin = Paced()
    worker = in_process_worker(plugin, env={"LETSGO_WORKER_HANDLER_TIMEOUT": "0.5"})
    try:
        # Three records of 0.3 s in one group: 0.9 s in all, each well within its own 0.5 s.
        records = [fifo(r, "g") for r in batch("pace.slow", "pace.slow", "pace.slow")]
        outcomes = process_sqs_event(worker, {"Records": records}).outcomes
    finally:
        worker.stop()
    assert [o.status for o in outcomes] == [Status.SUCCEEDED] * 3, outcomes
    assert plugin.handled == [r["messageId"] for r in records]


def test_a_timed_out_record_stops_its_fifo_group_and_other_groups_go_on():
    plugin = Hanging()
    worker = in_process_worker(plugin, env={"LETSGO_WORKER_HANDLER_TIMEOUT": "0.5"})
    began = time.monotonic()
    try:
        records = batch("hang.async", "ok.async", "ok.async", "ok.sync")
        records = [fifo(records[0], "a"), fifo(records[1], "a"), fifo(records[2], "b"), records[3]]
        known: list[tuple[int, Status]] = []
        outcomes = process_sqs_event(
            worker, {"Records": records}, on_outcome=lambda index, _, outcome: known.append((index, outcome.status)),
        ).outcomes
    finally:
        plugin.released.set()
        worker.stop()
    assert time.monotonic() - began < HANG_SECONDS - 2
    assert [o.status for o in outcomes] == [Status.FAILED, Status.FAILED, Status.SUCCEEDED, Status.SUCCEEDED]
    assert outcomes[0].reason.startswith("timed out after 0.5 s"), outcomes[0].reason
    assert outcomes[1].reason.startswith("not run: message " + records[0]["messageId"]), outcomes[1].reason
    assert plugin.cancelled == [records[0]["messageId"]]
    assert sorted(plugin.handled) == sorted(r["messageId"] for r in records[2:])
    assert sorted(index for index, _ in known) == [0, 1, 2, 3]  # each outcome told once


def test_a_handler_that_swallows_its_cancellation_still_times_out_once():
    plugin = Paced()
    worker = in_process_worker(plugin, env={"LETSGO_WORKER_HANDLER_TIMEOUT": "0.3"})
    try:
        records = [fifo(r, "g") for r in batch("pace.stubborn", "pace.slow")]
        known: list[int] = []
        outcomes = process_sqs_event(
            worker, {"Records": records}, on_outcome=lambda index, _, outcome: known.append(index),
        ).outcomes
    finally:
        worker.stop()
    assert outcomes[0].status is Status.FAILED and outcomes[0].reason.startswith("timed out after 0.3 s")
    assert outcomes[1].status is Status.FAILED and outcomes[1].reason.startswith("not run: ")
    assert plugin.swallowed == [records[0]["messageId"]]
    assert plugin.handled == []  # the group did not go on after its timed-out record
    assert sorted(known) == [0, 1]


_SERVE_PLUGIN = '''
import asyncio
import os
import threading
import time

from host import hookimpl

_seen = set()
_lock = threading.Lock()


def _write(kind, ctx):
    fd = os.open(os.environ["REL_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{kind} 0 {ctx.message_id} {ctx.receive_count}\\n".encode())
    finally:
        os.close(fd)


def _first(ctx):
    with _lock:
        first = ctx.message_id not in _seen
        _seen.add(ctx.message_id)
    return first


async def hang_async(message, ctx):
    _write("hang", ctx)
    await asyncio.sleep(600)


def hang_sync(message, ctx):
    if _first(ctx):
        _write("hang", ctx)
        time.sleep(600)
    _write("ok", ctx)


def ok(message, ctx):
    _write("ok", ctx)


@hookimpl
def letsgo_register_messages(register):
    register("iso.hang_async", hang_async)
    register("iso.hang_sync", hang_sync)
    register("iso.ok", ok)
'''


def test_serve_settles_a_batch_with_a_hung_handler_and_keeps_running_sync_messages(tmp_path):
    root = tmp_path / "plugins"
    write_distribution(root, "rel-timeout", {"reltimeout": "reltimeout"}, {"reltimeout": _SERVE_PLUGIN})
    ledger = str(tmp_path / "ledger")
    env = server_env(
        str(root), LETSGO_WORKER_PLUGINS="reltimeout", REL_LEDGER=ledger,
        # No LETSGO_WORKER_HANDLER_TIMEOUT: the default, 90% of the visibility timeout with the heartbeat off.
        LETSGO_WORKER_VISIBILITY_TIMEOUT="3", LETSGO_WORKER_MAX_VISIBILITY_EXTENSION="0",
        LETSGO_WORKER_THREADS="2", LETSGO_WORKER_MAX_RECEIVE_COUNT="2",
        LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.1", LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.2",
    )
    server = Server(tmp_path / "queue.db", tmp_path / "server.log", env).start()
    try:
        # One batch: a hung async handler among four healthy messages.
        first = [{"type": "iso.hang_async", "payload": None}] + [{"type": "iso.ok", "payload": None}] * 4
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in first]})
        assert status == 201, reply
        # Two hung sync handlers: as many as LETSGO_WORKER_THREADS.
        hung = [{"type": "iso.hang_sync", "payload": None}] * 2
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in hung]})
        assert status == 201, reply
        wait_until(lambda: server.log().count("a new thread takes its place") >= 2, 60, interval=0.2,
                   message="both hung sync handlers to time out")
        later = [{"type": "iso.ok", "payload": None}] * 4
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in later]})
        assert status == 201, reply

        wait_until(lambda: drained(server.url), 90, interval=0.3, message="every message to settle")
        rows = read_ledger(ledger)
        oks = [message_id for kind, _, message_id, _ in rows if kind == "ok"]
        # 8 healthy messages once each (never redelivered with a hung batch-mate), 2 sync ones after their retry.
        assert len(oks) == 10 and len(set(oks)) == 10, rows
        letters = dead_letters(server.db)
        assert len(letters) == 1, letters
        assert json.loads(letters[0]["body"])["type"] == "iso.hang_async"
        assert "timed out after 2.7 s" in json.dumps(letters[0]), letters
        log = server.log()
        assert "hang_sync" in log and "(iso.hang_sync)" in log
    finally:
        server.kill()  # the hung sync handlers would hold a graceful stop
