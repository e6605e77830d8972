"""SQS unreachable for 10 s under `serve --sqs`: clear logs, back-off, recovery, nothing lost.

The worker (a real `serve --sqs` subprocess with the ledger plugin) reaches moto's
server through a TCP forwarder on a port of its own. Stopping the forwarder is the
outage: the port refuses connections and open ones are cut, as when SQS's endpoint is
gone; moto keeps its queue meanwhile, as SQS keeps its messages through an outage of
its endpoint, and producers keep sending to it. After 10 s the forwarder listens
again on the same port.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from urllib.parse import urlsplit

from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from .reliability_kit import Server, install_ledger_plugin, read_ledger, server_env

OUTAGE_SECONDS = 10
#: Messages sent before, during and after the outage.
PER_PHASE = 20


class Forwarder:
    """A TCP forwarder from 127.0.0.1:``port`` to ``target``; ``stop()`` closes the port and cuts every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Forwarder:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile: this connection is cut too
                    client.close()
                    upstream.close()
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {message}")


def test_sqs_unreachable_for_10_seconds_loses_nothing(aws, tmp_path):
    sqs = aws.client("sqs")
    queue_url = create_queue(sqs, VisibilityTimeout=10)["url"]
    moto = urlsplit(aws.url)
    forwarder = Forwarder((moto.hostname, moto.port)).start()
    ledger = str(tmp_path / "ledger")
    env = server_env(
        install_ledger_plugin(tmp_path / "plugins"), REL_LEDGER=ledger, **{**aws.environ(), "AWS_ENDPOINT_URL": forwarder.url},
        LETSGO_WORKER_VISIBILITY_TIMEOUT="10",
        # Fail fast on a refused connection: each receive is one attempt, so the worker's own back-off shows.
        AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard",
    )
    server = Server(tmp_path / "unused.db", tmp_path / "server.log", env, "--sqs", queue_url)

    def send(n: int) -> None:
        # Producers reach SQS directly: the worker's way to it is what fails.
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"type": "rel.count", "payload": {"n": n}}))

    def handled() -> set[int]:
        return {n for kind, n, _, _ in read_ledger(ledger) if kind == "ok"}

    try:
        server.start()
        for n in range(PER_PHASE):
            send(n)
        wait_until(lambda: len(handled()) >= 5, 60, "the worker to handle the first messages")
        forwarder.stop()
        for n in range(PER_PHASE, 2 * PER_PHASE):
            send(n)
            time.sleep(OUTAGE_SECONDS / PER_PHASE)
        forwarder.start()  # back, on the same port
        for n in range(2 * PER_PHASE, 3 * PER_PHASE):
            send(n)
        wait_until(lambda: handled() == set(range(3 * PER_PHASE)), 120, "every message to be handled")
        wait_until(lambda: not server.log().count("SQS is reachable again") == 0, 30, "the recovery line")
    finally:
        server.stop()
        forwarder.stop()
    log = server.log()
    assert server.process.returncode == 0, log[-3000:]
    # One line when SQS could not be reached, one when it could again; no traceback.
    assert log.count("cannot reach SQS") == 1, log[-5000:]
    assert log.count("SQS is reachable again") == 1, log[-5000:]
    assert "Traceback" not in log
    # Back-off: a handful of failed calls over the 10 s (receives 1, 2, 4, 8 s apart, and the
    # settlements of the messages then running), not one per turn of a busy loop.
    failed_calls = int(re.search(r"SQS is reachable again, after [0-9.]+s and (\d+) failed call", log).group(1))
    assert 2 <= failed_calls <= 15, log[-5000:]
