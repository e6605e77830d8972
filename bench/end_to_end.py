"""Scenario 5, local end to end: messages posted to ``letsgo-worker serve`` until all are handled.

The real server with the bench plugin found through entry-point discovery; a
no-op handler (``BenchNoop``). Throughput: N messages posted over 16
connections, time from the first post until the queue is empty. Latency: on
an idle worker, one message at a time stamped with its send time; the handler
writes down how long it took to reach it.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from bench.common import Result, isolated_cwd, percentile
from bench.loadgen import load, wrk_available
from bench.servers import start_serve

#: (messages for throughput, messages for latency) per mode.
SIZES = {"full": (20_000, 300), "quick": (5_000, 60), "tiny": (200, 5)}
CONNECTIONS = 16
DRAIN_TIMEOUT = 120.0


def post(connection: http.client.HTTPConnection, message: dict) -> None:
    """POST one message on a keep-alive connection; raise unless it was stored (201)."""
    connection.request("POST", "/", json.dumps(message).encode(), {"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 201:
        raise RuntimeError(f"POST / answered {response.status}: {body[:300]!r}")


def idle_latencies(url: str, latency_file, count: int) -> list[float]:
    """Enqueue-to-handler latencies (ms) of ``count`` messages sent one by one to an idle worker."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for index in range(count):
            post(connection, {"type": "BenchNoop", "payload": {"sent": time.time()}})
            deadline = time.monotonic() + 10
            while (len(latency_file.read_text().splitlines()) if latency_file.exists() else 0) <= index:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"message {index} was not handled within 10 s")
                time.sleep(0.002)
            time.sleep(0.02)  # idle again before the next one
    finally:
        connection.close()
    return [float(line) for line in latency_file.read_text().split()]


def run(mode: str, tool: str | None = None) -> Result:
    """End-to-end throughput and idle enqueue-to-handler latency of the local runtime."""
    messages, latency_count = SIZES[mode]
    tool = tool or ("python" if mode == "tiny" or not wrk_available() else "wrk")
    result = Result(
        "5", "Local end to end", mode,
        f"{messages:,} BenchNoop messages POSTed one per request over {CONNECTIONS} connections ({tool}) to "
        "`letsgo-worker serve` (default settings: batches of 10, 5 batches in flight); time from the first "
        f"POST until the queue is empty. Then {latency_count} messages sent one at a time to the idle worker: "
        "enqueue-to-handler latency measured by the handler from the send time in the payload.",
    )
    with isolated_cwd() as directory:
        latency_file = directory / "latencies.txt"
        with start_serve(directory, bench_plugin=True, BENCH_LATENCY_FILE=str(latency_file)) as server:
            body = json.dumps({"type": "BenchNoop", "payload": {"n": 1}}).encode()
            load(server.url + "/", body, connections=4, count=200, tool=tool)  # warm-up
            if server.wait_drained(DRAIN_TIMEOUT) is None:
                raise RuntimeError("the warm-up messages were not handled")
            started = time.time()
            summary = load(server.url + "/", body, connections=CONNECTIONS, count=messages, tool=tool)
            posted = time.time()
            finished = server.wait_drained(DRAIN_TIMEOUT, poll=0.01)
            if finished is None:
                raise RuntimeError(f"{server.pending()} messages still pending after {DRAIN_TIMEOUT:.0f} s")
            dead = server.health()["queue"]["dead_letters"]
            if dead or summary["other_status"]:
                raise RuntimeError(f"{dead} dead-lettered, {summary['other_status']} not stored: BenchNoop must all succeed")
            handled = summary["created"]
            result.measure("messages handled", "letsgo", handled, "msgs", f"{CONNECTIONS} connections, {tool}")
            result.measure("posting rate", "letsgo", handled / (posted - started), "msg/s", "201 answers per second")
            result.measure("drain after the last POST", "letsgo", (finished - posted) * 1000, "ms")
            rate = result.measure("end to end", "letsgo", handled / (finished - started), "msg/s", "first POST to empty queue")
            result.target("end-to-end throughput", rate, 10_000, ">=", "msg/s", before="3,277 msg/s")
            latencies = idle_latencies(server.url, latency_file, latency_count)
            result.measure("idle enqueue-to-handler p50", "letsgo", percentile(latencies, 50), "ms", f"{len(latencies)} messages")
            result.measure("idle enqueue-to-handler p99", "letsgo", percentile(latencies, 99), "ms")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
