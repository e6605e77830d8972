"""The local scheduler: EventBridge Scheduler's ticks on a laptop.

One :class:`Scheduler` per schedule, each on its own timing: the unnamed
``LETSGO_WORKER_SCHEDULE`` and every named schedule of the plugins
(``letsgo_register_schedules``). A named schedule's ticks carry its name in
``detail`` (``{"letsgo:schedule": NAME}``), as the schedules deployed with
``letsgo-worker schedules --cloudformation`` do, so the same routing runs them.
Each tick's outcome goes to ``on_tick`` (the runtime keeps it in the local
queue's ``ticks`` table).

``LETSGO_WORKER_SCHEDULE`` (read in ``LETSGO_WORKER_SCHEDULE_TIMEZONE``) is
parsed by :func:`host.schedule.expressions.parse_schedule`, the parser ``schedule next``
uses, so a tick fires here exactly when it would fire in AWS. Each tick calls
:func:`host.aws.events.handle_event` with the event Scheduler really sends to a
Lambda target that has no input (``source: aws.scheduler``, ``detail: "{}"``,
a string), in a thread of its own: like Scheduler, a slow tick does not delay
the next one. A failed tick is logged; it is not retried.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from host.errors import StartupError

if TYPE_CHECKING:
    from host.schedule.expressions import Schedule
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.scheduler")

#: The account id in local events (AWS's documentation uses this placeholder too).
LOCAL_ACCOUNT = "000000000000"
SCHEDULE_NAME = "letsgo-worker-local"

#: A tick found this late (the machine was asleep) is fired once, with the missed ones skipped.
_LATE_SECONDS = 60.0
#: The longest single sleep, so a changed wall clock is noticed.
_MAX_SLEEP_SECONDS = 30.0

HOW_TO_ENABLE = (
    "no schedule: scheduled ticks are off. Set LETSGO_WORKER_SCHEDULE (LetsGo deploys 'rate(1 hour)';"
    " also cron(...) and at(...), read in LETSGO_WORKER_SCHEDULE_TIMEZONE) to run letsgo_scheduled"
    " hooks locally; preview one with `letsgo-worker schedule next EXPR`"
)


def load_schedule(expression: str, tz: str) -> Schedule:
    """Parse the configured schedule; an invalid one is a :class:`StartupError` saying why."""
    from host.schedule.expressions import ScheduleError, parse_schedule

    try:
        return parse_schedule(expression, tz)
    except ScheduleError as error:
        problem = error
    try:
        parse_schedule("rate(1 hour)", tz)  # is the time zone, rather than the expression, at fault?
    except ScheduleError as zone_error:
        raise StartupError(f"LETSGO_WORKER_SCHEDULE_TIMEZONE={tz!r} is invalid: {zone_error}") from None
    raise StartupError(f"LETSGO_WORKER_SCHEDULE={expression!r} is invalid: {problem}")


def scheduled_event(instant: datetime, region: str = "local", name: str | None = None) -> dict[str, Any]:
    """The event EventBridge Scheduler sends to a Lambda target without input, for a tick at ``instant``.

    With ``name``, the event of a named schedule: ``detail`` is ``{"letsgo:schedule": name}``,
    the input ``letsgo-worker schedules --cloudformation`` gives its schedules.
    """
    from host.core.schedules import SCHEDULE_KEY

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": LOCAL_ACCOUNT,
        "time": _iso(instant),
        "region": region,
        "resources": [f"arn:aws:scheduler:{region}:{LOCAL_ACCOUNT}:schedule/default/{name or SCHEDULE_NAME}"],
        "detail": "{}" if name is None else {SCHEDULE_KEY: name},
    }


#: ``on_tick(name, fired_at, outcome, detail)``: one tick ended; ``name`` is "" for LETSGO_WORKER_SCHEDULE,
#: ``fired_at`` the tick's instant (epoch seconds), ``outcome`` "succeeded" or "failed".
TickCallback = Callable[[str, float, str, "str | None"], None]


class Scheduler:
    """Fires ``schedule``'s ticks at ``worker`` until stopped.

    ``name`` is the named schedule's (None: ``LETSGO_WORKER_SCHEDULE``);
    ``on_tick`` hears each tick's outcome.
    """

    def __init__(self, worker: Worker, schedule: Schedule, *, region: str = "local", name: str | None = None,
                 on_tick: TickCallback | None = None) -> None:
        self.worker = worker
        self.schedule = schedule
        self.region = region
        self.name = name
        self.on_tick = on_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks: set[threading.Thread] = set()
        self._ticks_lock = threading.Lock()

    def start(self) -> Scheduler:
        """Start the timing thread; log the next tick."""
        now = datetime.now(timezone.utc)
        upcoming = self.schedule.next_after(now)
        if upcoming is None:
            logger.warning("%s %s fires no more after %s: no scheduled ticks", self._label(), self.schedule.describe(), _iso(now))
            return self
        logger.info("%s %s; next tick at %s", self._label(), self.schedule.describe(), _iso(upcoming))
        thread_name = "letsgo-scheduler" + (f"-{self.name}" if self.name else "")
        self._thread = threading.Thread(target=self._run, args=(now,), name=thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Fire no more ticks; wait up to ``timeout`` seconds for running ones."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._ticks_lock:
            running = list(self._ticks)
        for thread in running:
            thread.join(timeout)

    def _run(self, after: datetime) -> None:
        while not self._stop.is_set():
            tick = self.schedule.next_after(after)
            if tick is None:
                logger.info("%s %s fires no more", self._label(), self.schedule.describe())
                return
            while not self._stop.is_set():
                wait = (tick - datetime.now(timezone.utc)).total_seconds()
                if wait <= 0:
                    break
                self._stop.wait(min(wait, _MAX_SLEEP_SECONDS))
            if self._stop.is_set():
                return
            tick = self._skip_missed(tick)
            self._fire(tick)
            after = tick

    def _skip_missed(self, tick: datetime) -> datetime:
        """When ticks were missed (the machine slept), keep only the latest one due."""
        now = datetime.now(timezone.utc)
        if (now - tick).total_seconds() < _LATE_SECONDS:
            return tick
        skipped = 0
        while (following := self.schedule.next_after(tick)) is not None and following <= now:
            tick = following
            skipped += 1
        if skipped:
            logger.warning("skipped %d missed tick(s) (was the process suspended?); firing the one at %s", skipped, _iso(tick))
        return tick

    def _fire(self, tick: datetime) -> None:
        event = scheduled_event(tick, self.region, self.name)
        thread = threading.Thread(target=self._run_tick, args=(event,), name=f"letsgo-tick-{event['time']}", daemon=True)
        with self._ticks_lock:
            self._ticks.add(thread)
        thread.start()

    def _run_tick(self, event: dict[str, Any]) -> None:
        from host.aws.events import handle_event

        logger.info("scheduled tick %s (%s %s)", event["time"], self._label(), self.schedule.describe())
        outcome, detail = "succeeded", None
        try:
            try:
                handle_event(event, None, worker=self.worker)
            except Exception as error:
                outcome, detail = "failed", f"{type(error).__name__}: {error}"
                logger.exception("scheduled tick %s (%s) failed", event["time"], self._label())
            # Still among the running ticks: a stopping runtime waits for this record before closing the queue.
            self._record(event, outcome, detail)
        finally:
            with self._ticks_lock:
                self._ticks.discard(threading.current_thread())

    def _record(self, event: dict[str, Any], outcome: str, detail: str | None) -> None:
        if self.on_tick is None:
            return
        from host.schedule.expressions import parse_instant

        try:
            self.on_tick(self.name or "", parse_instant(event["time"]).timestamp(), outcome, detail)
        except Exception:  # a full disk, a closed queue: the tick itself already ran
            logger.exception("could not record the outcome of scheduled tick %s (%s)", event["time"], self._label())

    def _label(self) -> str:
        return f"schedule {self.name!r}:" if self.name else "schedule"


def _iso(instant: datetime) -> str:
    from host.schedule.expressions import format_instant

    return format_instant(instant)
