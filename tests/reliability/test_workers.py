"""``serve --workers 2``: delivery in two processes of their own; ``kill -9`` one of them mid-run.

The killed process is replaced, the messages it had received are delivered
again at once (not after their visibility timeout), and every message answered
201 is handled.
"""

from __future__ import annotations

import collections
import os
import signal

from .reliability_kit import (
    Server,
    dead_letters,
    drained,
    health,
    install_ledger_plugin,
    read_ledger,
    server_env,
    wait_until,
)
from .test_crash import MESSAGES, Client


def test_kill_9_of_a_delivery_process_loses_nothing_and_it_is_replaced(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    db = str(tmp_path / "queue.db")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        # Long enough that a redelivery after the kill can only come from releasing the dead process's claims.
        LETSGO_WORKER_VISIBILITY_TIMEOUT="600",
        LETSGO_WORKER_LOG_LEVEL="WARNING",
    )
    server = Server(db, tmp_path / "server.log", env, "--workers", "2").start()
    client = Client(server.url)
    try:
        wait_until(lambda: len(health(server.url).get("delivery_processes", [])) == 2, 60, message="two delivery processes")
        first, second = health(server.url)["delivery_processes"]
        assert server.process.pid not in (first, second)
        client.start()
        wait_until(lambda: len(read_ledger(ledger)) >= MESSAGES // 4 or client.error, 300, interval=0.01,
                   message="a quarter of the messages handled")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(set(health(server.url)["delivery_processes"]) - {first, second}) == 1, 60,
                   message="the killed delivery process replaced")
        assert second in health(server.url)["delivery_processes"]
        client.join(600)
        assert not client.is_alive() and client.error is None, client.error
        wait_until(lambda: drained(server.url), 300, interval=0.2, message="the queue to drain")
        assert dead_letters(db) == []
    finally:
        client.stop.set()
        server.stop()
    log = server.log()
    assert f"(pid {first}) ended with exit status -9" in log, log[-3000:]
    handled = collections.Counter(n for kind, n, *_ in read_ledger(ledger) if kind == "ok")
    lost = sorted(n for n in client.accepted if handled[n] == 0)
    assert len(client.accepted) == MESSAGES and lost == [], f"{len(lost)} messages answered 201 were never handled"
