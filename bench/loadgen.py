"""HTTP load generation from outside the server's process: wrk when installed, else Python.

Both report the same keys: ``requests``, ``seconds``, ``requests_per_s``,
``created`` (201 answers), ``other_status``, ``socket_errors``, ``p50_ms``,
``p99_ms`` and ``tool``. The Python generator (``python -m bench.loadgen``)
keeps one persistent connection per thread; it is slower than wrk but needs
nothing installed, so the smoke test and machines without wrk still run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import BENCH, percentile, python_exe


def wrk_available() -> bool:
    """True when the wrk binary is on PATH."""
    return shutil.which("wrk") is not None


def load(url: str, body: bytes, *, connections: int, seconds: float = 0, count: int = 0, tool: str = "auto") -> dict:
    """POST ``body`` to ``url`` from ``connections`` connections for ``seconds`` (or until about ``count`` answers)."""
    use_wrk = tool == "wrk" or (tool == "auto" and wrk_available())
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as file:
        file.write(body)
        body_path = file.name
    try:
        if use_wrk:
            return _wrk(url, body_path, connections, seconds, count)
        return _python(url, body_path, connections, seconds, count)
    finally:
        Path(body_path).unlink(missing_ok=True)


def _wrk(url: str, body_path: str, connections: int, seconds: float, count: int) -> dict:
    threads = min(2, connections)
    duration = seconds if seconds else 300  # count mode: the count ends the run, this only bounds it
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--timeout", "10s",
            "--latency", "-s", str(BENCH / "post.lua"), url, "--", body_path]
    with tempfile.TemporaryDirectory(prefix="wrk-markers-") as markers:
        if count:
            argv += [str(max(1, count // threads)), markers]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if count:
                # Each thread leaves a marker when its share is answered; then end wrk's -d wait early.
                deadline = time.monotonic() + duration + 30
                while len(os.listdir(markers)) < threads and child.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=duration + 60)
        except BaseException:
            child.kill()
            child.wait()
            raise
    line = next((l for l in reversed(out.splitlines()) if l.startswith("{")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({child.returncode}): {err.strip() or out.strip()}")
    raw = json.loads(line)
    elapsed = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"], "seconds": elapsed, "requests_per_s": raw["requests"] / elapsed,
        "created": raw["created"], "other_status": raw["other_status"], "socket_errors": raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000, "tool": "wrk",
    }


def _python(url: str, body_path: str, connections: int, seconds: float, count: int) -> dict:
    argv = [python_exe(), "-m", "bench.loadgen", url, body_path, "--connections", str(connections),
            "--seconds", str(seconds), "--count", str(count)]
    bound = (seconds or 300) + 60
    done = subprocess.run(argv, capture_output=True, text=True, timeout=bound, cwd=BENCH.parent)
    if done.returncode != 0:
        raise RuntimeError(f"Python load generator failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def generate(url: str, body: bytes, connections: int, seconds: float, count: int) -> dict:
    """The Python load generator itself: one thread and one keep-alive connection per connection."""
    parts = urlsplit(url)
    deadline = time.monotonic() + (seconds if seconds else 300)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses = {"created": 0, "other_status": 0, "socket_errors": 0}
    remaining = [count]

    def take() -> bool:
        if time.monotonic() >= deadline:
            return False
        if not count:
            return True
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine: list[float] = []
        created = other = errors = 0
        headers = {"Content-Type": "application/json"}
        while take():
            started = time.perf_counter()
            try:
                connection.request("POST", parts.path or "/", body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                continue
            mine.append((time.perf_counter() - started) * 1000)
            if response.status == 201:
                created += 1
            else:
                other += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses["created"] += created
            statuses["other_status"] += other
            statuses["socket_errors"] += errors

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies), "seconds": elapsed, "requests_per_s": len(latencies) / elapsed if elapsed else 0.0,
        **statuses, "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "tool": "python",
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.loadgen URL BODY_FILE --connections N (--seconds S | --count N)``: print a JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description="POST a body repeatedly; print a JSON summary")
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.seconds and not args.count:
        print("bench.loadgen: give --seconds or --count", file=sys.stderr)
        return 2
    body = Path(args.body_file).read_bytes()
    print(json.dumps(generate(args.url, body, args.connections, args.seconds, args.count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
