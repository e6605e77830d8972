"""Named schedules: the registry and its start-up errors, local firing and the ticks table, Lambda routing by name."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from host import hookimpl
from host.errors import RegistrationError, StartupError
from host.local.queue import LocalQueue
from host.local.timer import Scheduler, scheduled_event
from host.schedule.expressions import parse_schedule
from host.testing import ScheduledError, UnknownSchedule, run_scheduled, wait_until, write_distribution

ROOT = Path(__file__).resolve().parents[1]


class Schedules:
    """A plugin registering ``schedules`` (name, expression, handler, options) and recording every call."""

    def __init__(self, name: str, *schedules) -> None:
        self.__name__ = name
        self.schedules = schedules
        self.calls: list[tuple[str, dict]] = []
        self.arrived = threading.Condition()

    @hookimpl
    def letsgo_register_schedules(self, register):
        for name, expression, *rest in self.schedules:
            options = rest[0] if rest else {}
            register(name, expression, self._handler(name, options.pop("fail", False)), **options)

    def _handler(self, name: str, fail: bool):
        def handler(event, ctx):
            self._record(name, event)
            if fail:
                raise RuntimeError(f"{name} broke")

        return handler

    def _record(self, what: str, event: dict) -> None:
        with self.arrived:
            self.calls.append((what, event))
            self.arrived.notify_all()

    def names(self) -> list[str]:
        return [what for what, _ in self.calls]


class SchedulesAndHook(Schedules):
    """:class:`Schedules` that implements ``letsgo_scheduled`` too."""

    @hookimpl
    def letsgo_scheduled(self, event, ctx):
        self._record("letsgo_scheduled", event)


# -- the registry and its start-up errors -----------------------------------------------


def test_each_plugin_s_schedules_are_registered_with_the_plugin(make_worker):
    reports = Schedules("reports", ("daily-report", "cron(0 9 * * ? *)", {"timezone": "Europe/Paris", "description": "Every morning"}))
    cleanup = Schedules("cleanup", ("hourly.cleanup", "rate(1 hour)"))
    worker = make_worker(plugins=[reports, cleanup], entry_points=False)
    assert worker.schedules.names() == ["daily-report", "hourly.cleanup"]
    daily = worker.schedules.get("daily-report")
    assert (daily.plugin, daily.expression, daily.timezone, daily.description) == (
        "reports", "cron(0 9 * * ? *)", "Europe/Paris", "Every morning")
    assert worker.schedules.get("hourly.cleanup").timezone == "UTC"  # the default, as EventBridge Scheduler's
    after = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert daily.schedule.next_after(after) == datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


def test_a_name_registered_by_two_plugins_is_a_start_up_error_naming_both(make_worker):
    first = Schedules("first", ("report", "rate(1 hour)"))
    second = Schedules("second", ("report", "rate(2 hours)"))
    with pytest.raises(RegistrationError) as error:
        make_worker(plugins=[first, second], entry_points=False)
    assert "schedule 'report' is registered twice" in str(error.value)
    assert "plugin 'first'" in str(error.value) and "plugin 'second'" in str(error.value)


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        (("report", "cron(0 9 * * 1)", {}), "cron(0 9 ? * 2 *)"),  # unix cron: the AWS form is proposed
        (("report", "every day"), "every day"),
        (("report", "cron(0 9 * * ? *)", {"timezone": "Europe/Pariss"}), "Europe/Pariss"),
    ],
)
def test_a_bad_expression_or_zone_is_a_start_up_error_naming_plugin_and_schedule(make_worker, schedule, says):
    with pytest.raises(StartupError) as error:
        make_worker(plugins=[Schedules("reports", schedule)], entry_points=False)
    text = str(error.value)
    assert "plugin 'reports'" in text and "schedule 'report'" in text and says in text


@pytest.mark.parametrize("name", ["", "daily report", "x" * 65, "rapport/quotidien", None])
def test_a_name_scheduler_would_refuse_is_a_start_up_error(make_worker, name):
    with pytest.raises(RegistrationError, match="plugin 'reports' registered a schedule named"):
        make_worker(plugins=[Schedules("reports", (name, "rate(1 hour)"))], entry_points=False)


def test_the_worked_example_registers_its_daily_report(make_worker):
    worker = make_worker()
    report = worker.schedules.get("orders-daily-report")
    assert report is not None and report.plugin == "example_orders" and report.distribution == "example-orders"


# -- routing a tick by name (Lambda and local share it) ----------------------------------


def test_a_tick_carrying_a_name_runs_that_schedule_s_handler_only(make_worker):
    plugin = SchedulesAndHook("reports", ("daily", "rate(1 day)"), ("weekly", "rate(7 days)"))
    worker = make_worker(plugins=[plugin], entry_points=False)
    import lambda_entry
    from host.core.worker import set_worker

    set_worker(worker)
    event = scheduled_event(datetime(2026, 12, 1, 9, tzinfo=timezone.utc), name="weekly")
    assert event["detail"] == {"letsgo:schedule": "weekly"}
    assert lambda_entry.handler(event, None) is None
    assert plugin.names() == ["weekly"]
    # A tick without a name still runs every letsgo_scheduled hook, and no named schedule.
    lambda_entry.handler(scheduled_event(datetime(2026, 12, 1, 10, tzinfo=timezone.utc)), None)
    assert plugin.names() == ["weekly", "letsgo_scheduled"]


def test_the_name_is_read_from_scheduler_s_text_detail_too(make_worker):
    plugin = Schedules("reports", ("daily", "rate(1 day)"))
    worker = make_worker(plugins=[plugin], entry_points=False)
    event = {**scheduled_event(datetime(2026, 12, 1, 9, tzinfo=timezone.utc)), "detail": '{"letsgo:schedule": "daily"}'}
    from host.aws.events import handle_event

    handle_event(event, None, worker=worker)
    assert plugin.names() == ["daily"]


def test_an_unknown_name_fails_the_invocation_saying_which(make_worker):
    plugin = SchedulesAndHook("reports", ("daily", "rate(1 day)"))
    worker = make_worker(plugins=[plugin], entry_points=False)
    from host.aws.events import handle_event

    with pytest.raises(UnknownSchedule) as error:
        handle_event(scheduled_event(datetime(2026, 12, 1, tzinfo=timezone.utc), name="montly"), None, worker=worker)
    assert "'montly'" in str(error.value) and "'daily'" in str(error.value)
    assert plugin.calls == []  # neither the letsgo_scheduled hooks nor another schedule ran instead


def test_a_failing_named_handler_fails_the_tick_naming_plugin_and_schedule(make_worker):
    plugin = Schedules("reports", ("daily", "rate(1 day)", {"fail": True}))
    worker = make_worker(plugins=[plugin], entry_points=False)
    with pytest.raises(ScheduledError) as error:
        run_scheduled(worker, name="daily")
    assert error.value.schedule == "daily"
    assert error.value.failures == [("reports", "RuntimeError: daily broke")]


def test_async_handlers_are_awaited(make_worker):
    seen = []

    class Async:
        __name__ = "async_reports"

        @hookimpl
        def letsgo_register_schedules(self, register):
            async def handler(event, ctx):
                seen.append((event["detail"], ctx.logger.extra["schedule"]))

            register("async-report", "rate(5 minutes)", handler)

    worker = make_worker(plugins=[Async()], entry_points=False)
    run_scheduled(worker, name="async-report")
    assert seen == [({"letsgo:schedule": "async-report"}, "async-report")]


def test_invoke_fails_on_a_tick_of_an_unknown_schedule(tmp_path):
    event = tmp_path / "tick.json"
    event.write_text(json.dumps(scheduled_event(datetime(2026, 12, 1, tzinfo=timezone.utc), name="no-such")))
    done = subprocess.run([sys.executable, "-m", "host.cli", "invoke", str(event)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["errorType"] == "UnknownSchedule"
    assert "orders-daily-report" in done.stdout  # the schedules that do exist are named


# -- the local scheduler: each schedule on its own timing, outcomes in the ticks table ----------


def _fast(expression_seconds: float) -> object:
    """``rate(1 minute)`` started so that its next fire is ``expression_seconds`` from now (a fast clock)."""
    start = datetime.now(timezone.utc) - timedelta(seconds=60 - expression_seconds)
    return parse_schedule("rate(1 minute)", start=start)


def test_each_named_schedule_fires_on_its_own_timing_and_its_outcome_is_kept(make_worker, tmp_path):
    plugin = Schedules("reports", ("first", "rate(1 minute)"), ("second", "rate(1 minute)", {"fail": True}))
    worker = make_worker(plugins=[plugin], entry_points=False)
    queue = LocalQueue(tmp_path / "queue.db")
    schedulers = [
        Scheduler(worker, _fast(3.0), name="first", on_tick=queue.record_tick).start(),
        Scheduler(worker, _fast(5.0), name="second", on_tick=queue.record_tick).start(),
    ]
    try:
        with plugin.arrived:
            assert plugin.arrived.wait_for(lambda: len(plugin.calls) >= 2, timeout=30)
        rows = wait_until(lambda: len(_ticks(queue.path)) == 2 and _ticks(queue.path), message="two ticks recorded")
    finally:
        for scheduler in schedulers:
            scheduler.stop()
        queue.close()
    assert plugin.names() == ["first", "second"]  # in the order their timings give
    first_event, second_event = (event for _, event in plugin.calls)
    assert first_event["detail"] == {"letsgo:schedule": "first"} and second_event["detail"] == {"letsgo:schedule": "second"}
    assert first_event["time"] < second_event["time"]
    assert rows["first"][1] == "succeeded" and rows["first"][2] is None
    assert rows["second"][1] == "failed" and "second broke" in rows["second"][2]
    assert rows["first"][0] == datetime.fromisoformat(first_event["time"].replace("Z", "+00:00")).timestamp()


def _ticks(path) -> dict[str, tuple]:
    """The ticks table of the queue file at ``path`` (empty while the file or its schema is not there yet)."""
    if not Path(path).exists():
        return {}
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name, fired_at, outcome, detail FROM ticks").fetchall()
    except sqlite3.OperationalError:  # the server is still creating the file
        return {}
    finally:
        connection.close()
    return {name: (fired_at, outcome, detail) for name, fired_at, outcome, detail in rows}


PLUGIN = '''
import json, os, time
from datetime import datetime, timedelta, timezone
from host import hookimpl

def _handler(name):
    def handler(event, ctx):
        with open(os.environ["TICK_LOG"], "a") as log:
            log.write(json.dumps({"name": name, "pid": os.getpid(), "time": event["time"]}) + "\\n")
        if name == "broken":
            raise RuntimeError("the broken schedule broke")
    return handler

@hookimpl
def letsgo_register_schedules(register):
    # A fast clock: each fires once, a few seconds after this worker starts, whatever the machine's load.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for seconds, name in ((3, "soon"), (4, "broken"), (5, "later")):
        register(name, f"at({now + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S})", _handler(name))

@hookimpl
def letsgo_scheduled(event, ctx):
    with open(os.environ["TICK_LOG"], "a") as log:
        log.write(json.dumps({"name": "", "pid": os.getpid(), "time": event["time"]}) + "\\n")
'''


def test_serve_fires_each_schedule_once_from_the_lock_holder_only_with_two_delivery_processes(tmp_path):
    site = tmp_path / "site"
    write_distribution(site, "tick-test-plugin", "tick_test_plugin", PLUGIN)
    log, db = tmp_path / "ticks.jsonl", tmp_path / "queue.db"
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def at(seconds: int) -> str:
        return f"at({(now + timedelta(seconds=seconds)):%Y-%m-%dT%H:%M:%S})"

    env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep), TICK_LOG=str(log),
        # Generous: the unnamed schedule's instant is set before the server starts.
        LETSGO_WORKER_PLUGINS="tick_test_plugin", LETSGO_WORKER_SCHEDULE=at(15), LETSGO_WORKER_SCHEDULE_TIMEZONE="UTC",
    )
    stderr = tmp_path / "serve.log"
    with open(stderr, "w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "serve", "--port", "0", "--db", str(db), "--workers", "2"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        wait_until(lambda: len(_ticks(db)) == 4, timeout=90, message=f"four ticks (server log: {stderr})")
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        # Each fired once, at its own instant (the delivery processes, which load the plugin too, never fire).
        assert sorted(entry["name"] for entry in entries) == ["", "broken", "later", "soon"]
        assert {entry["pid"] for entry in entries} == {server.pid}
        rows = _ticks(db)
        assert {name: row[1] for name, row in rows.items()} == {
            "": "succeeded", "soon": "succeeded", "later": "succeeded", "broken": "failed"}
        assert "the broken schedule broke" in rows["broken"][2]
        times = {entry["name"]: entry["time"] for entry in entries}
        assert rows["later"][0] == datetime.fromisoformat(times["later"].replace("Z", "+00:00")).timestamp()
        assert times["soon"] < times["broken"] < times["later"]  # each on its own timing
        assert rows[""][0] == (now + timedelta(seconds=15)).timestamp()
        assert "schedule 'soon':" in stderr.read_text()  # start-up logs each schedule's next tick
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
