"""Where the local server's time goes: ``letsgo-worker serve`` under load, every thread profiled.

``python -m bench.profile_serve [--seconds 10] [--connections 16]`` runs the
local runtime in this process with a cProfile per thread (HTTP connections,
the queue writer, the delivery loop and its batches), loads it from outside
with wrk (or the Python generator), and prints the merged profile: the
functions with the most own time, and the host's functions by cumulative
time. cProfile slows everything down; read the shares, not the totals.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import threading
import time

from bench.common import isolated_cwd, order_body, tidy_paths
from bench.loadgen import load

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profile_every_thread() -> None:
    """Wrap ``Thread.run`` so that each thread started from now on is profiled."""
    original = threading.Thread.run

    def run(self):
        profiler = cProfile.Profile()
        with _lock:
            _profiles.append(profiler)
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    threading.Thread.run = run


def profile_serve(seconds: float, connections: int, top: int = 25) -> str:
    """Run the server under load for ``seconds``; return the merged profile as text."""
    from host.config import Settings
    from host.local.runtime import Runtime

    _profile_every_thread()
    with isolated_cwd() as directory:
        runtime = Runtime(Settings.from_env({}, port=0, db_path=str(directory / "worker.db")))
        runtime.start()
        try:
            summary = load(runtime.server.url + "/", order_body(1).encode(), connections=connections, seconds=seconds)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                counts = runtime.queue.counts()
                if counts["visible"] + counts["in_flight"] + counts["waiting"] == 0:
                    break
                time.sleep(0.05)
        finally:
            runtime.stop()
    time.sleep(0.5)  # let the connection threads finish and disable their profilers
    with _lock:
        profilers = [p for p in _profiles if p.getstats()]
    out = io.StringIO()
    stats = pstats.Stats(profilers[0], stream=out)
    for profiler in profilers[1:]:
        stats.add(profiler)
    out.write(f"{summary['created']:,} messages stored and handled ({summary['requests_per_s']:,.0f} req/s under cProfile), "
              f"{len(profilers)} threads profiled\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"host/", top)
    return tidy_paths(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print(profile_serve(args.seconds, args.connections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
