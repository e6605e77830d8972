"""Scenario 6, memory: RSS of ``letsgo-worker serve`` before, during and after a sustained load.

The load is ``POST /`` of OrderNew messages over 16 connections, stored and
handled by the server as they come. "Before" is measured after a short
warm-up load and drain (the first requests import lazily loaded modules and
fill SQLite's page cache: a one-time cost, not growth); "after" once the
backlog is handled and the server has idled. The cold RSS right after
start-up is shown too, and a second, shorter load tells a plateau from a leak.
"""

from __future__ import annotations

import threading
import time

from bench.common import Result, isolated_cwd, order_body
from bench.loadgen import load, wrk_available
from bench.servers import start_serve

#: (warm-up seconds, load seconds) per mode.
SIZES = {"full": (5.0, 60.0), "quick": (2.0, 10.0), "tiny": (0.3, 0.5)}
CONNECTIONS = 16
DRAIN_TIMEOUT = 300.0
#: Idle seconds before reading RSS, per mode.
IDLE = {"full": 3.0, "quick": 2.0, "tiny": 0.2}


def run(mode: str, tool: str | None = None) -> Result:
    """RSS before, at peak during, and after a load; growth from before to after."""
    warmup, seconds = SIZES[mode]
    idle = IDLE[mode]
    tool = tool or ("python" if mode == "tiny" or not wrk_available() else "wrk")
    result = Result(
        "6", "Memory under load", mode,
        f"`letsgo-worker serve` RSS (from /proc): cold after start-up; before = after a {warmup:g} s warm-up load, "
        f"the drain and {idle:g} s idle; peak while {tool} POSTs OrderNew messages over {CONNECTIONS} "
        f"connections for {seconds:g} s (sampled every 0.25 s); after = once the backlog is handled and "
        f"{idle:g} s idle.",
    )
    body = order_body(1).encode()
    with isolated_cwd() as directory, start_serve(directory) as server:
        time.sleep(1.0)
        cold = server.rss_mib()
        load(server.url + "/", body, connections=CONNECTIONS, seconds=warmup, tool=tool)
        if server.wait_drained(DRAIN_TIMEOUT) is None:
            raise RuntimeError("the warm-up backlog was not handled")
        time.sleep(idle)
        before = server.rss_mib()
        samples: list[float] = []
        summary: dict = {}
        loader = threading.Thread(
            target=lambda: summary.update(load(server.url + "/", body, connections=CONNECTIONS, seconds=seconds, tool=tool))
        )
        loader.start()
        while loader.is_alive():
            samples.append(server.rss_mib())
            time.sleep(0.25)
        loader.join()
        if not summary:
            raise RuntimeError("the load generator failed; see the log above")
        drained = server.wait_drained(DRAIN_TIMEOUT)
        if drained is None:
            raise RuntimeError(f"{server.pending()} messages still pending {DRAIN_TIMEOUT:.0f} s after the load")
        samples.append(server.rss_mib())
        time.sleep(idle)
        after = server.rss_mib()
        # A second, shorter load: a plateau (allocator high-water mark, caches) stays put, a leak grows again.
        load(server.url + "/", body, connections=CONNECTIONS, seconds=seconds / 2, tool=tool)
        if server.wait_drained(DRAIN_TIMEOUT) is None:
            raise RuntimeError("the second load's backlog was not handled")
        time.sleep(idle)
        again = server.rss_mib()
        result.measure("RSS cold (after start-up)", "letsgo", cold, "MiB")
        result.measure("RSS before (after warm-up)", "letsgo", before, "MiB")
        result.measure("RSS peak during load", "letsgo", max(samples), "MiB", f"{summary['created']:,} messages stored")
        result.measure("RSS after", "letsgo", after, "MiB")
        result.measure("growth from cold", "letsgo", (after / cold - 1) * 100, "%", "reference, no target")
        result.measure(f"RSS after a second {seconds / 2:g} s load", "letsgo", again, "MiB", "reference, no target")
        result.measure("growth during the second load", "letsgo", (again / after - 1) * 100, "%", "reference, no target")
        result.target("RSS growth under load (before to after)", (after / before - 1) * 100, 10, "<=", "%",
                      before="0.58 %")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
