"""Shared pieces of the reliability suite: a recording test plugin, record builders, sizes.

Sizes scale with ``LETSGO_SOAK=1`` (set by ``make soak``): the CI run uses the
figures in docs/RELIABILITY.md's "CI" column, the soak run the "soak" column.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

from pydantic import BaseModel, Field

from host import hookimpl
from host.config import Settings
from host.testing import wait_until
from host.core.worker import Worker

#: True under ``make soak``: run the long versions.
SOAK = os.environ.get("LETSGO_SOAK", "") not in ("", "0")


def scaled(ci: int | float, soak: int | float):
    """``ci`` in the normal run, ``soak`` under ``make soak``."""
    return soak if SOAK else ci


class Item(BaseModel):
    """Payload of ``rel.model``: used to check that validation names the field."""

    name: str
    count: int = Field(ge=0)


class Recorder:
    """An in-process plugin: a few message types that record what they handled, and a sink.

    ``rel.ok`` (sync) and ``rel.async`` (async) succeed and record the message id;
    ``rel.model`` validates its payload against :class:`Item`; ``rel.fail`` always
    raises. Every notification lands in ``notifications``.
    """

    def __init__(self) -> None:
        self.handled: list[tuple[str, str, Any]] = []
        self.notifications: list[Any] = []
        self.lock = threading.Lock()

    def _record(self, message, ctx) -> None:
        with self.lock:
            self.handled.append((message.type, ctx.message_id, message.payload))

    def handle_ok(self, message, ctx) -> None:
        self._record(message, ctx)

    async def handle_async(self, message, ctx) -> None:
        self._record(message, ctx)

    def handle_fail(self, message, ctx) -> None:
        raise RuntimeError(f"rel.fail always fails (message {ctx.message_id})")

    @hookimpl
    def letsgo_register_messages(self, register):
        register("rel.ok", self.handle_ok, description="succeeds")
        register("rel.async", self.handle_async, description="succeeds, async")
        register("rel.model", self.handle_ok, payload=Item, description="validated payload")
        register("rel.fail", self.handle_fail, description="always fails")

    @hookimpl
    def letsgo_notify(self, notification):
        with self.lock:
            self.notifications.append(notification)

    def handled_ids(self) -> list[str]:
        with self.lock:
            return [message_id for _, message_id, _ in self.handled]


def in_process_worker(*plugins: Any, env: dict[str, str] | None = None) -> Worker:
    """A started worker with only ``plugins`` (no entry points): isolated from what is installed."""
    return Worker(Settings.from_env(env or {}), plugins=list(plugins), load_entry_points=False).start()


def record(body: Any, message_id: str | None = None, receive_count: int = 1) -> dict[str, Any]:
    """An SQS record; ``body`` is used verbatim when it is a string, JSON-encoded otherwise."""
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1545082649183"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:letsgo-worker",
        "awsRegion": "us-east-1",
    }


def ok_message(tag: str) -> dict[str, Any]:
    """A message that ``Recorder`` handles successfully."""
    return {"type": "rel.ok", "payload": {"tag": tag}}


def deeply_nested(depth: int, inner: str = "1") -> str:
    """JSON text of ``depth`` nested arrays."""
    return "[" * depth + inner + "]" * depth


def clean_env(**variables: str) -> dict[str, str]:
    """The current environment without any worker variable, plus ``variables``.

    ``LETSGO_WORKER_ENV_FILE`` points nowhere so a developer's ``.env`` cannot leak in.
    """
    from host.config import SETTINGS

    names = {setting.variable for setting in SETTINGS} | {"LETSGO_WORKER_ENV_FILE"}
    env = {key: value for key, value in os.environ.items() if key not in names and not key.startswith("LETSGO_")}
    env["LETSGO_WORKER_ENV_FILE"] = os.devnull + ".absent"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 120, input: str | None = None):
    """Run ``letsgo-worker ARGS`` in a subprocess; return the CompletedProcess (text)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def write_distribution(
    root: os.PathLike | str,
    distribution: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
    version: str = "1.0",
) -> None:
    """Lay out an installed distribution under ``root`` (put ``root`` on ``sys.path``/PYTHONPATH).

    ``entry_points`` maps entry-point names (group ``letsgo_worker``) to ``module[:attr]``;
    ``modules`` maps module names to their source. Discovery then goes through
    ``importlib.metadata`` exactly as for a pip-installed plugin.
    """
    from pathlib import Path

    root = Path(root)
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    lines = ["[letsgo_worker]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)


# -- server subprocesses --------------------------------------------------------------

LEDGER_PLUGIN = "relledger"


def install_ledger_plugin(root: os.PathLike | str) -> str:
    """Install ``ledger_plugin.py`` under ``root`` as distribution ``rel-ledger``; return ``root``."""
    from pathlib import Path

    source = (Path(__file__).parent / "ledger_plugin.py").read_text()
    write_distribution(root, "rel-ledger", {LEDGER_PLUGIN: LEDGER_PLUGIN}, {LEDGER_PLUGIN: source})
    return str(root)


class Server:
    """``letsgo-worker serve --port 0 --db PATH`` in a subprocess, its log (stdout+stderr) in a file.

    ``start()`` waits for the ``listening on http://HOST:PORT`` line; ``kill()``
    is ``kill -9``; ``stop()`` asks it to stop (SIGTERM) and waits.
    """

    def __init__(self, db: os.PathLike | str, log: os.PathLike | str, env: dict[str, str], *extra_args: str) -> None:
        self.db = str(db)
        self.log_path = str(log)
        self.env = env
        self.extra_args = list(extra_args)
        self.process = None
        self.url: str | None = None
        self.port: int | None = None

    def start(self, timeout: float = 120) -> Server:
        import re
        import subprocess
        import sys
        import time

        log = open(self.log_path, "ab")
        offset = log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "serve", "--port", "0", "--db", self.db, *self.extra_args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"listening on (http://([0-9.]+|\[[0-9a-f:]+\]):(\d+))")
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as reader:
                reader.seek(offset)
                found = pattern.search(reader.read().decode("utf-8", "replace"))
            if found:
                self.url, self.port = found.group(1), int(found.group(3))
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the server did not say where it listens within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        with open(self.log_path, "rb") as reader:
            return reader.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """``kill -9`` the server (the process this object started, by its pid)."""
        import signal

        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 60) -> int | None:
        import signal
        import subprocess

        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def server_env(plugin_root: str | None = None, **variables: str) -> dict[str, str]:
    """Environment for a server subprocess: only the ledger plugin (and built-ins), quick retries."""
    env = clean_env(
        LETSGO_WORKER_PLUGINS=LEDGER_PLUGIN if plugin_root else "",
        LETSGO_WORKER_LOG_LEVEL="INFO",
    )
    if plugin_root:
        env["PYTHONPATH"] = plugin_root + os.pathsep + env.get("PYTHONPATH", "")
    env.update(variables)
    return env


def post(url: str, body: bytes | str | Any, *, headers: dict[str, str] | None = None, method: str = "POST", timeout: float = 60):
    """One HTTP request with the standard library; return (status, parsed JSON or text, headers)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, parts.path or "/", body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return response.status, parsed, response.headers  # case-insensitive, as HTTP header names are
    finally:
        connection.close()




def queue_state(db: str) -> dict[str, int]:
    """Counts read straight from the queue's SQLite file, read-only: messages left and dead letters."""
    import sqlite3

    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (left,) = connection.execute("SELECT COUNT(*) FROM messages").fetchone()
        (dead,) = connection.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return {"messages": left, "dead_letters": dead}
    finally:
        connection.close()


def dead_letters(db: str) -> list[dict[str, Any]]:
    """``letsgo-worker dlq list --json --db DB``: what a user sees."""
    result = run_cli("dlq", "list", "--json", "--db", db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def read_ledger(path: str) -> list[tuple[str, int, str, int]]:
    """Ledger lines as ``(kind, n, message id, receive count)``."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as ledger:
        for line in ledger:
            kind, n, message_id, count = line.split()
            rows.append((kind, int(n), message_id, int(count)))
    return rows


def health(url: str) -> dict[str, Any]:
    """``GET /healthz`` of a running server (asserts it answers 200)."""
    status, body, _ = post(url + "/healthz", b"", method="GET")
    assert status == 200, (status, body)
    return body


def drained(url: str) -> bool:
    """True when the server's queue holds nothing visible, in flight or waiting."""
    queue = health(url)["queue"]
    return queue["visible"] + queue["in_flight"] + queue["waiting"] == 0


def stored_count(db: str) -> int:
    """How many messages the queue has ever stored (SQLite's AUTOINCREMENT counter), read-only."""
    import sqlite3

    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        return row[0] if row else 0
    finally:
        connection.close()
