"""Schedule expressions read the way AWS EventBridge Scheduler reads them: ``rate()``, ``cron()``, ``at()``.

One parser for the whole worker: the local scheduler, configuration checks and
``letsgo-worker schedule next`` all use :func:`parse_schedule`, so an expression that works on a
laptop behaves the same once deployed. ``cron()`` and ``at()`` are wall-clock times of an IANA time
zone, read with the daylight-saving rules of :mod:`host.schedule.zones`; ``rate()`` is a fixed
duration from the schedule's start, whatever the zone. This module holds the parser and the two
simple forms; ``cron()`` is in :mod:`host.schedule.cron`, the help for refused expressions in
:mod:`host.schedule.advice`.

Standard library only, and little of it (zoneinfo loads only for a zone other than UTC): this
package is meant to be cheap to import on Lambda cold starts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from host.schedule.advice import EXAMPLES, not_an_expression, wrong_field_count
from host.schedule.base import UTC, Schedule, ScheduleError, aware, format_instant, parse_instant, small_int
from host.schedule.cron import CronSchedule
from host.schedule.zones import first_instant, lookup_zone

__all__ = ["Schedule", "ScheduleError", "format_instant", "parse_instant", "parse_schedule"]


def parse_schedule(expr: str, tz: str = "UTC", *, start: datetime | None = None) -> Schedule:
    """Parse an EventBridge Scheduler expression: ``rate(N unit)``, ``cron(6 fields)`` or ``at(...)``.

    :param expr: The expression, e.g. ``rate(1 hour)``, ``cron(0 18 ? * MON-FRI *)``,
        ``at(2026-11-28T10:00:00)``.
    :param tz: IANA time zone in which ``cron()`` and ``at()`` read their wall-clock times.
    :param start: When a ``rate()`` schedule starts: it fires at ``start + k * period``
        (k = 0, 1, ...). Defaults to now. A ``cron()`` schedule does not fire before it;
        ``at()`` ignores it, as AWS does.
    :return: A :class:`Schedule`.
    :raises ScheduleError: The expression or time zone is invalid; the message names the
        offending part and says what to write instead.
    """
    if not isinstance(expr, str):
        raise ScheduleError(f"a schedule expression must be text such as {EXAMPLES}, not {expr!r}")
    zone = lookup_zone(tz)
    if start is not None:
        start = aware(start, "start")
    text = expr.strip()
    match = re.fullmatch(r"([A-Za-z]+)\((.*)\)", text, re.DOTALL)
    if match is None:
        raise ScheduleError(not_an_expression(text))
    keyword, body = match.group(1), match.group(2)
    if keyword not in ("rate", "cron", "at"):
        if keyword.lower() in ("rate", "cron", "at"):
            fixed = f"{keyword.lower()}({body})"
            raise ScheduleError(f"{text!r}: write the keyword in lower case: {fixed}")
        raise ScheduleError(f"{text!r}: unknown schedule type {keyword!r}; use {EXAMPLES}")
    if keyword == "rate":
        return _RateSchedule(text, body, tz, start)
    if keyword == "cron":
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleError(wrong_field_count(text, fields))
        return CronSchedule(text, fields, tz, zone, start)
    return _AtSchedule(text, body, tz, zone)


# --------------------------------------------------------------------------------------------
# rate(N unit)
# --------------------------------------------------------------------------------------------

_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


class _RateSchedule(Schedule):
    """Fires at ``start + k * period``; days are 24-hour durations, as AWS counts them."""

    kind = "rate"

    def __init__(self, text: str, body: str, tz: str, start: datetime | None):
        self.period, self.expression = _parse_rate(text, body)
        self.timezone = tz
        if start is None:
            start = datetime.now(UTC)
        self.start = start.astimezone(UTC).replace(microsecond=0)

    def next_after(self, after: datetime) -> datetime | None:
        after = aware(after, "after")
        if after < self.start:
            return self.start
        steps = (after - self.start) // self.period + 1
        try:
            return self.start + steps * self.period
        except OverflowError:
            return None

    def describe(self) -> str:
        return f"{self.expression} from {format_instant(self.start)}"


def _parse_rate(text: str, body: str) -> tuple[timedelta, str]:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError(
            f"{text!r}: rate() takes a value and a unit, e.g. rate(1 hour) or rate(5 minutes)"
        )
    value_text, unit = parts
    value = small_int(value_text, digits=9)
    if value is None or value == 0:
        raise ScheduleError(
            f"{text!r}: the value {value_text!r} must be a whole number from 1 to 999999999, "
            "e.g. rate(5 minutes)"
        )
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular.lower() not in _RATE_UNITS or unit != unit.lower():
        raise ScheduleError(
            f"{text!r}: unknown unit {unit!r}; use minute, minutes, hour, hours, day or days (lower case)"
        )
    if value == 1 and unit != singular:
        raise ScheduleError(f"{text!r}: with a value of 1 the unit is singular: rate(1 {singular})")
    if value > 1 and unit == singular:
        raise ScheduleError(f"{text!r}: with a value above 1 the unit is plural: rate({value} {singular}s)")
    try:
        period = value * _RATE_UNITS[singular]
    except OverflowError:
        raise ScheduleError(f"{text!r}: {value} {unit} is too long a period; use a smaller value") from None
    return period, f"rate({value} {unit})"


# --------------------------------------------------------------------------------------------
# at(yyyy-mm-ddThh:mm:ss)
# --------------------------------------------------------------------------------------------


class _AtSchedule(Schedule):
    """Fires once, at a wall-clock time of its zone (never, if the zone skips that time)."""

    kind = "at"

    def __init__(self, text: str, body: str, tz: str, zone: tzinfo):
        match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})", body.strip())
        if match is None:
            hint = ""
            if re.search(r"(Z|[+-]\d{2}:?\d{2})$", body.strip()):
                hint = " without an offset: it is a wall time in the schedule's time zone, given separately"
            raise ScheduleError(
                f"{text!r}: write the date and time as at(yyyy-mm-ddThh:mm:ss){hint}, "
                "e.g. at(2026-11-28T10:00:00)"
            )
        try:
            self.wall = datetime(*(int(part) for part in match.groups()))
        except ValueError as error:
            raise ScheduleError(f"{text!r}: not a real date and time ({error}); check the date") from None
        self.expression = f"at({self.wall.isoformat()})"
        self.timezone = tz
        try:
            self.instant = first_instant(self.wall, zone)
        except OverflowError:
            raise ScheduleError(f"{text!r}: the date is out of range in {tz}; check the year") from None

    def next_after(self, after: datetime) -> datetime | None:
        after = aware(after, "after")
        if self.instant is not None and self.instant > after:
            return self.instant
        return None

    def describe(self) -> str:
        if self.instant is None:
            return f"{self.expression} in {self.timezone} (a wall time the zone skips: it never fires)"
        return super().describe()
