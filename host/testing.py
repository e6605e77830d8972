"""Testing helpers for plugin authors, installed as a pytest plugin with letsgo-worker.

Fixtures (available in any project that has letsgo-worker installed):

- ``notifications``: a :class:`NotificationRecorder`; every notification sent
  through ``ctx.notify()`` lands in ``notifications.texts``.
- ``make_worker``: ``make_worker(plugins=[...], env={...}, entry_points=True)``
  builds and starts a :class:`host.core.worker.Worker` (stopped after the test).
  An installed plugin may be passed in ``plugins`` too: it is registered once.
- ``worker``: a started worker with the installed plugins and the recorder.

Event factories: :func:`sqs_record`, :func:`sqs_event`, :func:`scheduled_event`,
:func:`run_scheduled` to run a tick (of one named schedule, with ``name=``), and
:func:`run_batch` to push messages through the same batch path Lambda uses::

    def test_order_new(worker):
        result = run_batch(worker, {"type": "OrderNew", "payload": {"orderId": "1", "customerId": "c"}})
        assert result.response() == {"batchItemFailures": []}
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from host import hookimpl
from host.core.ticks import ScheduledError, UnknownSchedule

__all__ = [
    "NotificationRecorder", "ScheduledError", "UnknownSchedule", "run_batch", "run_scheduled", "scheduled_event",
    "sqs_event", "sqs_record", "wait_until", "write_distribution",
]

if TYPE_CHECKING:
    from host.core.batch import BatchResult
    from host.core.notify import Notification
    from host.core.worker import Worker


def sqs_record(
    message: Mapping[str, Any] | str,
    *,
    message_id: str | None = None,
    receive_count: int = 1,
    group_id: str | None = None,
    event_source: str = "aws:sqs",
) -> dict[str, Any]:
    """An SQS record as Lambda delivers it; ``message`` is a dict (JSON-encoded) or a raw body."""
    body = message if isinstance(message, str) else json.dumps(message)
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(int(datetime.now(timezone.utc).timestamp() * 1000)),
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": str(int(datetime.now(timezone.utc).timestamp() * 1000)),
    }
    arn = "arn:aws:sqs:us-east-1:123456789012:letsgo-worker"
    if group_id is not None:
        attributes["MessageGroupId"] = group_id
        attributes["MessageDeduplicationId"] = uuid.uuid4().hex
        arn += ".fifo"
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": event_source,
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


def sqs_event(*messages: Mapping[str, Any] | str, **record_options: Any) -> dict[str, Any]:
    """An SQS event (``{"Records": [...]}``) holding one record per message."""
    return {"Records": [sqs_record(message, **record_options) for message in messages]}


def scheduled_event(time: datetime | str | None = None, *, scheduler: bool = True, name: str | None = None) -> dict[str, Any]:
    """A scheduled tick: EventBridge Scheduler's shape (``detail`` is ``"{}"``) or a rule's.

    :param time: The tick's instant: an aware datetime, or ISO 8601 text such as
        ``"2026-12-01T09:00:00Z"`` (text without an offset is UTC). Default: now.
    :param name: A named schedule's tick: ``detail`` is ``{"letsgo:schedule": name}``,
        as in the schedules ``letsgo-worker schedules --cloudformation`` prints.
    """
    from host.core.schedules import SCHEDULE_KEY

    if isinstance(time, str):
        from host.schedule.base import parse_instant

        time = parse_instant(time)
    elif time is not None and (not isinstance(time, datetime) or time.utcoffset() is None):
        raise TypeError(f"scheduled_event(time=...) takes an aware datetime or ISO 8601 text, not {time!r}")
    when = (time or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if name is not None:
        detail: Any = {SCHEDULE_KEY: name}
    else:
        detail = "{}" if scheduler else {}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if scheduler else "aws.events",
        "account": "123456789012",
        "time": when,
        "region": "us-east-1",
        "resources": [f"arn:aws:scheduler:us-east-1:123456789012:schedule/default/{name or 'letsgo-worker'}"],
        "detail": detail,
    }


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy (returned); fail after ``timeout`` seconds.

    For tests against a running server or queue: wait for an effect without
    fixed sleeps or timing assertions.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def run_batch(worker: Worker, *messages: Mapping[str, Any] | str, **record_options: Any) -> BatchResult:
    """Run ``messages`` through the SQS batch path and return the :class:`host.core.batch.BatchResult`."""
    from host.core.batch import process_sqs_event

    return process_sqs_event(worker, sqs_event(*messages, **record_options))


def run_scheduled(worker: Worker, event: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Run one scheduled tick through the path Lambda uses, and wait for it.

    Without ``name``: every ``letsgo_scheduled`` implementation. With ``name``:
    that named schedule's handler only (an unknown name raises
    :class:`host.core.ticks.UnknownSchedule`). ``event`` defaults to
    :func:`scheduled_event` (with ``name``). A failed handler raises
    :class:`host.core.ticks.ScheduledError`, whose ``failures`` name each plugin.
    """
    from host.core.ticks import run_scheduled as run_tick

    if event is None:
        event = scheduled_event(name=name)
    run_tick(worker, dict(event), name=name)


def write_distribution(
    root: Any,
    distribution: str,
    module: str,
    source: str,
    *,
    entry_point: str | None = None,
    version: str = "1.0.0",
) -> None:
    """Write an installed-looking distribution into the folder ``root``.

    ``root/<module>.py`` holds ``source`` and ``root/<dist>-<version>.dist-info``
    declares it in the ``letsgo_worker`` entry-point group, so that putting
    ``root`` on ``sys.path`` (or ``PYTHONPATH``) makes the plugin discoverable
    exactly as ``pip install`` would.
    """
    from pathlib import Path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source)
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[letsgo_worker]\n{entry_point or module} = {module}\n")


class NotificationRecorder:
    """An in-process notification sink that records what it receives."""

    __name__ = "notification_recorder"

    def __init__(self) -> None:
        self.notifications: list[Notification] = []

    @hookimpl
    def letsgo_notify(self, notification: Notification) -> None:
        """Record ``notification``."""
        self.notifications.append(notification)

    @property
    def texts(self) -> list[str]:
        """The text of every recorded notification, in order."""
        return [n.text for n in self.notifications]


@pytest.fixture
def notifications() -> NotificationRecorder:
    """A fresh :class:`NotificationRecorder`; pass it to ``make_worker(plugins=[...])``."""
    return NotificationRecorder()


@pytest.fixture
def make_worker() -> Iterable[Callable[..., Worker]]:
    """Factory of started workers: ``make_worker(plugins=(), env=None, entry_points=True)``.

    ``env`` replaces the process environment for the worker's settings (so a
    developer's own variables cannot leak into tests); every worker is stopped
    after the test. A module in ``plugins`` that is also installed (its entry
    point loads it) is registered once, under its entry point's name;
    ``entry_points=False`` loads only ``plugins``.
    """
    from host.config import Settings
    from host.core.worker import Worker

    made: list[Worker] = []

    def make(plugins: Iterable[Any] = (), env: Mapping[str, str] | None = None, entry_points: bool = True) -> Worker:
        worker = Worker(Settings.from_env(dict(env or {})), plugins=plugins, load_entry_points=entry_points)
        made.append(worker)
        return worker.start()

    yield make
    for worker in made:
        worker.stop()


@pytest.fixture
def worker(make_worker: Callable[..., Worker], notifications: NotificationRecorder) -> Worker:
    """A started worker with every installed plugin and the ``notifications`` recorder."""
    return make_worker(plugins=[notifications])
