"""``GET /metrics``: Prometheus text, parsed with prometheus-client's own parser.

First the pieces in this process (the counting recorder, the queue's gauges read
from a real local queue through its inspector, the response), then a real
``serve`` subprocess, in one process and with ``--workers 2``, handling messages
that succeed, fail until dead-lettered, and are rejected.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from host import hookimpl
from host.testing import run_batch, wait_until, write_distribution
from moto_server import aws, moto_server  # noqa: F401  (fixtures)

WAIT = 60  # seconds a test waits for something that should happen soon; never reached when correct


def parse(body: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a ``/metrics`` body: (sample name, sorted labels) -> value."""
    text = body.decode() if isinstance(body, bytes) else body
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ok(message, ctx):
    pass


def boom(message, ctx):
    raise RuntimeError("the warehouse is on fire")


class Types:
    @hookimpl
    def letsgo_register_messages(self, register):
        register("metrics:ok", ok)
        register("metrics:boom", boom)


# -------------------------------------------------------------------------
# In this process
# -------------------------------------------------------------------------


def test_the_recorder_counts_every_outcome_and_duration(make_worker):
    from host.ops.metrics import metrics_response

    worker = make_worker(plugins=[Types()], env={"LETSGO_WORKER_METRICS": "prometheus", "LETSGO_WORKER_PLUGINS": ""})
    assert "letsgo_builtins.metrics" in dict(worker.pm.list_name_plugin())
    before = parse(metrics_response(None)[2])
    # Every registered type is there from the start, at zero.
    assert ("letsgo_messages_total", (("outcome", "failed"), ("type", "metrics:ok"))) in before
    run_batch(
        worker, {"type": "metrics:ok", "payload": {}}, {"type": "metrics:ok", "payload": {}},
        {"type": "metrics:boom", "payload": {}}, {"type": "made-up", "payload": {}}, "{not json",
    )
    status, headers, body = metrics_response(None)
    assert status == 200
    assert dict(headers)["Content-Type"].startswith("text/plain; version=")
    after = parse(body)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 2
    assert delta("letsgo_messages_total", type="metrics:boom", outcome="failed") == 1
    assert delta("letsgo_messages_total", type="(unknown)", outcome="rejected") == 2
    assert delta("letsgo_handler_duration_seconds_count", type="metrics:ok") == 2
    assert delta("letsgo_handler_duration_seconds_count", type="metrics:boom") == 1
    assert delta("letsgo_handler_duration_seconds_count", type="(unknown)") == 0
    assert value(after, "letsgo_handler_duration_seconds_bucket", type="metrics:ok", le="+Inf") >= 2
    # No made-up type became a series of its own.
    assert not [key for key in after if ("type", "made-up") in key[1]]


def test_without_the_setting_nothing_is_counted(make_worker):
    worker = make_worker(plugins=[Types()], env={"LETSGO_WORKER_PLUGINS": ""})
    assert "letsgo_builtins.metrics" not in dict(worker.pm.list_name_plugin())
    assert worker.pm.hook.letsgo_message_done.get_hookimpls() == []


def test_the_queue_gauges_come_from_the_inspector_at_scrape_time(tmp_path):
    from host.local.queue import LocalQueue
    from host.ops.local_inspector import LocalInspector
    from host.ops.metrics import metrics_response

    queue = LocalQueue(str(tmp_path / "queue.db"))
    inspector = LocalInspector(queue.path)
    try:
        queue.enqueue('{"type": "a", "payload": 1}')
        queue.enqueue('{"type": "a", "payload": 2}')
        queue.enqueue('{"type": "a", "payload": 3}', delay_seconds=600)
        samples = parse(metrics_response(inspector)[2])
        assert value(samples, "letsgo_queue_up") == 1
        assert value(samples, "letsgo_queue_messages", state="visible") == 2
        assert value(samples, "letsgo_queue_messages", state="delayed") == 1
        assert value(samples, "letsgo_queue_messages", state="in_flight") == 0
        assert value(samples, "letsgo_queue_messages", state="dead_letter") == 0
        assert value(samples, "letsgo_queue_oldest_age_seconds") >= 0
        received = queue.receive(1, 0)
        assert len(received) == 1
        samples = parse(metrics_response(inspector)[2])  # read again: nothing is cached
        assert value(samples, "letsgo_queue_messages", state="visible") == 1
        assert value(samples, "letsgo_queue_messages", state="in_flight") == 1
    finally:
        inspector.close()
        queue.close()


def test_a_queue_that_cannot_be_read_is_a_zero_not_an_error():
    from host.ops.metrics import metrics_response

    class Unreachable:
        name = "https://sqs.example/unreachable"

        def stats(self):
            raise ConnectionError("could not connect to the endpoint URL")

    status, _, body = metrics_response(Unreachable())
    assert status == 200
    samples = parse(body)
    assert value(samples, "letsgo_queue_up") == 0
    assert not [key for key in samples if key[0] == "letsgo_queue_messages"]
    assert "letsgo_messages_total" in body.decode() or "letsgo_messages " in body.decode()


def test_openmetrics_when_asked():
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    from host.ops.metrics import metrics_response

    _, headers, body = metrics_response(None, accept="application/openmetrics-text; version=1.0.0")
    assert dict(headers)["Content-Type"].startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(body.decode())}
    assert {"letsgo_messages", "letsgo_handler_duration_seconds"} <= names


def test_prepare_serve_metrics_turns_counting_on_and_readies_the_folder_for_workers(tmp_path):
    from host.config import Settings
    from host.ops import metrics

    db = tmp_path / "queue.db"
    folder = Path(metrics.multiprocess_folder(str(db)))
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale counts of an earlier run")
    saved = os.environ.get(metrics.MULTIPROCESS_VARIABLE)
    try:
        single = metrics.prepare_serve_metrics(Settings.from_env({}, db_path=str(db)))
        assert "prometheus" in single.metrics
        assert (folder / "counter_999999.db").exists()  # one process: the folder is not used
        several = metrics.prepare_serve_metrics(Settings.from_env({}, db_path=str(db), delivery_processes=2))
        assert "prometheus" in several.metrics
        assert folder.is_dir() and list(folder.iterdir()) == []
        assert os.environ[metrics.MULTIPROCESS_VARIABLE] == str(folder)
    finally:
        metrics._multiprocess_folder = None
        if saved is None:
            os.environ.pop(metrics.MULTIPROCESS_VARIABLE, None)
        else:
            os.environ[metrics.MULTIPROCESS_VARIABLE] = saved


# -------------------------------------------------------------------------
# A real serve
# -------------------------------------------------------------------------

PLUGIN = '''
from host import hookimpl

def ok(message, ctx):
    pass

def boom(message, ctx):
    raise RuntimeError("the warehouse is on fire")

@hookimpl
def letsgo_register_messages(register):
    register("metrics:ok", ok)
    register("metrics:boom", boom)
'''


class Serve:
    """``letsgo-worker serve`` on a free port of 127.0.0.1, stopped by PID after the test."""

    def __init__(self, home: Path, *args: str, **extra_env: str) -> None:
        site = home / "site"
        write_distribution(site, "metrics-test-plugin", "metrics_test_plugin", PLUGIN)
        env = {key: val for key, val in os.environ.items() if not key.startswith(("LETSGO_", "PORT", "PROMETHEUS"))}
        env.update(
            PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            LETSGO_WORKER_MAX_RECEIVE_COUNT="2", LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.1",
            LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.5", LETSGO_WORKER_LOG_LEVEL="INFO", **extra_env,
        )
        self.db = home / "queue.db"
        self.log = home / f"serve-{uuid.uuid4().hex[:8]}.log"
        self._stderr = open(self.log, "w")
        queue = list(args) if "--sqs" in args else ["--db", str(self.db), *args]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "serve", "--port", "0", *queue],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        self.port = wait_until(self._port, WAIT, message=f"serve to listen (log: {self.log})")

    def _port(self) -> int | None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log.read_text()}")
        for line in self.log.read_text().splitlines():
            if line.startswith("letsgo-worker listening on http://127.0.0.1:"):
                return int(line.rsplit(":", 1)[1])
        return None

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()  # headers: case-insensitive
        finally:
            connection.close()

    def send(self, body: str) -> None:
        status, _, answer = self.request("POST", "/", body)
        assert status == 201, answer

    def metrics(self) -> dict:
        status, headers, body = self.request("GET", "/metrics")
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain; version=")
        return parse(body)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._stderr.close()


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(*args: str, **extra_env: str) -> Serve:
        server = Serve(tmp_path, *args, **extra_env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.parametrize("args", [(), ("--workers", "2")], ids=["one process", "two delivery processes"])
def test_serve_exposes_counts_durations_and_the_queue(serve, args):
    server = serve(*args)
    for _ in range(5):
        server.send('{"type": "metrics:ok", "payload": {}}')
    server.send('{"type": "metrics:boom", "payload": {}}')
    server.send('{"type": "letsgo:contact", "payload": {"email": "not a contact"}}')
    server.send('{"type": "nobody:handles-this", "payload": {}}')
    server.send('{"type": "metrics:ok", "payload": {}, "delaySeconds": 900}')

    def settled():
        samples = server.metrics()
        done = (
            value(samples, "letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 5
            and value(samples, "letsgo_messages_total", type="metrics:boom", outcome="failed") == 2
            and value(samples, "letsgo_queue_messages", state="dead_letter") == 3
            # Counted as soon as known, settled within moments: wait for the queue to catch up.
            and value(samples, "letsgo_queue_messages", state="in_flight") == 0
            and value(samples, "letsgo_queue_messages", state="visible") == 0
            # A message's duration is observed just after its count: a scrape may fall in between.
            and value(samples, "letsgo_handler_duration_seconds_count", type="metrics:ok") == 5
            and value(samples, "letsgo_handler_duration_seconds_count", type="metrics:boom") == 2
        )
        return samples if done else None

    samples = wait_until(settled, WAIT, message="the messages to be handled and dead-lettered")
    # Failed on each of its 2 receives, then dead-lettered; the rejected ones once each.
    assert value(samples, "letsgo_messages_total", type="letsgo:contact", outcome="rejected") == 1
    assert value(samples, "letsgo_messages_total", type="(unknown)", outcome="rejected") == 1
    assert value(samples, "letsgo_messages_total", type="metrics:ok", outcome="failed") == 0
    assert ("letsgo_messages_total", (("outcome", "rejected"), ("type", "metrics:ok"))) in samples  # from zero
    assert value(samples, "letsgo_handler_duration_seconds_count", type="metrics:ok") == 5
    assert value(samples, "letsgo_handler_duration_seconds_count", type="metrics:boom") == 2
    assert value(samples, "letsgo_handler_duration_seconds_bucket", type="metrics:ok", le="+Inf") == 5
    assert value(samples, "letsgo_queue_messages", state="delayed") == 1
    assert value(samples, "letsgo_queue_messages", state="visible") == 0
    assert value(samples, "letsgo_queue_messages", state="in_flight") == 0
    assert value(samples, "letsgo_queue_oldest_age_seconds") >= 0
    assert value(samples, "letsgo_queue_up") == 1
    folder = server.db.parent / "queue.db.metrics"
    if args:  # the delivery processes' counts are in prometheus-client's files beside the queue
        # (one file per process that counted: with few messages, one delivery process may have taken them all)
        assert len({path.name.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}) >= 1
    else:
        assert not folder.exists()


def test_a_metrics_folder_that_cannot_be_made_stops_start_up_saying_why(tmp_path):
    from host.config import Settings
    from host.errors import StartupError
    from host.ops import metrics

    (tmp_path / "sub").write_text("a file where the queue's folder should be")
    settings = Settings.from_env({}, db_path=str(tmp_path / "sub" / "queue.db"), delivery_processes=2)
    with pytest.raises(StartupError, match=r"queue\.db\.metrics, where serve --workers keeps"):
        metrics.prepare_serve_metrics(settings)
    assert metrics._multiprocess_folder is None


def test_with_workers_counts_survive_a_restart_of_serve_only_as_a_fresh_start(serve, tmp_path):
    """The multiprocess folder is emptied at each start: a new serve counts from zero, not from the last run."""
    first = serve("--workers", "2")
    first.send('{"type": "metrics:ok", "payload": {}}')
    wait_until(lambda: value(first.metrics(), "letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 1,
               WAIT, message="the first message to be counted")
    first.stop()
    second = serve("--workers", "2")
    samples = second.metrics()
    assert value(samples, "letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 0
    second.send('{"type": "metrics:ok", "payload": {}}')
    wait_until(lambda: value(second.metrics(), "letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 1,
               WAIT, message="the second run's message to be counted")


def test_serve_sqs_counts_what_it_delivers_from_sqs(aws, serve):
    """Under ``serve --sqs`` the same counters count messages read from SQS (moto's server here)."""
    from moto_server import create_queue

    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=2)
    for body in ('{"type": "metrics:ok", "payload": {}}', '{"type": "metrics:ok", "payload": {}}',
                 '{"type": "metrics:boom", "payload": {}}', '{"type": "nobody:handles-this", "payload": {}}'):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=body)
    server = serve("--sqs", queue["url"], **aws.environ())

    def counted():
        samples = server.metrics()
        done = (
            value(samples, "letsgo_messages_total", type="metrics:ok", outcome="succeeded") == 2
            and value(samples, "letsgo_messages_total", type="metrics:boom", outcome="failed") == 2
            # SQS backs a rejected message off like a failure and its redrive policy dead-letters it.
            and value(samples, "letsgo_messages_total", type="(unknown)", outcome="rejected") >= 1
        )
        return samples if done else None

    samples = wait_until(counted, WAIT, message="the SQS messages to be counted")
    assert value(samples, "letsgo_handler_duration_seconds_count", type="metrics:ok") == 2
    server.stop(signal.SIGKILL)  # its 10 s long poll would hold a graceful stop
