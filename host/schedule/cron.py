"""Schedule expressions read the way AWS EventBridge Scheduler reads them: ``rate()``, ``cron()``, ``at()``.

One parser for the whole worker: the local scheduler, configuration checks and
``letsgo-worker schedule next`` all use :func:`parse_schedule`, so an expression that works on a
laptop behaves the same once deployed. ``cron()`` and ``at()`` are wall-clock times of an IANA time
zone; across daylight-saving changes they follow the Scheduler User Guide ("Daylight savings time
on EventBridge Scheduler", docs/schedules.md quotes it): a wall time the clock skips does not fire,
and a wall time the clock repeats fires once, at its first occurrence. ``rate()`` is a fixed
duration from the schedule's start, whatever the zone.

Standard library only, and little of it (zoneinfo loads only for a zone other than UTC): this
module is imported on Lambda cold starts.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Iterator

UTC = timezone.utc

#: How many fire times ``schedule next`` prints when ``--count`` is not given, and the most it prints.
DEFAULT_COUNT = 5
MAX_COUNT = 10_000

_EXAMPLES = "rate(5 minutes), cron(0 10 * * ? *) or at(2026-11-28T10:00:00)"
_CRON_FIELDS = "minutes hours day-of-month month day-of-week year"

# Cron years are limited to 1970-2199, so nothing can fire after the end of 2199 local time.
_LAST_POSSIBLE = datetime(2200, 1, 2, tzinfo=UTC)
_FIRST_SCAN = datetime(1969, 12, 30, tzinfo=UTC)


class ScheduleError(ValueError):
    """A schedule expression, time zone or instant that cannot be used; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


class Schedule:
    """A parsed schedule expression. Build one with :func:`parse_schedule`.

    ``str(schedule)`` is the normalized expression (``cron(0 18 ? * MON-FRI *)``);
    :meth:`describe` adds the time zone or start, for log lines.
    """

    #: ``"rate"``, ``"cron"`` or ``"at"``.
    kind: str
    #: The normalized expression: keyword in lower case, single spaces, names in upper case.
    expression: str
    #: The IANA time zone name the expression is read in (``rate()`` ignores it).
    timezone: str

    def next_after(self, after: datetime) -> datetime | None:
        """Return the first fire time strictly after ``after``, as an aware UTC datetime.

        :param after: An aware datetime (any zone).
        :return: The instant, or ``None`` when the schedule fires no more (an ``at()`` already
            past, a ``cron()`` whose years are over).
        """
        raise NotImplementedError

    def iter_after(self, after: datetime, count: int | None = None) -> Iterator[datetime]:
        """Yield successive fire times strictly after ``after`` (aware UTC datetimes, increasing).

        :param after: An aware datetime (any zone).
        :param count: Stop after this many; ``None`` for as long as the schedule fires.
        """
        produced = 0
        current = after
        while count is None or produced < count:
            found = self.next_after(current)
            if found is None:
                return
            yield found
            produced += 1
            current = found

    def describe(self) -> str:
        """The normalized expression and what it is read against, for log lines."""
        return f"{self.expression} in {self.timezone}"

    def __str__(self) -> str:
        return self.expression

    def __repr__(self) -> str:
        return f"<Schedule {self.describe()}>"


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
        raise ScheduleError(f"a schedule expression must be text such as {_EXAMPLES}, not {expr!r}")
    zone = _zone(tz)
    if start is not None:
        start = _aware(start, "start")
    text = expr.strip()
    match = re.fullmatch(r"([A-Za-z]+)\((.*)\)", text, re.DOTALL)
    if match is None:
        raise ScheduleError(_not_an_expression(text))
    keyword, body = match.group(1), match.group(2)
    if keyword not in ("rate", "cron", "at"):
        if keyword.lower() in ("rate", "cron", "at"):
            fixed = f"{keyword.lower()}({body})"
            raise ScheduleError(f"{text!r}: write the keyword in lower case: {fixed}")
        raise ScheduleError(f"{text!r}: unknown schedule type {keyword!r}; use {_EXAMPLES}")
    if keyword == "rate":
        return _RateSchedule(text, body, tz, start)
    if keyword == "cron":
        return _CronSchedule(text, body, tz, zone, start)
    return _AtSchedule(text, body, tz, zone)


def format_instant(instant: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with a ``Z``: ``2026-11-28T10:00:00Z``."""
    return instant.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant; one written without an offset is taken as UTC.

    :raises ScheduleError: ``text`` is not an ISO 8601 date or date-time.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, AttributeError, OverflowError):
        raise ScheduleError(
            f"{text!r} is not an ISO 8601 instant: write it like 2026-11-28T10:00:00Z "
            "(without an offset it is taken as UTC)"
        ) from None


def cli_schedule_next(args) -> int:
    """Run ``letsgo-worker schedule next EXPR [--tz TZ] [--after ISO8601] [--count N] [--json]``.

    Prints the next fire times in UTC ISO 8601, one per line (a JSON list with ``--json``). For
    ``rate()``, ``--after`` is the schedule's start and is itself the first fire time. Without
    ``--tz`` the zone is ``LETSGO_WORKER_SCHEDULE_TIMEZONE``, else UTC.

    :param args: An ``argparse.Namespace`` with ``expression``, ``tz``, ``after``, ``count``, ``json``.
    :return: 0, or 2 (message on stderr) for an invalid expression, time zone, ``--after`` or ``--count``.
    """
    count = getattr(args, "count", None)
    count = DEFAULT_COUNT if count is None else count
    try:
        if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ScheduleError(f"--count {count!r}: give a whole number from 1 to {MAX_COUNT}")
        after_text = getattr(args, "after", None)
        if after_text:
            after = parse_instant(after_text)
        else:
            after = datetime.now(UTC).replace(microsecond=0)
        tz = getattr(args, "tz", None) or os.environ.get("LETSGO_WORKER_SCHEDULE_TIMEZONE") or "UTC"
        schedule = parse_schedule(args.expression, tz)
        if schedule.kind == "rate":
            schedule = parse_schedule(args.expression, tz, start=after)
    except ScheduleError as error:
        print(f"letsgo-worker schedule next: {error}", file=sys.stderr)
        return 2
    if isinstance(schedule, _RateSchedule):
        # AWS: a rate schedule's StartDate is its first occurrence.
        fires = [schedule.start, *schedule.iter_after(schedule.start, count - 1)]
    else:
        fires = list(schedule.iter_after(after, count))
    lines = [format_instant(fire) for fire in fires]
    if getattr(args, "json", False):
        import json

        print(json.dumps(lines))
    else:
        for line in lines:
            print(line)
    if not fires:
        print(
            f"letsgo-worker schedule next: {schedule.describe()} fires no more after {format_instant(after)}",
            file=sys.stderr,
        )
    return 0


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
        after = _aware(after, "after")
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
    value = _small_int(value_text, digits=9)
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
            self.instant = _first_instant(self.wall, zone)
        except OverflowError:
            raise ScheduleError(f"{text!r}: the date is out of range in {tz}; check the year") from None

    def next_after(self, after: datetime) -> datetime | None:
        after = _aware(after, "after")
        if self.instant is not None and self.instant > after:
            return self.instant
        return None

    def describe(self) -> str:
        if self.instant is None:
            return f"{self.expression} in {self.timezone} (a wall time the zone skips: it never fires)"
        return super().describe()


# --------------------------------------------------------------------------------------------
# cron(minutes hours day-of-month month day-of-week year)
# --------------------------------------------------------------------------------------------

_MONTH_NAMES = {name: number for number, name in enumerate(
    "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}
_DAY_NAMES = {name: number for number, name in enumerate("SUN MON TUE WED THU FRI SAT".split(), start=1)}
_DAY_NAMES_BY_NUMBER = {number: name for name, number in _DAY_NAMES.items()}


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
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, "1-7 or SUN-SAT with , - * ? L #", names=_DAY_NAMES, step=False)
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


class _CronSchedule(Schedule):
    """Fires at every wall-clock minute the six fields name, in the schedule's zone."""

    kind = "cron"

    def __init__(self, text: str, body: str, tz: str, zone: tzinfo, start: datetime | None):
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleError(_wrong_field_count(text, fields))
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
        after = _aware(after, "after").astimezone(UTC)
        if self.start is not None and after < self.start:
            after = self.start - timedelta(microseconds=1)
        if after >= _LAST_POSSIBLE:
            return
        produced = 0
        for wall in self._walls_from(_scan_start(max(after, _FIRST_SCAN), self.zone)):
            if count is not None and produced >= count:
                return
            instant = _first_instant(wall, self.zone)
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


def _first_instant(wall: datetime, zone: tzinfo) -> datetime | None:
    """The instant the zone's clock first reads ``wall``; ``None`` if the clock skips it.

    ``fold=0`` picks the earlier of two readings when the clock falls back (AWS: "runs only
    once"); a reading that does not survive the round trip lies in a spring-forward gap (AWS:
    "your schedule invocation is skipped").
    """
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


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
        step = _small_int(step_text)
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
    number = _small_int(token)
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


def _small_int(text: str, digits: int = 4) -> int | None:
    """``text`` as a non-negative integer of at most ``digits`` ASCII digits, else ``None``."""
    if text.isascii() and text.isdigit() and len(text) <= digits:
        return int(text)
    return None


def _parse_days(fields: list[str], expr: str) -> _DayRule:
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
            candidate = f"cron({' '.join(changed)})"
            if _parses(candidate):
                choices.append(candidate)
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
        nth = _small_int(nth_text)
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


# --------------------------------------------------------------------------------------------
# Messages that suggest the right expression
# --------------------------------------------------------------------------------------------


def _wrong_field_count(text: str, fields: list[str]) -> str:
    found = f"{text!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}"
    need = f"cron() takes 6: {_CRON_FIELDS}"
    if len(fields) == 5:
        return f"{found}; {need}. {_five_field_advice(fields)}"
    if len(fields) == 7:
        dropped = f"cron({' '.join(fields[1:])})"
        if _parses(dropped):
            return f"{found}; {need}. If the first is seconds (Quartz style), drop it: {dropped}"
    return f"{found}; {need}, e.g. cron(0 10 * * ? *)"


def _five_field_advice(fields: list[str]) -> str:
    """Advice for five fields: AWS fields without the year, or a unix crontab line to translate."""
    if "?" in fields[2:5]:
        with_year = f"cron({' '.join(fields)} *)"
        if _parses(with_year):
            return f"Add the year field: {with_year}"
    minute, hour, day_of_month, month, day_of_week = fields
    unix = (
        "This looks like unix cron, which EventBridge Scheduler rejects: AWS adds a year field, "
        "numbers days of the week 1-7 from SUN (unix: 0-6) and needs '?' in one of the two day fields."
    )
    if day_of_week == "*":
        aws_days = _translate_unix_days("*")
    else:
        aws_days = _translate_unix_days(day_of_week)
        if aws_days is None:
            return f"{unix} Write the six fields by hand, e.g. cron(0 10 * * ? *)"
    if day_of_month != "*" and day_of_week != "*":
        monthly = f"cron({minute} {hour} {day_of_month} {month} ? *)"
        weekly = f"cron({minute} {hour} ? {month} {aws_days} *)"
        if _parses(monthly) and _parses(weekly):
            return (
                f"{unix} Unix cron runs it when either the day of the month or the day of the week "
                f"matches, which one AWS expression cannot say: use two schedules, {monthly} and {weekly}"
            )
        return f"{unix} Write the six fields by hand, e.g. cron(0 10 * * ? *)"
    if day_of_week == "*" or aws_days == "*":
        suggestion = f"cron({minute} {hour} {day_of_month} {month} ? *)"
    else:
        suggestion = f"cron({minute} {hour} ? {month} {aws_days} *)"
    if _parses(suggestion):
        return f"{unix} The same schedule in AWS form: {suggestion}"
    return f"{unix} Write the six fields by hand, e.g. cron(0 10 * * ? *)"


_UNIX_DAY_NAMES = {name: number - 1 for name, number in _DAY_NAMES.items()}


def _translate_unix_days(text: str) -> str | None:
    """A unix day-of-week field (0-7, 0 and 7 = Sunday) rewritten in AWS numbering (1-7 = SUN-SAT)."""
    text = text.upper()
    if text == "*":
        return "*"
    days: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            return None
        step = int(step_text) if slash else 1
        try:
            if base == "*":
                first, last = 0, 6
            elif "-" in base:
                low, _, high = base.partition("-")
                first, last = _unix_day(low), _unix_day(high)
            else:
                first = _unix_day(base)
                last = 6 if slash else first
        except ValueError:
            return None
        if first > last:
            return None
        days.update(day % 7 for day in range(first, last + 1, step))
    aws_days = sorted(day + 1 for day in days)
    if len(aws_days) == 7:
        return "*"
    use_names = not any(character.isdigit() for character in text)
    return _compact(aws_days, use_names)


def _unix_day(token: str) -> int:
    if token in _UNIX_DAY_NAMES:
        return _UNIX_DAY_NAMES[token]
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(token)


def _compact(days: list[int], use_names: bool) -> str:
    """1,2,3,5 -> "1-3,5" (or "SUN-TUE,THU" with names)."""
    show = _DAY_NAMES_BY_NUMBER.get if use_names else str
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{show(run[0])}-{show(run[-1])}")
        else:
            parts.extend(show(day) for day in run)
    return ",".join(parts)


def _parses(expression: str) -> bool:
    try:
        parse_schedule(expression)
    except ScheduleError:
        return False
    return True


def _not_an_expression(text: str) -> str:
    fields = text.split()
    if text and "(" not in text and len(fields) == 6 and _parses(f"cron({text})"):
        return f"{text!r} is not a schedule expression: wrap the fields in cron(): cron({text})"
    if text and "(" not in text and len(fields) == 5:
        return f"{text!r} is not a schedule expression: cron fields go inside cron(). {_five_field_advice(fields)}"
    return f"{text!r} is not a schedule expression: use {_EXAMPLES}"


# --------------------------------------------------------------------------------------------
# Time zones and instants
# --------------------------------------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    """The IANA zone called ``name``; UTC needs no time-zone database."""
    if name == "UTC":
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        pass
    try:
        ZoneInfo("America/New_York")
    except ZoneInfoNotFoundError:
        raise ScheduleError(
            f"time zone {name!r} cannot be looked up: this machine has no time-zone database; "
            "install the tzdata package (pip install tzdata)"
        ) from None
    suggestion = _close_zone(name) if isinstance(name, str) and name else None
    hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
    raise ScheduleError(
        f"unknown time zone {name!r}{hint}: use an IANA name such as UTC, America/New_York or "
        "Europe/Berlin (https://www.iana.org/time-zones)"
    )


def _close_zone(name: str) -> str | None:
    import difflib
    import zoneinfo

    names = zoneinfo.available_timezones()
    lowered = {zone.lower(): zone for zone in names}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.8)
    return close[0] if close else None


def _aware(instant: datetime, what: str) -> datetime:
    if not isinstance(instant, datetime):
        raise ScheduleError(f"{what} must be a datetime, not {instant!r}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ScheduleError(
            f"{what} {instant.isoformat()} has no time zone: pass an aware datetime, "
            "e.g. datetime.now(timezone.utc)"
        )
    return instant
