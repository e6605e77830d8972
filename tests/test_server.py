"""``letsgo-worker serve`` as a real subprocess: intake, delivery, retries, DLQ, signals, kill -9, scheduler.

The test plugin is a real distribution found by entry-point discovery (a
``.dist-info`` on the subprocess's PYTHONPATH); its handlers append JSON lines
to a log file, which is how the tests see what ran.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from host.testing import wait_until, write_distribution

PLUGIN = '''
import json, os, threading, time
from host import hookimpl
from host.local.routes import Response

_lock = threading.Lock()

def _log(kind, **fields):
    line = json.dumps({"kind": kind, "t": time.time(), **fields})
    with _lock, open(os.environ["LOCAL_TEST_LOG"], "a") as log:
        log.write(line + "\\n")

def record(message, ctx):
    _log("record", id=ctx.message_id, n=ctx.receive_count, payload=message.payload)

def fail(message, ctx):
    _log("fail", id=ctx.message_id, n=ctx.receive_count)
    raise RuntimeError(f"boom on receive {ctx.receive_count}")

def flaky(message, ctx):
    if os.path.exists(os.environ["LOCAL_TEST_FLAG"]):
        _log("fail", id=ctx.message_id, n=ctx.receive_count)
        raise RuntimeError(f"flag is up on receive {ctx.receive_count}")
    _log("record", id=ctx.message_id, n=ctx.receive_count, payload=message.payload)

def slow(message, ctx):
    _log("start", id=ctx.message_id, n=ctx.receive_count)
    time.sleep(message.payload["seconds"])
    _log("record", id=ctx.message_id, n=ctx.receive_count, payload=message.payload)

@hookimpl
def letsgo_register_messages(register):
    register("test:record", record)
    register("test:fail", fail)
    register("test:flaky", flaky)
    register("test:slow", slow)

@hookimpl
def letsgo_register_routes(register):
    def hook(request):
        message_id = request.enqueue({"type": "test:record", "payload": request.json()})
        return Response(202, {"queued": message_id})
    register("POST", "/test/hook", hook)

@hookimpl
def letsgo_scheduled(event, ctx):
    _log("tick", event=event)
'''

#: Fast knobs, so retries and dead-lettering happen in well under a second.
FAST = {
    "LETSGO_WORKER_MAX_RECEIVE_COUNT": "4",
    "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0.2",
    "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "2",
    "LETSGO_WORKER_VISIBILITY_TIMEOUT": "30",
    "LETSGO_WORKER_CONCURRENCY": "4",
}


class Server:
    """One ``letsgo-worker serve`` subprocess on a free port of 127.0.0.1."""

    def __init__(self, home: Path, env: dict[str, str], args: list[str] = (), command: list[str] | None = None):
        self.home = home
        self.stderr_path = home / f"serve-{uuid.uuid4().hex[:8]}.log"
        self._stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen(
            (command or [sys.executable, "-m", "host.cli", "serve"]) + ["--port", "0", *args],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        self.port = None

    def wait_listening(self, timeout: float = 30) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr_path.read_text().splitlines():
                if line.startswith("letsgo-worker listening on http://127.0.0.1:"):
                    self.port = int(line.rsplit(":", 1)[1])
                    return self
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"serve did not start within {timeout}s:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None, headers=None):
        """One request on a fresh connection; returns (status, headers, parsed JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            return _exchange(connection, method, path, body, headers)
        finally:
            connection.close()

    def post(self, body, headers=None) -> dict:
        status, _, answer = self.request("POST", "/", body, headers)
        assert status == 201, answer
        return answer

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        return self.process.returncode


JSON = {"Content-Type": "application/json"}


def _exchange(connection, method, path, body, headers):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    headers = JSON if headers is None else headers
    connection.request(method, path, body=body, headers=headers or {}, encode_chunked=not isinstance(body, (bytes, str, type(None))))
    response = connection.getresponse()
    data = response.read()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode()
    return response.status, response.headers, parsed


class Home:
    """A temporary working directory with the test plugin installed, a log and a queue file."""

    def __init__(self, path: Path):
        self.path = path
        self.site = path / "site"
        write_distribution(self.site, "local-test-plugin", "local_test_plugin", PLUGIN)
        self.log = path / "handlers.jsonl"
        self.flag = path / "flag"
        self.db = path / "queue.db"
        self.servers: list[Server] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            LOCAL_TEST_LOG=str(self.log), LOCAL_TEST_FLAG=str(self.flag), LETSGO_WORKER_LOG_LEVEL="INFO",
        )
        env.update(FAST)
        env.update(extra)
        return env

    def serve(self, *args: str, command: list[str] | None = None, **env: str) -> Server:
        server = Server(self.path, self.env(**env), ["--db", str(self.db), *args], command).wait_listening()
        self.servers.append(server)
        return server

    def entries(self, kind: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        entries = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short by kill -9
                continue
            if kind is None or entry["kind"] == kind:
                entries.append(entry)
        return entries

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "host.cli", *args], cwd=self.path, env=self.env(),
            capture_output=True, text=True, timeout=60,
        )

    def dead_letters(self) -> list[dict]:
        result = self.cli("dlq", "list", "--json", "--db", str(self.db))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)




@pytest.fixture
def home(tmp_path):
    home = Home(tmp_path)
    yield home
    for server in home.servers:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the tests that do not need their own."""
    home = Home(tmp_path_factory.mktemp("shared"))
    server = home.serve()
    yield home, server
    server.stop(signal.SIGKILL)


def recorded_ids(home: Home) -> set[str]:
    return {entry["id"] for entry in home.entries("record")}


def letsgo_client_body(message: dict, message_id: str) -> dict:
    """Exactly what LetsGo's @letsgo/queue enqueueLocal() POSTs."""
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "k3j4h5g6f7d8",
                "body": json.dumps(message),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "letsgo:local:dev",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": "{md5}",
                "eventSource": "letsgo:local",
                "eventSourceARN": "letsgo:local:dev",
                "awsRegion": "us-west-2",
            }
        ]
    }


# -- intake ----------------------------------------------------------------------


def test_letsgo_and_bare_bodies_are_accepted_then_delivered(shared):
    home, server = shared
    # LetsGo's client (Node's http.request(...).end(JSON)) sends no Content-Type.
    answer = server.post(letsgo_client_body({"type": "test:record", "payload": {"from": "letsgo"}}, "x1y2z3"), headers={})
    assert answer["messageIds"] == ["x1y2z3"]
    bare = server.post({"type": "test:record", "payload": {"from": "bare"}})
    [bare_id] = bare["messageIds"]
    assert bare["messageId"] == bare_id
    two = server.post({"Records": [{"body": json.dumps({"type": "test:record", "payload": {"n": n}})} for n in (1, 2)]})
    assert len(set(two["messageIds"])) == 2

    # Several requests on one keep-alive connection.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    kept = [_exchange(connection, "POST", "/", {"type": "test:record", "payload": {"kept": n}}, None) for n in range(3)]
    connection.close()
    assert [status for status, _, _ in kept] == [201, 201, 201]

    expected = {"x1y2z3", bare_id, *two["messageIds"], *(answer["messageId"] for _, _, answer in kept)}
    wait_until(lambda: expected <= recorded_ids(home))
    payloads = {entry["id"]: entry["payload"] for entry in home.entries("record")}
    assert payloads["x1y2z3"] == {"from": "letsgo"} and payloads[bare_id] == {"from": "bare"}


def test_healthz_and_a_plugin_route_that_enqueues(shared):
    home, server = shared
    status, _, health = server.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and "queue" in health
    status, _, answer = server.request("POST", "/test/hook", {"hello": "route"})
    assert status == 202
    wait_until(lambda: answer["queued"] in recorded_ids(home))


BIG = b'{"type": "test:record", "payload": "' + b"x" * (256 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/", b"{not json", 400, "not valid JSON"),
        ("POST", "/", b"", 400, "request body is empty"),
        ("POST", "/", b"[1, 2]", 400, "got an array"),
        ("POST", "/", b"{}", 400, 'neither "Records" nor "type"'),
        ("POST", "/", b'{"Records": {}}', 400, '"Records" must be a non-empty array'),
        ("POST", "/", b'{"Records": []}', 400, "got an empty array"),
        ("POST", "/", b'{"Records": ["text"]}', 400, "Records[0] must be an object"),
        ("POST", "/", b'{"Records": [{"messageId": "a"}]}', 400, "Records[0].body must be a string"),
        ("POST", "/", b'{"Records": [{"body": "{}"}, {"body": {"type": "x"}}]}', 400, "Records[1].body must be a string"),
        ("POST", "/", b'{"type": 42, "payload": {}}', 400, '"type" must be a string'),
        ("POST", "/", b'{"type": "test:record", "delaySeconds": 901}', 400, "delaySeconds must be a number of seconds from 0 to 900"),
        ("POST", "/", b'{"type": "test:record", "delaySeconds": "5"}', 400, "delaySeconds must be"),
        ("POST", "/", BIG, 413, "the limit is 262144"),
        ("GET", "/", None, 405, "use POST"),
        ("DELETE", "/healthz", None, 405, "use GET"),
        ("GET", "/test/hook", None, 405, "use POST"),
        ("GET", "/nowhere", None, 404, "no route for GET /nowhere"),
    ],
)
def test_each_bad_request_gets_its_status_and_says_what_is_wrong(shared, method, path, body, status, says):
    _, server = shared
    got, headers, answer = server.request(method, path, body)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert says in answer["error"], answer
    if status == 405:
        assert headers["Allow"]


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403, "requests from web pages are refused"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        ({}, 415, "only the {\"Records\": [...]} body of LetsGo's queue client"),
    ],
)
def test_what_a_web_page_could_send_is_refused(shared, headers, status, says):
    _, server = shared
    got, _, answer = server.request("POST", "/", {"type": "test:record", "payload": {}}, headers)
    assert got == status and says in answer["error"], answer


def test_a_chunked_body_is_read_and_held_to_the_same_limit(shared):
    home, server = shared
    chunks = [b'{"type": "test:record", ', b'"payload": {"chunked": true}}']
    status, _, answer = server.request("POST", "/", iter(chunks), {"Transfer-Encoding": "chunked", **JSON})
    assert status == 201
    wait_until(lambda: answer["messageId"] in recorded_ids(home))
    # The request's bound is ten 256 KiB messages and their framing (each message is held to 256 KiB by intake).
    status, _, answer = server.request("POST", "/", iter([b"x" * 200_000] * 14), {"Transfer-Encoding": "chunked", **JSON})
    assert status == 413 and "the limit is 2686976 bytes per request" in answer["error"]


def test_messages_that_can_never_succeed_are_accepted_then_dead_lettered_with_the_reason(shared):
    home, server = shared
    unknown = server.post({"type": "test:nobody", "payload": {}})["messageId"]
    invalid_json = server.post({"Records": [{"messageId": "not-json-1", "body": "Test message."}]})["messageId"]
    no_type = server.post({"Records": [{"messageId": "no-type-1", "body": '{"payload": 1}'}]})["messageId"]
    letters = wait_until(lambda: {
        letter["id"]: letter for letter in home.dead_letters() if letter["id"] in {unknown, invalid_json, no_type}
    } if len([1 for letter in home.dead_letters() if letter["id"] in {unknown, invalid_json, no_type}]) == 3 else None)
    assert "unknown message type 'test:nobody'" in letters[unknown]["last_error"]
    assert "not valid JSON" in letters[invalid_json]["last_error"]
    assert letters[invalid_json]["body"] == "Test message."
    assert 'no "type"' in letters[no_type]["last_error"]
    assert all(letter["reason"].startswith("rejected") and letter["receive_count"] == 1 for letter in letters.values())


def test_a_delayed_message_is_not_delivered_early(shared):
    home, server = shared
    before = time.time()
    bare = server.post({"type": "test:record", "payload": {"delayed": 1}, "delaySeconds": 1.5})["messageId"]
    letsgo = letsgo_client_body({"type": "test:record", "payload": {"delayed": 2}}, f"d-{uuid.uuid4().hex[:8]}")
    letsgo["delaySeconds"] = 1
    letsgo_id = server.post(letsgo)["messageId"]
    wait_until(lambda: {bare, letsgo_id} <= recorded_ids(home))
    delivered = {entry["id"]: entry["t"] for entry in home.entries("record")}
    assert delivered[bare] >= before + 1.5
    assert delivered[letsgo_id] >= before + 1


# -- retries and the dead-letter queue ----------------------------------------------


def test_a_failing_message_is_retried_with_growing_delays_then_dead_lettered_and_redrive_brings_it_back(shared):
    home, server = shared
    home.flag.touch()
    message_id = server.post({"type": "test:flaky", "payload": {"retry": True}})["messageId"]

    [letter] = wait_until(lambda: [letter for letter in home.dead_letters() if letter["id"] == message_id])
    attempts = [entry for entry in home.entries("fail") if entry["id"] == message_id]
    assert [entry["n"] for entry in attempts] == [1, 2, 3, 4]  # LETSGO_WORKER_MAX_RECEIVE_COUNT=4
    gaps = [later["t"] - earlier["t"] for earlier, later in zip(attempts, attempts[1:])]
    # Back-off 0.2 * 2**(n-1) with equal jitter: each gap is at least half of a doubling delay.
    for receive_count, gap in enumerate(gaps, start=1):
        assert gap >= 0.2 * 2 ** (receive_count - 1) / 2
    assert letter["receive_count"] == 4
    assert letter["last_error"] == "RuntimeError: flag is up on receive 4"
    assert "maximum" in letter["reason"]

    listed = home.cli("dlq", "list", "--db", str(home.db))
    assert message_id in listed.stdout and "flag is up on receive 4" in listed.stdout and '"retry": true' in listed.stdout

    home.flag.unlink()
    redriven = home.cli("dlq", "redrive", message_id, "--db", str(home.db))
    assert redriven.returncode == 0 and "redrove 1 message" in redriven.stdout
    wait_until(lambda: message_id in recorded_ids(home))
    [success] = [entry for entry in home.entries("record") if entry["id"] == message_id]
    assert success["n"] == 1  # a redriven message starts over
    assert all(letter["id"] != message_id for letter in home.dead_letters())


# -- stopping, crashing, restarting ------------------------------------------------------


def test_sigterm_lets_the_running_batch_finish_and_the_rest_waits_for_the_next_start(home):
    server = home.serve(LETSGO_WORKER_CONCURRENCY="1", LETSGO_WORKER_BATCH_SIZE="1")
    running = server.post({"type": "test:slow", "payload": {"seconds": 1.0}})["messageId"]
    waiting = server.post({"type": "test:record", "payload": {"after": "restart"}, "delaySeconds": 3})["messageId"]
    wait_until(lambda: any(entry["id"] == running for entry in home.entries("start")))
    assert server.stop(signal.SIGTERM) == 0
    assert running in recorded_ids(home)  # finished within the bound, not abandoned
    assert waiting not in recorded_ids(home)
    assert "stopped" in server.stderr

    home.serve()
    wait_until(lambda: waiting in recorded_ids(home))
    assert [entry["n"] for entry in home.entries("record") if entry["id"] == running] == [1]


def test_kill_9_in_the_middle_of_a_run_loses_nothing(home):
    server = home.serve(LETSGO_WORKER_CONCURRENCY="2", LETSGO_WORKER_BATCH_SIZE="3")
    accepted: list[str] = []
    stop_sending = threading.Event()

    def send() -> None:
        # Keeps posting until the server dies; only what got a 201 was promised.
        n = 0
        while not stop_sending.is_set():
            try:
                status, _, answer = server.request("POST", "/", {"type": "test:slow", "payload": {"seconds": 0.05, "n": n}})
            except OSError:
                return
            if status != 201:
                return
            accepted.append(answer["messageId"])
            n += 1

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: len(home.entries("record")) >= 5 and len(accepted) >= 40)
    server.process.kill()  # SIGKILL: no chance to clean up
    server.process.wait()
    stop_sending.set()
    sender.join(30)
    assert len(recorded_ids(home) & set(accepted)) < len(accepted)  # the kill did interrupt work

    home.serve(LETSGO_WORKER_CONCURRENCY="4", LETSGO_WORKER_BATCH_SIZE="10")
    wait_until(lambda: set(accepted) <= recorded_ids(home), timeout=60)
    assert not home.dead_letters()


def test_a_second_server_on_the_same_queue_file_is_refused(home):
    first = home.serve()
    second = Server(home.path, home.env(), ["--db", str(home.db)])
    assert second.process.wait(30) == 2
    assert "another `letsgo-worker serve`" in second.stderr and str(first.process.pid) in second.stderr
    second.stop()


def test_a_port_in_use_is_a_start_up_error(home):
    first = home.serve()
    other = subprocess.run(
        [sys.executable, "-m", "host.cli", "serve", "--port", str(first.port), "--db", str(home.path / "other.db")],
        cwd=home.path, env=home.env(), capture_output=True, text=True, timeout=60,
    )
    assert other.returncode == 2
    assert f"cannot listen on 127.0.0.1:{first.port}" in other.stderr and "--port" in other.stderr


# -- the scheduler ----------------------------------------------------------------------


def test_the_scheduler_sends_the_event_eventbridge_scheduler_sends_and_server_py_runs_serve(home):
    at = (datetime.now(timezone.utc) + timedelta(seconds=3)).replace(microsecond=0)
    expression = f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})"
    server = home.serve(
        command=[sys.executable, str(Path(__file__).resolve().parents[1] / "server.py")],
        LETSGO_WORKER_SCHEDULE=expression, LETSGO_WORKER_SCHEDULE_TIMEZONE="UTC",
    )
    [tick] = wait_until(lambda: home.entries("tick"))
    event = tick["event"]
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == "{}"
    assert event["time"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tick["t"] >= at.timestamp()
    assert "next tick at" in server.stderr


def test_without_a_schedule_the_log_says_how_to_enable_it(shared):
    _, server = shared
    assert "LETSGO_WORKER_SCHEDULE" in server.stderr and "no schedule" in server.stderr


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("cron(0 0 * * 1)", "cron(0 0 ? * 2 *)"),
        ("rate(5 fortnights)", "rate(5 fortnights)"),
        ("every hour", "every hour"),
    ],
)
def test_an_invalid_schedule_stops_start_up_saying_why(home, expression, says):
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "serve", "--port", "0", "--db", str(home.db)],
        cwd=home.path, env=home.env(LETSGO_WORKER_SCHEDULE=expression), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "LETSGO_WORKER_SCHEDULE" in result.stderr and says in result.stderr
    assert "listening" not in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("worker.example.com", False)],
)
def test_only_loopback_addresses_bind_without_a_warning(host, loopback):
    from host.local.runtime import is_loopback

    assert is_loopback(host) is loopback
