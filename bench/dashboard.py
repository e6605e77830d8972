"""Scenario 7: what the dashboard costs. Its overview with a large queue, and intake while a browser polls.

1. The overview (``GET /dashboard``: counts per state, the oldest waiting age,
   outcomes per minute, the page rendered by Jinja2) with 100,000 messages
   waiting and 10,000 dead-lettered: in process (``OpsWeb.handle``, no HTTP) and
   over HTTP through the local server's app on 127.0.0.1, with no delivery
   running so the queue stays as filled. Target: under 100 ms.
2. Intake (``POST /`` of one ``letsgo:contact`` message) at 16 connections, with
   and without a poller that fetches ``/dashboard`` and ``/metrics`` every second
   as a browser tab and a Prometheus scraper would; rounds alternate, medians
   compared. Target: the poller costs intake under 5%.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from pathlib import Path

from bench.common import Result, contact_request, isolated_cwd, median, rotated
from bench.loadgen import load, wrk_available
from bench.servers import start_serve

#: (waiting, dead-lettered, render rounds, intake seconds per run, intake runs per subject) per mode.
SIZES = {
    "full": (100_000, 10_000, 50, 10.0, 5),
    "quick": (100_000, 10_000, 20, 5.0, 3),
    "tiny": (2_000, 200, 3, 1.0, 1),
}
CONNECTIONS = 16
DRAIN_TIMEOUT = 180.0


def fill(path: Path, waiting: int, dead: int) -> None:
    """A queue file with ``waiting`` visible messages, ``dead`` dead letters and an hour of outcomes."""
    from host.local.queue import LocalQueue

    queue = LocalQueue(str(path))
    try:
        body = json.dumps({"type": "shop:order:new", "payload": {"order_id": "ord_0", "total_cents": 1999}})
        for start in range(0, waiting, 5000):
            queue.enqueue_many([(None, body)] * min(5000, waiting - start))
        now = time.time()
        minute = int(now // 60) * 60

        def dead_letters(connection):
            connection.executemany(
                "INSERT INTO dead_letters (id, body, sent_at, receive_count, first_received_at, dead_lettered_at,"
                " reason, last_error, last_received_at, last_traceback) VALUES (?, ?, ?, 5, ?, ?, ?, ?, ?, ?)",
                [(f"dead-{n}", body, now - 3600, now - 3500, now - 60, "failed on each of its 5 receives",
                  "SmtpRefused: 550 mailbox unavailable", now - 60, "Traceback ...") for n in range(dead)],
            )
            connection.executemany(
                "INSERT INTO outcome_minutes (minute, type, outcome, count) VALUES (?, ?, ?, ?)",
                [(minute - 60 * m, f"shop:type{t}", outcome, 100 + m) for m in range(60) for t in range(8)
                 for outcome in ("succeeded", "failed", "rejected")],
            )

        queue.transaction(dead_letters, durable=True)
    finally:
        queue.close()


def overview_times(path: Path, rounds: int) -> tuple[list[float], list[float], dict]:
    """Milliseconds per overview in process and over HTTP, and the counts the page showed."""
    from host.local.http_server import LocalServer
    from host.local.queue import LocalQueue
    from host.local.routes import Headers, Request
    from host.ops.local_inspector import LocalInspector
    from host.ops.web import build

    queue = LocalQueue(str(path))
    server = LocalServer("127.0.0.1", 0, queue=queue)
    server.app.ops = web = build(LocalInspector.of_queue(queue), None, host="127.0.0.1", token=None, read_only=False)
    server.start()
    try:
        request = Request("GET", "/dashboard", {}, Headers([("Host", "127.0.0.1")]))
        web.handle(request)  # the first one imports Jinja2 and compiles the template
        in_process = []
        for _ in range(rounds):
            started = time.perf_counter()
            response = web.handle(request)
            in_process.append((time.perf_counter() - started) * 1000)
            assert response.status == 200, response.body
        over_http = []
        for _ in range(rounds):
            started = time.perf_counter()
            with urllib.request.urlopen(server.url + "/dashboard", timeout=30) as answer:
                answer.read()
            over_http.append((time.perf_counter() - started) * 1000)
        stats = web.inspector.stats()
        return in_process, over_http, {"visible": stats.visible, "dead_letter": stats.dead_letter}
    finally:
        server.stop()
        web.close()
        queue.close()


class Poller:
    """A browser tab on the overview and a Prometheus scraper: ``/dashboard`` and ``/metrics`` every second."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fetched = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in ("/dashboard", "/dashboard/api/overview", "/metrics"):
                try:
                    with urllib.request.urlopen(self.url + path, timeout=10) as answer:
                        answer.read()
                    self.fetched += 1
                except OSError:
                    self.failed += 1
            self._stop.wait(1.0)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(15)


def run(mode: str) -> Result:
    """The overview's render time with a large queue, and the poller's cost to intake."""
    waiting, dead, rounds, seconds, runs = SIZES[mode]
    tool = "python" if mode == "tiny" or not wrk_available() else "wrk"
    result = Result(
        "7", "Dashboard", mode,
        f"Overview: GET /dashboard on a queue file of {waiting:,} visible messages and {dead:,} dead letters with an hour "
        f"of outcomes per minute (8 types), {rounds} rounds each in process (OpsWeb.handle: the counts, the outcomes, the "
        "Jinja2 page) and over HTTP through the local server on 127.0.0.1 (no delivery running); medians and p99. "
        f"Intake: POST / of one letsgo:contact message at {CONNECTIONS} connections with {tool}, {seconds:g} s per run, "
        f"{runs} run(s) with and without a poller fetching /dashboard, /dashboard/api/overview and /metrics every second, "
        "alternating; medians of requests/s.",
    )
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(isolated_cwd())
        path = directory / "large.db"
        fill(path, waiting, dead)
        in_process, over_http, shown = overview_times(path, rounds)
        if shown["visible"] != waiting or shown["dead_letter"] != dead:
            raise RuntimeError(f"the overview counted {shown}, not {waiting} waiting and {dead} dead letters")
        result.measure("overview, in process: p50", "letsgo", median(in_process), "ms")
        result.measure("overview, in process: worst", "letsgo", max(in_process), "ms")
        p50 = result.measure("overview over HTTP: p50", "letsgo", median(over_http), "ms")
        result.measure("overview over HTTP: worst", "letsgo", max(over_http), "ms")
        result.target(f"overview with {waiting:,} waiting and {dead:,} dead-lettered (p50 over HTTP)", p50, 100.0, "<=", "ms")

        server = stack.enter_context(start_serve(directory))
        body = contact_request()
        load(server.url + "/", body, connections=4, seconds=min(1.0, seconds), tool=tool)  # warm-up
        rates: dict[str, list[float]] = {"without poller": [], "with poller": []}
        polled = 0
        for round_ in range(runs):
            for subject in rotated(list(rates), round_):
                if server.wait_drained(DRAIN_TIMEOUT) is None:
                    raise RuntimeError(f"the server did not drain its queue within {DRAIN_TIMEOUT:.0f} s")
                with contextlib.ExitStack() as polling:
                    poller = polling.enter_context(Poller(server.url)) if subject == "with poller" else None
                    summary = load(server.url + "/", body, connections=CONNECTIONS, seconds=seconds, tool=tool)
                if poller is not None:
                    if poller.failed:
                        raise RuntimeError(f"the poller's requests failed {poller.failed} time(s)")
                    polled += poller.fetched
                if summary["other_status"] or not summary["created"]:
                    raise RuntimeError(f"intake answered {summary['other_status']} non-201 responses")
                rates[subject].append(summary["requests_per_s"])
        without, with_poller = median(rates["without poller"]), median(rates["with poller"])
        result.measure(f"{CONNECTIONS} connections: requests/s", "without poller", without, "req/s")
        result.measure(f"{CONNECTIONS} connections: requests/s", "with poller", with_poller, "req/s",
                       f"{polled} poller fetches in all")
        cost = max(0.0, (without - with_poller) / without * 100)
        result.target(f"intake cost of a poller on /dashboard and /metrics every second, {CONNECTIONS} connections",
                      cost, 5.0, "<=", "%")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
