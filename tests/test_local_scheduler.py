"""The local scheduler in process: the event it sends, when it fires, what it says about bad schedules."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from host import hookimpl
from host.errors import StartupError
from host.schedule.expressions import parse_schedule
from host.local.timer import Scheduler, load_schedule, scheduled_event

# A real event from EventBridge Scheduler (see tests/fixtures/aws/MANIFEST.md).
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "aws" / "eventbridge-scheduler-event.powertools.json"
SCHEDULER_EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


class Ticks:
    __name__ = "ticks"

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.arrived = threading.Event()

    @hookimpl
    def letsgo_scheduled(self, event, ctx):
        self.events.append(event)
        self.arrived.set()


def test_the_event_has_the_shape_eventbridge_scheduler_sends():
    event = scheduled_event(datetime(2026, 11, 28, 10, 0, 0, 123, tzinfo=timezone.utc))
    real = json.loads(FIXTURE.read_text())
    assert set(event) == set(real) == SCHEDULER_EVENT_KEYS
    assert event["detail"] == real["detail"] and event["detail-type"] == real["detail-type"]
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
    assert event["detail"] == "{}"  # a string, as Scheduler sends it to a target without input
    assert event["time"] == "2026-11-28T10:00:00Z"
    assert event["resources"][0].startswith("arn:aws:scheduler:local:")


def test_a_tick_reaches_every_letsgo_scheduled_hook_at_its_instant(make_worker):
    ticks = Ticks()
    worker = make_worker(plugins=[ticks], entry_points=False)
    at = (datetime.now(timezone.utc) + timedelta(seconds=1.2)).replace(microsecond=0) + timedelta(seconds=1)
    scheduler = Scheduler(worker, parse_schedule(f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})")).start()
    try:
        assert ticks.arrived.wait(10)
        assert time.time() >= at.timestamp()
        [event] = ticks.events
        assert event["time"] == at.strftime("%Y-%m-%dT%H:%M:%SZ") and event["detail"] == "{}"
    finally:
        scheduler.stop()


def test_ticks_missed_while_asleep_fire_once(make_worker):
    worker = make_worker(plugins=[], entry_points=False)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    scheduler = Scheduler(worker, parse_schedule("rate(1 minute)", start=start))
    latest = scheduler._skip_missed(start + timedelta(minutes=1))
    assert start + timedelta(minutes=9) <= latest <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    ("expression", "zone", "says"),
    [
        ("cron(0 0 * * 1)", "UTC", "LETSGO_WORKER_SCHEDULE='cron(0 0 * * 1)' is invalid"),
        ("rate(1 hour)", "Mars/Olympus", "LETSGO_WORKER_SCHEDULE_TIMEZONE='Mars/Olympus' is invalid"),
    ],
)
def test_a_bad_schedule_is_a_start_up_error_naming_the_variable(expression, zone, says):
    with pytest.raises(StartupError, match="is invalid") as error:
        load_schedule(expression, zone)
    assert says in str(error.value)
