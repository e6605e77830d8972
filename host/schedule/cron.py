"""``cron(minutes hours day-of-month month day-of-week year)``: the six fields and their schedule.

Each field is read with the syntax the AWS table allows in it; the two day fields become a
:class:`_DayRule` (exactly one of them is ``?``). A schedule fires at every wall-clock minute the
fields name, in its zone, with the daylight-saving rules of :mod:`host.schedule.zones`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Iterator

from host.schedule.base import UTC, Schedule, ScheduleError, aware, format_instant, small_int
from host.schedule.zones import first_instant

# Cron years are limited to 1970-2199, so nothing can fire after the end of 2199 local time.
_LAST_POSSIBLE = datetime(2200, 1, 2, tzinfo=UTC)
_FIRST_SCAN = datetime(1969, 12, 30, tzinfo=UTC)

_MONTH_NAMES = {name: number for number, name in enumerate(
    "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}
# Unlike unix cron, AWS numbers the days of the week 1 (SUN) to 7 (SAT).
DAY_NAMES = {name: number for number, name in enumerate("SUN MON TUE WED THU FRI SAT".split(), start=1)}
DAY_NAMES_BY_NUMBER = {number: name for name, number in DAY_NAMES.items()}


class _Field:
    """One cron field: its range, names and the syntax the AWS table allows in it."""

    def __init__(self, name: str, low: int, high: int, syntax: str, *, names=None, step=True, wraps=True):
        self.name, self.low, self.high = name, low, high
        self.syntax = syntax
        self.names = names or {}
        self.step = step
        self.wraps = wraps

    def hint(self) -> str:
        return f"the {self.name} field takes {self.syntax}"


_MINUTES = _Field("minutes", 0, 59, "0-59 with , - * /")
_HOURS = _Field("hours", 0, 23, "0-23 with , - * /")
_DAY_OF_MONTH = _Field("day-of-month", 1, 31, "1-31 with , - * / ? L W")
_MONTH = _Field("month", 1, 12, "1-12 or JAN-DEC with , - * /", names=_MONTH_NAMES)
# The AWS table lists no '/' for day-of-week; a list says the same thing (1,3,5,7).
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, "1-7 or SUN-SAT with , - * ? L #", names=DAY_NAMES, step=False)
_YEAR = _Field("year", 1970, 2199, "1970-2199 with , - * /", wraps=False)


class _DayRule:
    """Which days of a given month a cron expression names (its day-of-month or day-of-week field)."""

    def __init__(self, kind: str, values: tuple[int, ...] = (), number: int = 0, nth: int = 0):
        self.kind, self.values, self.number, self.nth = kind, values, number, nth

    def days(self, year: int, month: int) -> list[int]:
        first_of_month = date(year, month, 1)
        last = ((first_of_month + timedelta(days=31)).replace(day=1) - first_of_month).days
        # AWS numbers days 1 (SUN) to 7 (SAT); date.weekday() numbers them 0 (MON) to 6 (SUN).
        first_aws = (first_of_month.weekday() + 1) % 7 + 1
        if self.kind == "days":
            return [day for day in self.values if day <= last]
        if self.kind == "last":
            return [last]
        if self.kind == "last_weekday":
            return [_nearest_weekday(last, first_aws, last)]
        if self.kind == "nearest_weekday":
            # 31W in a 30-day month means the weekday nearest its last day, as croniter reads it.
            return [_nearest_weekday(min(self.number, last), first_aws, last)]
        if self.kind == "weekdays":
            return [day for day in range(1, last + 1) if (first_aws + day - 2) % 7 + 1 in self.values]
        first = 1 + (self.number - first_aws) % 7
        if self.kind == "last_of_weekday":
            return [first + 7 * ((last - first) // 7)]
        day = first + 7 * (self.nth - 1)  # "nth_weekday"
        return [day] if day <= last else []


def _nearest_weekday(day: int, first_aws: int, last: int) -> int:
    """The Monday-Friday day nearest ``day`` without leaving the month (Quartz's ``W``)."""
    weekday = (first_aws + day - 2) % 7 + 1
    if weekday == 7:  # Saturday: the Friday before, or the Monday after when the 1st is a Saturday
        return day - 1 if day > 1 else day + 2
    if weekday == 1:  # Sunday: the Monday after, or the Friday before when it ends the month
        return day + 1 if day < last else day - 2
    return day


class CronSchedule(Schedule):
    """Fires at every wall-clock minute the six fields name, in the schedule's zone."""

    kind = "cron"

    def __init__(self, text: str, fields: Sequence[str], tz: str, zone: tzinfo, start: datetime | None):
        """Read the six ``fields`` of the expression ``text`` (the parser has counted them).

        :raises ScheduleError: A field is invalid; the message names it and what it takes.
        """
        self.minutes = _parse_list(_MINUTES, fields[0], text)
        self.hours = _parse_list(_HOURS, fields[1], text)
        self.months = _parse_list(_MONTH, fields[3], text)
        self.years = _parse_list(_YEAR, fields[5], text)
        self.day_rule = _parse_days(fields, text)
        self.expression = "cron(" + " ".join(field.upper() for field in fields) + ")"
        self.timezone = tz
        self.zone = zone
        self.start = start.astimezone(UTC) if start is not None else None

    def next_after(self, after: datetime) -> datetime | None:
        return next(self.iter_after(after, 1), None)

    def iter_after(self, after: datetime, count: int | None = None) -> Iterator[datetime]:
        after = aware(after, "after").astimezone(UTC)
        if self.start is not None and after < self.start:
            after = self.start - timedelta(microseconds=1)
        if after >= _LAST_POSSIBLE:
            return
        produced = 0
        for wall in self._walls_from(_scan_start(max(after, _FIRST_SCAN), self.zone)):
            if count is not None and produced >= count:
                return
            instant = first_instant(wall, self.zone)
            # Readings map to instants in the same order (see _scan_start), so skipping those
            # at or before `after` leaves an increasing sequence.
            if instant is None or instant <= after:
                continue
            yield instant
            produced += 1

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        """Every wall-clock minute the fields name, from ``start`` on, skipping field by field."""
        for year in self.years[bisect.bisect_left(self.years, start.year):]:
            in_first_year = year == start.year
            months = self.months[bisect.bisect_left(self.months, start.month):] if in_first_year else self.months
            for month in months:
                in_first_month = in_first_year and month == start.month
                for day in self.day_rule.days(year, month):
                    if in_first_month and day < start.day:
                        continue
                    on_first_day = in_first_month and day == start.day
                    hours = self.hours[bisect.bisect_left(self.hours, start.hour):] if on_first_day else self.hours
                    for hour in hours:
                        in_first_hour = on_first_day and hour == start.hour
                        minutes = (
                            self.minutes[bisect.bisect_left(self.minutes, start.minute):]
                            if in_first_hour
                            else self.minutes
                        )
                        for minute in minutes:
                            yield datetime(year, month, day, hour, minute)

    def describe(self) -> str:
        if self.start is not None:
            return f"{super().describe()} from {format_instant(self.start)}"
        return super().describe()


def _scan_start(after: datetime, zone: tzinfo) -> datetime:
    """The wall-clock minute the zone's clock shows at ``after``: where the search begins.

    Nothing earlier can fire after ``after``: readings map to instants in the same order (each
    taken at its first occurrence), and a reading the clock repeats after ``after`` already had
    its first occurrence before it.
    """
    return after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)


def _parse_list(field: _Field, text: str, expr: str) -> list[int]:
    """Parse a field made of numbers, names, ranges, steps and lists into its sorted values."""
    if text == "?":
        raise ScheduleError(f"{expr!r}: '?' is only for day-of-month or day-of-week; {field.hint()}")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{expr!r}: the {field.name} field {text!r} has an empty list item; "
                                f"{field.hint()}")
        values.update(_parse_item(field, item, text, expr))
    return sorted(values)


def _parse_item(field: _Field, item: str, text: str, expr: str) -> list[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not field.step:
            raise ScheduleError(
                f"{expr!r}: '/' is not allowed in the {field.name} field ({item!r}); list the days "
                f"instead, e.g. 1,3,5,7 or MON,WED,FRI; {field.hint()}"
            )
        span = field.high - field.low + 1
        step = small_int(step_text)
        if step is None or not 1 <= step <= span:
            raise ScheduleError(
                f"{expr!r}: the step in {item!r} ({field.name} field) must be a whole number from 1 "
                f"to {span}, e.g. 0/15"
            )
    if base == "*":
        first, last = field.low, field.high
    elif "-" in base:
        low_text, _, high_text = base.partition("-")
        first, last = _value(field, low_text, item, expr), _value(field, high_text, item, expr)
    else:
        first = _value(field, base, item, expr)
        last = field.high if slash else first
    if first <= last:
        sequence = list(range(first, last + 1))
    elif field.wraps:
        # A range that runs past the end wraps around, as in AWS's own example cron(0/30 20-2 ...).
        sequence = list(range(first, field.high + 1)) + list(range(field.low, last + 1))
    else:
        raise ScheduleError(
            f"{expr!r}: the {field.name} range {item!r} runs backwards; write it as {last}-{first}"
        )
    return sequence[::step]


def _value(field: _Field, token: str, item: str, expr: str) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.names[upper]
    number = small_int(token)
    if number is not None:
        if field.low <= number <= field.high:
            return number
        extra = ""
        if field is _DAY_OF_WEEK and number == 0:
            extra = " (unix cron's 0 for Sunday is 1 here: AWS numbers days 1-7 from SUN)"
        raise ScheduleError(
            f"{expr!r}: {number} is out of range in the {field.name} field{extra}; {field.hint()}"
        )
    what = {"month": "a month", "day-of-week": "a day of the week"}.get(field.name, "a number")
    raise ScheduleError(f"{expr!r}: {token!r} in the {field.name} field is not {what}; {field.hint()}")


def _parse_days(fields: Sequence[str], expr: str) -> _DayRule:
    """Parse the two day fields, exactly one of which must be '?'."""
    day_of_month, day_of_week = fields[2], fields[4]
    if day_of_month == "?" and day_of_week == "?":
        raise ScheduleError(
            f"{expr!r}: day-of-month and day-of-week are both '?'; exactly one of them is '?', e.g. "
            "cron(0 10 * * ? *) for every day or cron(0 10 ? * MON *) for Mondays"
        )
    if day_of_month != "?" and day_of_week != "?":
        choices = []
        for keep_month_day in (True, False):
            changed = list(fields)
            changed[4 if keep_month_day else 2] = "?"
            if changed[2] == changed[4] == "?":
                continue
            if cron_parses(changed):
                choices.append(f"cron({' '.join(changed)})")
        either = f", e.g. {' or '.join(choices)}" if choices else ""
        raise ScheduleError(
            f"{expr!r}: day-of-month {day_of_month!r} and day-of-week {day_of_week!r} are both given; "
            f"AWS cannot combine them: put '?' in one of them (a '*' counts as given){either}"
        )
    if day_of_week == "?":
        return _parse_day_of_month(day_of_month.upper(), expr)
    return _parse_day_of_week(day_of_week.upper(), expr)


def _parse_day_of_month(text: str, expr: str) -> _DayRule:
    if text == "L":
        return _DayRule("last")
    if text == "LW":
        return _DayRule("last_weekday")
    nearest = re.fullmatch(r"(\d{1,4})W", text)
    if nearest:
        day = int(nearest.group(1))
        if not 1 <= day <= 31:
            raise ScheduleError(f"{expr!r}: {text!r} names day {day}; W follows a day from 1 to 31, e.g. 15W")
        return _DayRule("nearest_weekday", number=day)
    if "L" in text or "W" in text:
        raise ScheduleError(
            f"{expr!r}: {text!r} in the day-of-month field: L (last day), LW (last weekday) and nW "
            "(weekday nearest day n) stand alone, without lists, ranges or offsets; "
            f"{_DAY_OF_MONTH.hint()}"
        )
    return _DayRule("days", tuple(_parse_list(_DAY_OF_MONTH, text, expr)))


def _parse_day_of_week(text: str, expr: str) -> _DayRule:
    if "#" in text:
        if "," in text:
            raise ScheduleError(
                f"{expr!r}: with '#' the day-of-week field holds one expression only ({text!r}); "
                "use one schedule per weekday#n"
            )
        day_text, _, nth_text = text.partition("#")
        day = _value(_DAY_OF_WEEK, day_text, text, expr)
        nth = small_int(nth_text)
        if nth is None or not 1 <= nth <= 5:
            raise ScheduleError(
                f"{expr!r}: in {text!r} the number after '#' must be 1 to 5 (the nth such day of the "
                "month), e.g. 2#1 for the first Monday"
            )
        return _DayRule("nth_weekday", number=day, nth=nth)
    if text == "L":
        return _DayRule("weekdays", (7,))  # alone, L is the last day of the week: Saturday
    if text.endswith("L") and "," not in text and "-" not in text:
        return _DayRule("last_of_weekday", number=_value(_DAY_OF_WEEK, text[:-1], text, expr))
    if "L" in text:  # no day name contains an L
        raise ScheduleError(
            f"{expr!r}: {text!r} in the day-of-week field: L stands alone (Saturday) or after one day "
            f"(6L, the last Friday of the month); {_DAY_OF_WEEK.hint()}"
        )
    return _DayRule("weekdays", tuple(_parse_list(_DAY_OF_WEEK, text, expr)))


def cron_parses(fields: Sequence[str]) -> bool:
    """Whether ``cron(fields)`` is a valid expression: advice suggests only expressions that work."""
    if len(fields) != 6:
        return False
    try:
        CronSchedule(f"cron({' '.join(fields)})", fields, "UTC", UTC, None)
    except ScheduleError:
        return False
    return True
