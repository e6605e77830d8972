"""Crashes: ``kill -9`` the server in the middle of a run; every message answered 201 is handled.

A client thread keeps posting batches as LetsGo's queue client would, retrying a
batch whose answer it did not get (so a message may be stored twice: at-least-once).
The test kills the server at fixed points of the run, checks the SQLite file with
``PRAGMA integrity_check`` while the server is down, and starts it again on the
same file. At the end every message that was answered 201 must be in the ledger.
"""

from __future__ import annotations

import collections
import http.client
import json
import sqlite3
import threading
import time

from .reliability_kit import (
    Server,
    dead_letters,
    drained,
    install_ledger_plugin,
    read_ledger,
    scaled,
    server_env,
    stored_count,
    wait_until,
)

MESSAGES = scaled(5_000, 20_000)
KILLS = scaled(3, 10)
BATCH = 10


def integrity(db: str) -> str:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


class Client(threading.Thread):
    """Posts ``MESSAGES`` messages in batches; a batch is retried until it is answered 201."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.accepted: dict[int, str] = {}
        self.retries = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test
            self.error = error

    def _run(self) -> None:
        connection = None
        for start in range(0, MESSAGES, BATCH):
            numbers = range(start, min(start + BATCH, MESSAGES))
            body = json.dumps({"Records": [
                {"body": json.dumps({"type": "rel.slow", "payload": {"n": n, "seconds": 0.002}})} for n in numbers
            ]})
            while not self.stop.is_set():
                try:
                    if connection is None:
                        host, port = self.url.removeprefix("http://").split(":")
                        connection = http.client.HTTPConnection(host, int(port), timeout=30)
                    connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    reply = json.loads(response.read())
                    assert response.status == 201, reply
                    with self.lock:
                        for n, message_id in zip(numbers, reply["messageIds"]):
                            self.accepted[n] = message_id
                    break
                except (OSError, http.client.HTTPException):
                    # The server is down (killed): try again, on the new port once it is back.
                    self.retries += 1
                    if connection is not None:
                        connection.close()
                        connection = None
                    time.sleep(0.05)


def test_kill_9_during_a_run_loses_no_accepted_message(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    db = str(tmp_path / "queue.db")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        LETSGO_WORKER_VISIBILITY_TIMEOUT="30",
        LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.01",
        LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.1",
        LETSGO_WORKER_LOG_LEVEL="WARNING",
    )
    server = Server(db, tmp_path / "server.log", env).start()
    client = Client(server.url)
    client.start()
    kills = []
    try:
        for kill in range(1, KILLS + 1):
            mark = MESSAGES * kill // (KILLS + 1)
            wait_until(lambda: client.count() >= mark or client.error, 600, interval=0.01, message=f"{mark} messages accepted")
            assert client.error is None, client.error
            handled = len({n for kind, n, *_ in read_ledger(ledger) if kind == "ok"})
            server.kill()
            kills.append({"accepted": client.count(), "handled": handled})
            assert integrity(db) == "ok", f"integrity check after kill {kill}"
            server = Server(db, tmp_path / "server.log", env).start()
            client.url = server.url
        client.join(600)
        assert not client.is_alive() and client.error is None, client.error
        wait_until(lambda: drained(server.url), 600, interval=0.5, message="the queue to drain after the last restart")
        assert dead_letters(db) == []
    finally:
        client.stop.set()
        server.stop()
    assert integrity(db) == "ok"

    rows = read_ledger(ledger)
    handled = collections.Counter(n for kind, n, *_ in rows if kind == "ok")
    accepted = client.accepted
    assert len(accepted) == MESSAGES
    lost = sorted(n for n in accepted if handled[n] == 0)
    assert lost == [], f"{len(lost)} messages answered 201 were never handled, e.g. {lost[:10]}"
    again = sum(count - 1 for count in handled.values() if count > 1)
    stored_twice = stored_count(db) - MESSAGES
    print(
        f"\ncrash: {MESSAGES} messages, {KILLS} kill -9 at {kills}, {client.retries} client retries, "
        f"{stored_twice} stored twice by a retried request, {again} handled more than once, 0 lost, integrity ok"
    )
