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
from host.worker import Worker

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
