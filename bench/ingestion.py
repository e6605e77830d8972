"""Scenario 4, local ingestion: ``POST /`` of one message, answered 201 after the durable commit.

The real ``letsgo-worker serve`` (SQLite queue in WAL mode, ``synchronous=FULL``,
its delivery loop handling what arrives, default log level) against the Node
reference (``bench/reference_server.js``: the original LetsGo worker's local
server doing its per-request work, storing nothing), at 1, 16 and 64
connections, with the load generator in its own process (wrk, or the Python
one). The body is what LetsGo's queue client sends: ``{"Records": [...]}``
with one ``letsgo:contact`` message. Subjects alternate; before each run the
real server's backlog is drained so that neither subject pays for the other's
work. Without ``node`` only letsgo is measured and the comparison is reported
as not measured.
"""

from __future__ import annotations

import contextlib
import json
import sys

from bench.common import Result, contact_request, fmt, isolated_cwd, median, order_body, rotated
from bench.loadgen import load, wrk_available
from bench.servers import node_exe, start_reference_server, start_serve

CONNECTIONS = [1, 16, 64]
#: (seconds per run, rounds) per mode.
SIZES = {"full": (5.0, 3), "quick": (2.0, 1), "tiny": (0.3, 1)}
DRAIN_TIMEOUT = 120.0
#: Requests/s before this round of work, per connection count (wrk, a one-record letsgo:contact body).
BEFORE = {1: {"letsgo": 1_400, "node": 15_100}, 16: {"letsgo": 3_400, "node": 14_900}, 64: {"letsgo": 5_500, "node": 16_300}}
NO_NODE = "node is not installed"


def commit_probe(directory, commits: int = 200) -> str:
    """What one durable SQLite commit costs on this disk: WAL with synchronous=FULL, and NORMAL for comparison."""
    import sqlite3
    import time

    lines = [f"SQLite {sqlite3.sqlite_version}, {commits} single-row commits in WAL mode on this disk:"]
    for level in ("FULL", "NORMAL"):
        path = directory / f"probe-{level}.db"
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={level}")
        connection.execute("CREATE TABLE t (body TEXT)")
        started = time.perf_counter()
        for _ in range(commits):
            connection.execute("BEGIN")
            connection.execute("INSERT INTO t VALUES (?)", (order_body(1),))
            connection.execute("COMMIT")
        per_commit = (time.perf_counter() - started) / commits * 1000
        connection.close()
        lines.append(f"  synchronous={level:<6} {per_commit:6.3f} ms per commit ({1000 / per_commit:,.0f} commits/s on one connection)")
    return "\n".join(lines)


def storage_alone(directory, threads: int, seconds: float) -> float:
    """Enqueues/s of the local queue itself from ``threads`` threads: no HTTP, no delivery loop."""
    import threading
    import time

    from host.local.queue import LocalQueue

    queue = LocalQueue(directory / "storage-alone.db")
    body = order_body(1)
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def enqueue(slot: int) -> None:
        while time.monotonic() < deadline:
            queue.enqueue(body)
            counts[slot] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=enqueue, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    queue.close()
    return sum(counts) / elapsed


def run(mode: str, tool: str | None = None) -> Result:
    """Requests/s and latency of durable intake against the Node reference's non-storing intake."""
    seconds, rounds = SIZES[mode]
    tool = tool or ("python" if mode == "tiny" or not wrk_available() else "wrk")
    node = node_exe()
    result = Result(
        "4", "Local ingestion", mode,
        f"POST / of one `letsgo:contact` message in LetsGo's queue-client shape (`{{\"Records\": [...]}}`) for "
        f"{seconds:g} s per run with {tool}, {rounds} run(s) per subject and connection count, alternating; "
        "letsgo answers 201 after the SQLite commit (WAL, synchronous=FULL) while its delivery loop handles the "
        "messages; node is the original LetsGo worker's per-request work on Node's http module "
        "(`bench/reference_server.js`: parse the body and each record's body, call a no-op handler by type, "
        "answer 201), without its per-message console.log and storing nothing. Medians of requests/s and of "
        "each run's p50/p99 (wrk's latency histogram, as `--latency` prints it). \"before\": the figures "
        "measured the same way before this round of work."
        + ("" if node else f" **{NO_NODE}: the Node reference was not run, and the comparison with it is not measured.**"),
    )
    if node is None:
        print(f"bench.ingestion: {NO_NODE}: the Node reference is not run, the comparison with it not measured", file=sys.stderr)
    body = contact_request()
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(isolated_cwd())
        letsgo = stack.enter_context(start_serve(directory))
        subjects = {"letsgo": letsgo}
        if node:
            subjects["node"] = stack.enter_context(start_reference_server(directory))
        for server in subjects.values():  # warm-up: first connections, lazy imports, SQLite cache, V8's JIT
            load(server.url + "/", body, connections=4, seconds=min(1.0, seconds), tool=tool)
        letsgo.wait_drained(DRAIN_TIMEOUT)
        rates: dict[int, dict[str, float]] = {}
        for connections in CONNECTIONS:
            runs: dict[str, list[dict]] = {name: [] for name in subjects}
            for round_ in range(rounds):
                for name in rotated(list(subjects), round_):
                    if letsgo.wait_drained(DRAIN_TIMEOUT) is None:
                        raise RuntimeError(f"the server did not drain its queue within {DRAIN_TIMEOUT:.0f} s")
                    cpu_before = subjects[name].cpu_seconds()
                    summary = load(subjects[name].url + "/", body, connections=connections, seconds=seconds, tool=tool)
                    if name == "letsgo":  # the messages stored are handled too: count that CPU time as well
                        letsgo.wait_drained(DRAIN_TIMEOUT)
                    summary["cpu_ms_per_request"] = (subjects[name].cpu_seconds() - cpu_before) * 1000 / max(1, summary["requests"])
                    if summary["other_status"] or not summary["created"]:
                        raise RuntimeError(f"{name} answered {summary['other_status']} non-201 responses: {json.dumps(summary)}")
                    runs[name].append(summary)
            rates[connections] = {}
            label = f"{connections} connection{'' if connections == 1 else 's'}"
            for name, summaries in runs.items():
                rate = rates[connections][name] = median([s["requests_per_s"] for s in summaries])
                errors = sum(s["socket_errors"] for s in summaries)
                detail = f"before: {fmt(BEFORE[connections][name])}" + (f"; {errors} socket errors" if errors else "")
                result.measure(f"{label}: requests/s", name, rate, "req/s", detail)
                p50 = result.measure(f"{label}: p50", name, median([s["p50_ms"] for s in summaries]), "ms")
                result.measure(f"{label}: p99", name, median([s["p99_ms"] for s in summaries]), "ms")
                result.measure(f"{label}: server CPU per message", name,
                               median([s["cpu_ms_per_request"] for s in summaries]), "ms",
                               "intake and handling" if name == "letsgo" else "intake only")
                if connections == 1 and name == "letsgo":
                    result.target("durable intake p50 latency, 1 connection", p50, 2.0, "<=", "ms",
                                  before="0.90 ms (a bare OrderNew body)")
            if node and connections != 16:
                result.measure(f"{label}: durable vs Node reference", "letsgo", rates[connections]["letsgo"] / rates[connections]["node"],
                               "x", f"before: {before_ratio(connections)}; no target")
        name = "durable intake vs Node reference, 16 connections (aim 1.0x)"
        if node:
            result.target(name, rates[16]["letsgo"] / rates[16]["node"], 0.6, ">=", before=before_ratio(16))
        else:
            result.unmeasured(name, NO_NODE, 0.6, ">=", before=before_ratio(16))
        if letsgo.wait_drained(DRAIN_TIMEOUT) is None:
            raise RuntimeError("the server did not handle every stored message")
        result.measure("16 threads: LocalQueue.enqueue alone, no HTTP, no delivery", "letsgo storage",
                       storage_alone(directory, 16, seconds), "msg/s", "reference, no target")
        result.profile = commit_probe(directory, 200 if mode != "tiny" else 10)
        dead = letsgo.health()["queue"]["dead_letters"]
        if dead:
            raise RuntimeError(f"{dead} messages were dead-lettered; letsgo:contact messages must all succeed")
    return result


def before_ratio(connections: int) -> str:
    """letsgo's requests/s over the Node reference's, before this round of work."""
    return f"{BEFORE[connections]['letsgo'] / BEFORE[connections]['node']:.2f}x"


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
