"""Load: 64 keep-alive connections posting to ``POST /`` without pause; no error, no loss, flat memory.

The CI run lasts 10 seconds, ``make soak`` 60. The server's resident memory is
sampled from ``/proc`` every half second; the peak of the second half of the run
may not exceed the peak of the first half by more than a margin (a leak of a
few hundred bytes per message would).
"""

from __future__ import annotations

import collections
import http.client
import json
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
    wait_until,
)

CONNECTIONS = 64
SECONDS = scaled(10, 60)


def resident_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Poster(threading.Thread):
    """One connection posting numbered messages until ``stop`` is set."""

    def __init__(self, index: int, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.index = index
        self.port = port
        self.stop = stop
        self.accepted: dict[int, str] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        sequence = 0
        try:
            while not self.stop.is_set():
                n = self.index * 10_000_000 + sequence
                sequence += 1
                body = json.dumps({"type": "rel.count", "payload": {"n": n}})
                try:
                    connection.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    reply = response.read()
                except (OSError, http.client.HTTPException) as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                    continue
                if response.status != 201:
                    self.errors.append(f"HTTP {response.status}: {reply[:200]!r}")
                    continue
                self.accepted[n] = json.loads(reply)["messageId"]
        finally:
            connection.close()


def test_sustained_load_on_post_loses_nothing(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    env = server_env(plugin_root, REL_LEDGER=ledger, LETSGO_WORKER_LOG_LEVEL="WARNING")
    with Server(tmp_path / "queue.db", tmp_path / "server.log", env) as server:
        stop = threading.Event()
        posters = [Poster(i, server.port, stop) for i in range(CONNECTIONS)]
        samples: list[int] = []
        started = time.monotonic()
        for poster in posters:
            poster.start()
        while time.monotonic() - started < SECONDS:
            samples.append(resident_kib(server.process.pid))
            time.sleep(0.5)
        stop.set()
        for poster in posters:
            poster.join(180)
        assert not any(poster.is_alive() for poster in posters)
        wait_until(lambda: drained(server.url), 600, interval=0.5, message="the queue to drain")
        assert dead_letters(server.db) == []
        log = server.log()

    errors = [error for poster in posters for error in poster.errors]
    assert errors == [], f"{len(errors)} errors, e.g. {errors[:5]}"
    accepted = {n: message_id for poster in posters for n, message_id in poster.accepted.items()}
    handled = collections.Counter(n for kind, n, *_ in read_ledger(ledger) if kind == "ok")
    lost = [n for n in accepted if handled[n] == 0]
    assert lost == [], f"{len(lost)} accepted messages were never handled"
    twice = [n for n in accepted if handled[n] > 1]
    assert twice == [], f"{len(twice)} messages were handled more than once without any fault"
    assert "Traceback" not in log, log[-3000:]

    half = len(samples) // 2
    first, second = max(samples[:half]), max(samples[half:])
    assert second <= first * 1.25 + 20 * 1024, f"server memory grew from {first} KiB to {second} KiB under steady load"
    print(
        f"\nload: {CONNECTIONS} connections for {SECONDS}s, {len(accepted)} messages accepted "
        f"({len(accepted) / SECONDS:.0f}/s), 0 errors, 0 lost, RSS peak {first // 1024} MiB first half, "
        f"{second // 1024} MiB second half"
    )
