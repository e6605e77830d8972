"""`serve --sqs` in a container: SIGTERM drains within LETSGO_WORKER_DRAIN_SECONDS; /livez and /readyz.

Real `serve --sqs` subprocesses against SQS on moto's server, with the ledger plugin.
"""

from __future__ import annotations

import json
import os
import signal
import time

from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from tests.reliability.reliability_kit import Server, install_ledger_plugin, post, read_ledger, server_env

#: Long enough that a message not returned by the drain would not come back during the test.
QUEUE_VISIBILITY = 600


def wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {message}")


def sqs_server(tmp_path, name: str, moto, queue_url: str, ledger: str, **variables: str) -> Server:
    env = server_env(install_ledger_plugin(tmp_path / "plugins"), REL_LEDGER=ledger, **moto.environ(), **variables)
    return Server(tmp_path / f"{name}.db", tmp_path / f"{name}.log", env, "--sqs", queue_url)


def probe(url: str, path: str) -> tuple[int, dict]:
    status, body, _ = post(url + path, b"", method="GET", timeout=30)
    return status, body


def test_sigterm_finishes_what_it_can_within_the_bound_and_returns_the_rest(aws, tmp_path):
    sqs = aws.client("sqs")
    queue_url = create_queue(sqs, VisibilityTimeout=QUEUE_VISIBILITY)["url"]
    ledger = str(tmp_path / "ledger")
    variables = {
        "LETSGO_WORKER_DRAIN_SECONDS": "5", "LETSGO_WORKER_VISIBILITY_TIMEOUT": str(QUEUE_VISIBILITY),
        "REL_HANG_SECONDS": "120",
    }
    first = sqs_server(tmp_path, "first", aws, queue_url, ledger, **variables).start()
    try:
        status, body = probe(first.url, "/livez")
        assert (status, body["status"]) == (200, "ok")
        wait_until(lambda: probe(first.url, "/readyz")[0] == 200, 30, "/readyz to say ready")
        # One message finishes within the bound (2 s of 5), one hangs past it.
        for message in ({"type": "rel.slow", "payload": {"n": 1, "seconds": 2}}, {"type": "rel.hang", "payload": {"n": 2}}):
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
        wait_until(lambda: any(kind == "hang" for kind, *_ in read_ledger(ledger)), 60, "the hanging handler to start")
        os.kill(first.process.pid, signal.SIGTERM)
        # The signal is handled between two steps of the server's loop: a probe sent at once may be answered before.
        def draining() -> bool:
            status, body = probe(first.url, "/readyz")
            return (status, body.get("status")) == (503, "draining")

        wait_until(draining, 4, "/readyz to say draining")  # within the 5 s drain
        assert first.process.wait(60) == 0, first.log()[-3000:]
    finally:
        first.stop()
    log = first.log()
    assert "drained: 1 batch(es) still running after 5s (LETSGO_WORKER_DRAIN_SECONDS) were returned" in log
    assert "Traceback" not in log
    assert sorted((kind, n) for kind, n, _, _ in read_ledger(ledger)) == [("hang", 2), ("ok", 1)]

    # The returned message is visible at once (not after the queue's 600 s): the next worker handles it.
    # (rel.hang blocks on its first run in each process: here, briefly.)
    second = sqs_server(tmp_path, "second", aws, queue_url, ledger, **{**variables, "REL_HANG_SECONDS": "0.5"}).start()
    try:
        wait_until(lambda: len(read_ledger(ledger)) == 3, 60, "the next worker to handle the returned message")
        kind, n, _, receive_count = read_ledger(ledger)[-1]
        assert (kind, n, receive_count) == ("hang", 2, 2)
        wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), 60, "the returned message to be deleted")
    finally:
        second.stop()
    assert second.process.returncode == 0
    assert "drained: every running message finished" in second.log()
    # The message that finished within the bound was deleted: nobody ran it again.
    assert [n for kind, n, _, _ in read_ledger(ledger) if kind == "ok"] == [1]


def queue_counts(sqs, queue_url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_readyz_says_unavailable_while_sqs_cannot_be_reached(aws, tmp_path):
    from moto_server import MotoServer

    own = MotoServer().start()  # a server of this test's own, to stop
    try:
        sqs = own.client("sqs")
        queue_url = create_queue(sqs)["url"]
        server = sqs_server(tmp_path, "ready", own, queue_url, str(tmp_path / "ledger")).start()
        try:
            wait_until(lambda: probe(server.url, "/readyz")[0] == 200, 30, "/readyz to say ready")
            own.stop()
            wait_until(lambda: probe(server.url, "/readyz")[0] == 503, 60, "/readyz to say unavailable")
            status, body = probe(server.url, "/readyz")
            assert body["status"] == "unavailable" and "cannot reach SQS" in body["error"]
            # Alive all the same: restarting the process would not bring SQS back.
            assert probe(server.url, "/livez")[0] == 200
            assert probe(server.url, "/healthz")[0] == 200
        finally:
            server.stop()
    finally:
        own.stop()
