"""host.testing without traps: an installed plugin passed explicitly, run_scheduled, ISO times for scheduled_event."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import example_orders
from host import hookimpl
from host.testing import ScheduledError, UnknownSchedule, run_scheduled, scheduled_event


def test_an_installed_plugin_passed_explicitly_is_registered_once(make_worker, notifications):
    worker = make_worker(plugins=[example_orders, notifications])  # example_orders is installed too
    assert [info.name for info in worker.plugins].count("example_orders") == 1
    assert worker.registry.get("OrderNew").plugin == "example_orders"  # under its entry point's name
    assert worker.pm.is_registered(notifications)
    assert len(worker.implementations("letsgo_register_messages")) == len(
        {impl.plugin for impl in worker.implementations("letsgo_register_messages")})


def test_without_entry_points_the_module_passed_is_the_one_plugin(make_worker):
    worker = make_worker(plugins=[example_orders], entry_points=False)
    assert [info.name for info in worker.plugins] == ["example_orders"]
    assert "OrderNew" in worker.registry and worker.schedules.names() == ["orders-daily-report"]


class Recorder:
    __name__ = "recorder"

    def __init__(self):
        self.events = []

    @hookimpl
    def letsgo_scheduled(self, event, ctx):
        self.events.append(("hook", event))

    @hookimpl
    def letsgo_register_schedules(self, register):
        register("one", "rate(1 hour)", lambda event, ctx: self.events.append(("one", event)))
        register("two", "rate(2 hours)", lambda event, ctx: self.events.append(("two", event)))


def test_run_scheduled_without_a_name_runs_the_letsgo_scheduled_hooks(make_worker):
    recorder = Recorder()
    worker = make_worker(plugins=[recorder], entry_points=False)
    run_scheduled(worker)
    [(what, event)] = recorder.events
    assert what == "hook" and event["detail-type"] == "Scheduled Event" and event["detail"] == "{}"


def test_run_scheduled_with_a_name_runs_that_schedule_only(make_worker):
    recorder = Recorder()
    worker = make_worker(plugins=[recorder], entry_points=False)
    run_scheduled(worker, name="two")
    run_scheduled(worker, scheduled_event(time="2026-12-01T09:00:00Z"), name="one")
    assert [what for what, _ in recorder.events] == ["two", "one"]
    assert recorder.events[1][1]["time"] == "2026-12-01T09:00:00Z"
    with pytest.raises(UnknownSchedule, match="'three'"):
        run_scheduled(worker, name="three")


def test_run_scheduled_raises_what_failed(make_worker):
    class Broken:
        __name__ = "broken"

        @hookimpl
        def letsgo_scheduled(self, event, ctx):
            raise ValueError("no disk")

    worker = make_worker(plugins=[Broken()], entry_points=False)
    with pytest.raises(ScheduledError) as error:
        run_scheduled(worker)
    assert error.value.failures == [("broken", "ValueError: no disk")]


@pytest.mark.parametrize(
    ("given", "time"),
    [
        ("2026-12-01T09:30:00Z", "2026-12-01T09:30:00Z"),
        ("2026-12-01T10:30:00+01:00", "2026-12-01T09:30:00Z"),
        ("2026-12-01T09:30:00", "2026-12-01T09:30:00Z"),  # no offset: UTC, as `schedule next --after` reads it
        (datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1))), "2026-12-01T09:30:00Z"),
    ],
)
def test_scheduled_event_takes_an_iso_string_or_a_datetime(given, time):
    assert scheduled_event(time=given)["time"] == time


def test_scheduled_event_refuses_a_naive_datetime_and_bad_text():
    with pytest.raises(TypeError, match="aware datetime"):
        scheduled_event(time=datetime(2026, 12, 1, 9, 30))
    with pytest.raises(ValueError, match="ISO 8601"):
        scheduled_event(time="tomorrow")


def test_scheduled_event_of_a_named_schedule_carries_its_name():
    event = scheduled_event(name="orders-daily-report")
    assert event["detail"] == {"letsgo:schedule": "orders-daily-report"}
    assert event["resources"][0].endswith("/orders-daily-report")
