"""Servers under load: the real ``letsgo-worker serve`` and the Node reference (``bench/reference_server.js``).

Each runs in its own process (the load generator is outside both), binds port
0 on 127.0.0.1, announces ``listening on http://...`` in its output, and is
stopped with SIGTERM (SIGKILL if it does not stop in time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.common import BENCH, ROOT, clean_environ, python_exe, rss_kib

LISTENING = re.compile(r"listening on (http://[0-9.]+:[0-9]+)")

#: A distribution that exists only on PYTHONPATH, so that ``serve`` finds the
#: bench plugin through real entry-point discovery without installing anything.
BENCH_DIST = {
    "METADATA": "Metadata-Version: 2.1\nName: letsgo-bench\nVersion: 0.0.0\nSummary: bench-only message types\n",
    "entry_points.txt": "[letsgo_worker]\nletsgo_bench = bench.bench_plugin\n",
}


def bench_plugin_path(directory: Path) -> Path:
    """Write the bench plugin's distribution metadata under ``directory``; return the path to put on PYTHONPATH."""
    dist = directory / "bench-plugin" / "letsgo_bench-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    for name, text in BENCH_DIST.items():
        (dist / name).write_text(text)
    return dist.parent


class Server:
    """A server process started by :func:`start_serve` or :func:`start_reference_server`."""

    def __init__(self, name: str, argv: list[str], directory: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=directory, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.url = self._wait_listening(30)

    def _wait_listening(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start listening: {self.log_path.read_text(errors='replace')[-2000:]}")

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def rss_mib(self) -> float:
        """The server's resident set size now, in MiB."""
        return rss_kib(self.pid) / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def health(self) -> dict:
        """``GET /healthz`` as JSON."""
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
            return json.load(response)

    def pending(self) -> int:
        """Messages not yet handled: visible, in flight or waiting."""
        queue = self.health().get("queue", {})
        return queue.get("visible", 0) + queue.get("in_flight", 0) + queue.get("waiting", 0)

    def wait_drained(self, timeout: float, poll: float = 0.05) -> float | None:
        """Wait until no message is pending; return when that was (``time.time()``), None on time-out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return time.time()
            time.sleep(poll)
        return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_serve(directory: Path, *, bench_plugin: bool = False, **env: str) -> Server:
    """``letsgo-worker serve --port 0`` with a fresh queue file in ``directory``, default settings."""
    paths = [str(ROOT)] + ([str(bench_plugin_path(directory))] if bench_plugin else [])
    environ = clean_environ(PYTHONPATH=os.pathsep.join(paths), **env)
    argv = [python_exe(), "-m", "host.cli", "serve", "--port", "0", "--db", str(directory / "worker.db")]
    return Server("letsgo-serve", argv, directory, environ)


def node_exe() -> str | None:
    """The ``node`` binary on PATH, or None when Node is not installed."""
    return shutil.which("node")


def start_reference_server(directory: Path) -> Server:
    """The Node reference: LetsGo's original per-request intake work, storing nothing (needs :func:`node_exe`)."""
    node = node_exe()
    if node is None:
        raise RuntimeError("node is not installed: the Node reference server cannot run")
    return Server("node-reference", [node, str(BENCH / "reference_server.js"), "0"], directory, clean_environ())
