"""Scenario 4, local ingestion: ``POST /`` of one message, answered 201 after the durable commit.

The real ``letsgo-worker serve`` (SQLite queue in WAL mode, ``synchronous=FULL``,
its delivery loop handling what arrives, default log level) against the same
HTTP stack answering 201 without storing (``bench/null_server.py``), at 1, 16
and 64 connections, with the load generator in its own process (wrk, or the
Python one). Subjects alternate; before each run the real server's backlog is
drained so that neither subject pays for the other's work.
"""

from __future__ import annotations

import json

from bench.common import Result, isolated_cwd, median, order_body, rotated
from bench.loadgen import load, wrk_available
from bench.servers import start_null_server, start_serve

CONNECTIONS = [1, 16, 64]
#: (seconds per run, rounds) per mode.
SIZES = {"full": (5.0, 3), "quick": (2.0, 1), "tiny": (0.3, 1)}
DRAIN_TIMEOUT = 120.0


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
    """Requests/s and latency of durable intake against non-storing intake."""
    seconds, rounds = SIZES[mode]
    tool = tool or ("python" if mode == "tiny" or not wrk_available() else "wrk")
    result = Result(
        "4", "Local ingestion", mode,
        f"POST / of one OrderNew message for {seconds:g} s per run with {tool}, {rounds} run(s) per subject and "
        "connection count, alternating; letsgo answers 201 after the SQLite commit (WAL, synchronous=FULL) while "
        "its delivery loop handles the messages; null is the same http.server stack answering 201 without "
        "storing. Medians of requests/s and of each run's p50/p99.",
    )
    body = order_body(1).encode()
    with isolated_cwd() as directory, start_serve(directory) as letsgo, start_null_server(directory) as null:
        subjects = {"letsgo": letsgo, "null": null}
        for server in subjects.values():  # warm-up: first connections, lazy imports, SQLite cache
            load(server.url + "/", body, connections=4, seconds=min(1.0, seconds), tool=tool)
        letsgo.wait_drained(DRAIN_TIMEOUT)
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
            rates = {}
            for name, summaries in runs.items():
                rates[name] = median([s["requests_per_s"] for s in summaries])
                errors = sum(s["socket_errors"] for s in summaries)
                detail = f"{connections} conn" + (f", {errors} socket errors" if errors else "")
                result.measure(f"{connections} connections: requests/s", name, rates[name], "req/s", detail)
                result.measure(f"{connections} connections: p50", name, median([s["p50_ms"] for s in summaries]), "ms")
                result.measure(f"{connections} connections: p99", name, median([s["p99_ms"] for s in summaries]), "ms")
                result.measure(f"{connections} connections: server CPU per message", name,
                               median([s["cpu_ms_per_request"] for s in summaries]), "ms",
                               "intake and handling" if name == "letsgo" else "intake only")
            ratio = rates["letsgo"] / rates["null"]
            if connections == 16:
                result.target("durable intake vs non-storing, 16 connections", ratio, 0.6, ">=")
            else:
                result.measure(f"{connections} connections: durable vs non-storing", "letsgo", ratio, "x", "reference, no target")
        if letsgo.wait_drained(DRAIN_TIMEOUT) is None:
            raise RuntimeError("the server did not handle every stored message")
        result.measure("16 threads: LocalQueue.enqueue alone, no HTTP, no delivery", "letsgo storage",
                       storage_alone(directory, 16, seconds), "msg/s", "reference, no target")
        result.profile = commit_probe(directory, 200 if mode != "tiny" else 10)
        dead = letsgo.health()["queue"]["dead_letters"]
        if dead:
            raise RuntimeError(f"{dead} messages were dead-lettered; OrderNew messages must all succeed")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
