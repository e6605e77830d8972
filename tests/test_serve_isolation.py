"""``serve`` keeps intake apart from delivery, and ``ctx.enqueue`` reaches the queue being served.

Each test runs a real ``letsgo-worker serve`` subprocess (``Server`` of
test_server.py) with this module's plugin, a distribution found through the
``letsgo_worker`` entry-point group. Its handlers append JSON lines to a log
file, which is how the tests see what ran, and when.

The latency bounds (every ``POST /`` and ``GET /healthz`` answered within
0.5 s while every delivery slot is busy) are the acceptance bounds of "a
blocking handler never stalls ``POST /``", not benchmarks.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)
from test_server import Server

from host.testing import wait_until, write_distribution

PLUGIN = '''
import json, os, threading, time
from host import hookimpl

_lock = threading.Lock()

def _log(kind, **fields):
    line = json.dumps({"kind": kind, "t": time.time(), **fields})
    with _lock, open(os.environ["ISOLATION_LOG"], "a") as log:
        log.write(line + "\\n")

def record(message, ctx):
    _log("record", id=ctx.message_id, payload=message.payload)

def sleeps(message, ctx):
    _log("start", id=ctx.message_id)
    time.sleep(message.payload["seconds"])
    _log("end", id=ctx.message_id)

async def blocks_its_loop(message, ctx):
    _log("start", id=ctx.message_id)
    time.sleep(message.payload["seconds"])  # blocking on purpose: nothing is awaited
    _log("end", id=ctx.message_id)

def spins(message, ctx):
    _log("start", id=ctx.message_id)
    end = time.monotonic() + message.payload["seconds"]
    n = 0
    while time.monotonic() < end:
        for _ in range(10000):  # pure bytecode: the GIL goes only at the interpreter's switch interval
            n = (n * 31 + 7) % 1000003
    _log("end", id=ctx.message_id)

def _enqueue_failed(ctx, error):
    _log("error", id=ctx.message_id, error=f"{type(error).__name__}: {error}")

def first(message, ctx):
    before = time.time()
    try:
        second_id = ctx.enqueue(
            {"type": "chain:second", "payload": {"via": "enqueue", **message.payload}},
            delay_seconds=message.payload.get("delay", 0),
        )
    except Exception as error:
        _enqueue_failed(ctx, error)
        raise
    _log("first", id=ctx.message_id, second_id=second_id, before=before)

async def afirst(message, ctx):
    before = time.time()
    try:
        second_id = await ctx.aenqueue({"type": "chain:second", "payload": {"via": "aenqueue", **message.payload}})
    except Exception as error:
        _enqueue_failed(ctx, error)
        raise
    _log("first", id=ctx.message_id, second_id=second_id, before=before)

def second(message, ctx):
    _log("second", id=ctx.message_id, payload=message.payload, receive_count=ctx.receive_count)

@hookimpl
def letsgo_register_messages(register):
    register("iso:record", record)
    register("iso:sleeps", sleeps)
    register("iso:blocks-its-loop", blocks_its_loop)
    register("iso:spins", spins)
    register("chain:first", first)
    register("chain:afirst", afirst)
    register("chain:second", second)
'''

#: Two delivery slots of one message each, two handler threads: a couple of messages fill them all.
SMALL = {
    "LETSGO_WORKER_CONCURRENCY": "2",
    "LETSGO_WORKER_THREADS": "2",
    "LETSGO_WORKER_BATCH_SIZE": "1",
    # Longer than any handler here: a blocked batch keeps its slot for the whole test.
    "LETSGO_WORKER_VISIBILITY_TIMEOUT": "120",
    "LETSGO_WORKER_MAX_RECEIVE_COUNT": "3",
    "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0.2",
    "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "1",
}
SLOTS = 2

#: The acceptance bound: intake and health answer within this many seconds while delivery is busy.
BOUND_SECONDS = 0.5
#: A request not answered in this long is given up on (the test fails; it does not hang).
GIVE_UP_SECONDS = 5.0


class Home:
    """A temporary directory with this module's plugin installed, its handler log, and the servers started."""

    def __init__(self, path: Path):
        self.path = path
        self.site = path / "site"
        write_distribution(self.site, "serve-isolation-plugin", "serve_isolation_plugin", PLUGIN)
        self.log = path / "handlers.jsonl"
        self.db = path / "queue.db"
        self.servers: list[Server] = []

    def env(self, **extra: str) -> dict[str, str]:
        # Nothing of the developer's own configuration: no LETSGO_* (so neither LETSGO_WORKER_QUEUE_URL
        # nor LETSGO_LOCAL_QUEUE_URL), no PORT, no AWS_* (a test that needs AWS passes moto's).
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT", "AWS_"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            ISOLATION_LOG=str(self.log), LETSGO_WORKER_LOG_LEVEL="INFO",
        )
        env.update(SMALL)
        env.update(extra)
        return env

    def serve(self, *args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(self.path, env if env is not None else self.env(), list(args))
        self.servers.append(server)
        return server.wait_listening()

    def entries(self, kind: str) -> list[dict]:
        if not self.log.exists():
            return []
        return [entry for line in self.log.read_text().splitlines() if (entry := json.loads(line))["kind"] == kind]

    def wait(self, condition, what: str, server: Server, timeout: float = 30):
        """``wait_until(condition)``; on a timeout, say what the handlers logged and what the server said."""
        try:
            return wait_until(condition, timeout=timeout, message=what)
        except AssertionError as error:
            logged = self.log.read_text() if self.log.exists() else "(nothing)"
            raise AssertionError(f"{error}\nhandlers logged:\n{logged}\nserver stderr (end):\n{server.stderr[-4000:]}") from None


@pytest.fixture
def home(tmp_path):
    home = Home(tmp_path)
    yield home
    for server in home.servers:
        server.stop(signal.SIGKILL)


def timed(server: Server, method: str, path: str, body: dict | None = None) -> tuple[float, int | None, object]:
    """One request on a fresh connection: (seconds until the whole answer was read, status, parsed body).

    A request not answered within :data:`GIVE_UP_SECONDS` gives ``(inf, None, error)``.
    """
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GIVE_UP_SECONDS)
    data = None if body is None else json.dumps(body)
    headers = {} if body is None else {"Content-Type": "application/json"}
    started = time.monotonic()
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        elapsed = time.monotonic() - started
        return elapsed, response.status, json.loads(answer) if answer else None
    except (socket.timeout, TimeoutError) as error:
        return float("inf"), None, error
    finally:
        connection.close()


def health(server: Server) -> dict:
    status, _, answer = server.request("GET", "/healthz")
    assert status == 200, answer
    return answer


def assert_intake_answers_while_every_slot_is_busy(home: Home, message_type: str, seconds: float) -> None:
    """Fill every delivery slot with ``message_type`` handlers; then intake and health answer within the bound."""
    server = home.serve("--db", str(home.db))
    # One more than the slots: it waits in the queue behind the busy ones.
    busy = [server.post({"type": message_type, "payload": {"seconds": seconds}})["messageId"] for _ in range(SLOTS + 1)]
    home.wait(
        lambda: len(home.entries("start")) == SLOTS and health(server).get("batches_in_flight") == SLOTS,
        f"{SLOTS} {message_type} handlers running", server,
    )

    posts = []
    for n in range(20):
        elapsed, status, answer = timed(server, "POST", "/", {"type": "iso:record", "payload": n})
        posts.append((round(elapsed, 3), status))
        if elapsed == float("inf"):
            break  # the server is stalled: no point waiting on 20 of them
        assert status == 201 and isinstance(answer, dict) and answer.get("messageId"), (status, answer)
    health_elapsed, health_status, health_answer = timed(server, "GET", "/healthz")

    # Every measurement was taken while the handlers still held every slot.
    assert home.entries("end") == [], "the busy handlers finished before intake was measured"
    assert health_status == 200 and health_answer["batches_in_flight"] == SLOTS, (health_status, health_answer)
    slow = [(n, elapsed) for n, (elapsed, _) in enumerate(posts) if elapsed > BOUND_SECONDS]
    assert len(posts) == 20 and not slow, (
        f"with {SLOTS} {message_type} handlers busy, POST / answers (seconds, status) were {posts}; "
        f"over {BOUND_SECONDS}s: {slow}"
    )
    assert health_elapsed <= BOUND_SECONDS, f"GET /healthz took {health_elapsed:.3f}s with every slot busy"
    # The handlers really were in the slots, the extra one waiting behind them.
    assert {entry["id"] for entry in home.entries("start")} < set(busy)


# -- delivery never stalls intake -----------------------------------------------------------------


def test_blocking_def_handlers_do_not_stall_intake(home):
    assert_intake_answers_while_every_slot_is_busy(home, "iso:sleeps", 30)


def test_async_handlers_blocking_their_event_loop_do_not_stall_intake(home):
    assert_intake_answers_while_every_slot_is_busy(home, "iso:blocks-its-loop", 30)


def test_cpu_bound_handlers_do_not_stall_intake(home):
    assert_intake_answers_while_every_slot_is_busy(home, "iso:spins", 10)


# -- ctx.enqueue under serve ---------------------------------------------------------------------


def second_runs(home: Home) -> dict[str, dict]:
    """The runs of ``chain:second``, by the ``tag`` of their payload."""
    return {entry["payload"]["tag"]: entry for entry in home.entries("second")}


def test_ctx_enqueue_and_aenqueue_reach_the_local_queue(home):
    server = home.serve("--db", str(home.db))
    sync_id = server.post({"type": "chain:first", "payload": {"tag": "sync", "order": 7}})["messageId"]
    async_id = server.post({"type": "chain:afirst", "payload": {"tag": "async", "order": 8}})["messageId"]

    runs = home.wait(
        lambda: (found := second_runs(home)).keys() >= {"sync", "async"} and found,
        "chain:second from both chain:first and chain:afirst", server,
    )
    firsts = {entry["id"]: entry for entry in home.entries("first")}
    assert set(firsts) == {sync_id, async_id}
    assert runs["sync"]["payload"] == {"via": "enqueue", "tag": "sync", "order": 7}
    assert runs["async"]["payload"] == {"via": "aenqueue", "tag": "async", "order": 8}
    # ctx.enqueue returned the id the follow-up was delivered with; it ran once, first time.
    assert runs["sync"]["id"] == firsts[sync_id]["second_id"]
    assert runs["async"]["id"] == firsts[async_id]["second_id"]
    assert [entry["receive_count"] for entry in runs.values()] == [1, 1]
    assert home.entries("error") == []
    home.wait(lambda: health(server)["queue"]["in_flight"] == 0, "the queue settled", server)
    queue = health(server)["queue"]
    assert queue["dead_letters"] == 0, queue
    assert len(home.entries("second")) == 2


def test_a_delayed_ctx_enqueue_arrives_no_earlier_than_its_delay(home):
    server = home.serve("--db", str(home.db))
    server.post({"type": "chain:first", "payload": {"tag": "delayed", "delay": 1}})

    runs = home.wait(lambda: second_runs(home).get("delayed"), "the delayed chain:second", server)
    (first,) = home.entries("first")
    assert runs["payload"] == {"via": "enqueue", "tag": "delayed", "delay": 1}
    assert runs["id"] == first["second_id"]
    waited = runs["t"] - first["before"]
    assert waited >= 1.0, f"enqueued with delay_seconds=1, delivered after {waited:.3f}s"
    assert home.entries("error") == []
    assert health(server)["queue"]["dead_letters"] == 0


# -- ctx.enqueue under serve --sqs ---------------------------------------------------------------


def sqs_counts(sqs, queue_url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_ctx_enqueue_under_serve_sqs_goes_to_the_queue_being_read(aws, home):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=2)
    env = home.env(**aws.environ())
    # What the issue was about: no queue configured for enqueue, only the one given to --sqs.
    assert not {"LETSGO_WORKER_QUEUE_URL", "LETSGO_LOCAL_QUEUE_URL"} & set(env)
    server = home.serve("--sqs", queue["url"], env=env)
    sync_id = sqs.send_message(
        QueueUrl=queue["url"], MessageBody=json.dumps({"type": "chain:first", "payload": {"tag": "sync", "order": 1}})
    )["MessageId"]
    async_id = sqs.send_message(
        QueueUrl=queue["url"], MessageBody=json.dumps({"type": "chain:afirst", "payload": {"tag": "async", "order": 2}})
    )["MessageId"]

    runs = home.wait(
        lambda: (found := second_runs(home)).keys() >= {"sync", "async"} and found,
        "chain:second through the SQS queue", server, timeout=60,
    )
    firsts = {entry["id"]: entry for entry in home.entries("first")}
    assert set(firsts) == {sync_id, async_id}
    assert runs["sync"]["payload"] == {"via": "enqueue", "tag": "sync", "order": 1}
    assert runs["async"]["payload"] == {"via": "aenqueue", "tag": "async", "order": 2}
    # The ids ctx.enqueue returned are SQS message ids of the queue being read.
    assert runs["sync"]["id"] == firsts[sync_id]["second_id"]
    assert runs["async"]["id"] == firsts[async_id]["second_id"]
    assert home.entries("error") == []
    assert "nowhere to enqueue" not in server.stderr
    home.wait(lambda: sqs_counts(sqs, queue["url"]) == (0, 0), "the SQS queue emptied", server)
    assert sqs.receive_message(QueueUrl=queue["dlq_url"], WaitTimeSeconds=0).get("Messages", []) == []
