"""Schedule expressions, checked against answers from outside host/schedule/.

Where the expected values come from:

* AWS's documentation: the examples in tests/schedule_cases.json (each names its page) and the
  daylight-saving rules of the Scheduler User Guide, quoted where they are used;
* croniter and cronsim, two independent cron evaluators, after renumbering AWS's day-of-week
  (1-7 = SUN-SAT) to unix's (0-6 = SUN-SAT) and turning '?' into '*';
* python-dateutil's rrule and tz (its own reader of the tz database) for daylight-saving cases;
* a calendar, for the few values written by hand, with the facts they rest on next to them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cronsim import CronSim
from croniter import CroniterBadDateError, croniter
from dateutil import rrule
from dateutil import tz as dateutil_tz

from host.cli.schedule import cli_schedule_next
from host.schedule.expressions import ScheduleError, format_instant, parse_instant, parse_schedule

UTC = timezone.utc
CASES = json.loads((Path(__file__).parent / "schedule_cases.json").read_text())
REPO = Path(__file__).resolve().parent.parent


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fires(expression: str, after: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    return list(parse_schedule(expression, tz).iter_after(after, count))


# --------------------------------------------------------------------------------------------
# Oracles: AWS syntax rewritten for croniter and cronsim
# --------------------------------------------------------------------------------------------


def unix_day_of_week(aws_field: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, names, nL, n#k, L) in unix numbering (0-6 = SUN-SAT)."""
    if aws_field == "?":
        return "*"
    if aws_field == "L":
        return "6"
    return re.sub(r"\d+(?=#)|\d+(?=L)|(?<![#\d])\d+", lambda m: str(int(m.group()) - 1), aws_field)


def croniter_expression(aws: str) -> str:
    """cron(m h dom mon dow year) as croniter's 7-field form (m h dom mon dow second year)."""
    minute, hour, day, month, weekday, year = aws[5:-1].split()
    weekday = unix_day_of_week(weekday)
    last = re.fullmatch(r"(\d)L", weekday)
    if last:
        weekday = f"L{last.group(1)}"  # croniter writes "last Friday" as L5
    return f"{minute} {hour} {'*' if day == '?' else day} {month} {weekday} 0 {year}"


def cronsim_expression(aws: str) -> str:
    minute, hour, day, month, weekday, _year = aws[5:-1].split()
    return f"{minute} {hour} {'*' if day == '?' else day} {month} {unix_day_of_week(weekday)}"


def croniter_fires(aws: str, after: datetime, count: int) -> list[datetime]:
    """Up to ``count`` fire times from croniter; fewer when the year field runs out (AWS's years
    end with 2199, croniter's do not)."""
    iterator = croniter(croniter_expression(aws), after.replace(tzinfo=None))
    found = []
    while len(found) < count:
        try:
            fire = iterator.get_next(datetime).replace(tzinfo=UTC)
        except CroniterBadDateError:
            break
        if fire.year > 2199:
            break
        found.append(fire)
    return found


def cronsim_fires(aws: str, after: datetime, count: int) -> list[datetime]:
    iterator = CronSim(cronsim_expression(aws), after.replace(tzinfo=None))
    return [next(iterator).replace(tzinfo=UTC) for _ in range(count)]


def test_oracle_translation_renumbers_days():
    assert unix_day_of_week("MON-FRI") == "MON-FRI"
    assert unix_day_of_week("2-6") == "1-5"
    assert unix_day_of_week("1,7") == "0,6"
    assert unix_day_of_week("6L") == "5L"
    assert unix_day_of_week("2#1") == "1#1"
    assert croniter_expression("cron(15 10 ? * 6L 2019-2022)") == "15 10 * * L5 0 2019-2022"


# --------------------------------------------------------------------------------------------
# AWS's documented examples
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["examples"], ids=lambda case: f"{case['expression']}@{case['tz']}")
def test_aws_documented_example(case):
    schedule = parse_schedule(case["expression"], case["tz"])
    after = utc(case["after"])
    expected = [utc(text) for text in case["fires"]]
    got = list(schedule.iter_after(after, len(expected)))
    assert got == expected, case["meaning"]
    if case.get("then") == "none":
        assert schedule.next_after(expected[-1]) is None
    assert str(schedule) == case["expression"]


@pytest.mark.parametrize(
    "case",
    [
        case
        for case in CASES["examples"]
        # croniter does not read ranges that wrap past midnight (20-2): see test_wrapping_ranges...
        if case["tz"] == "UTC" and case["expression"].startswith("cron") and "20-2" not in case["expression"]
    ],
    ids=lambda case: case["expression"],
)
def test_aws_documented_example_agrees_with_croniter(case):
    after = utc(case["after"])
    assert fires(case["expression"], after, 40) == croniter_fires(case["expression"], after, 40)


# --------------------------------------------------------------------------------------------
# Plain fields, names, ranges, steps, lists, years: croniter
# --------------------------------------------------------------------------------------------

PLAIN = [
    "cron(0 10 * * ? *)",
    "cron(*/7 * * * ? *)",
    "cron(10-50/10 3 * * ? *)",
    "cron(5/20 */5 * * ? *)",
    "cron(0 0 1-7,15 * ? *)",
    "cron(30 6 */10 * ? *)",
    "cron(0 12 ? JAN,JUL * *)",
    "cron(0 12 15 FEB-APR ? *)",
    "cron(0 12 29 2 ? *)",
    "cron(45 23 ? * SUN *)",
    "cron(0 8 ? * 1,7 *)",
    "cron(0 8 ? * TUE-THU *)",
    "cron(0 8 ? * 2-6 *)",
    "cron(0 8 ? * mon,wed,fri *)",
    "cron(0 9 1 */3 ? *)",
    "cron(15 4 31 * ? *)",
    "cron(0 0 1 1 ? 2027-2030)",
    "cron(0 0 ? * FRI 2026,2028)",
    "cron(0 0 1 * ? 2026/2)",
    "cron(* 5 1 1 ? *)",
]


@pytest.mark.parametrize("expression", PLAIN)
@pytest.mark.parametrize("after", ["2025-12-31T23:59:59Z", "2026-02-28T12:00:00Z", "2027-07-15T08:00:00Z"])
def test_plain_expressions_agree_with_croniter(expression, after):
    start = utc(after)
    assert fires(expression, start, 60) == croniter_fires(expression, start, 60)


def test_wrapping_ranges_match_their_unwrapped_lists():
    """AWS's own example uses hours 20-2; it must mean 20,21,22,23,0,1,2 (and FRI-MON likewise)."""
    start = utc("2026-01-01T00:00:00Z")
    assert fires("cron(0/30 20-2 ? * MON-FRI *)", start, 200) == croniter_fires(
        "cron(0/30 20,21,22,23,0,1,2 ? * MON-FRI *)", start, 200
    )
    assert fires("cron(0 9 ? * FRI-MON *)", start, 50) == croniter_fires("cron(0 9 ? * 6,7,1,2 *)", start, 50)
    assert fires("cron(0 0 1 NOV-FEB ? *)", start, 12) == croniter_fires("cron(0 0 1 11,12,1,2 ? *)", start, 12)


# --------------------------------------------------------------------------------------------
# L, LW, nL, n#k: cronsim; nW: croniter
# --------------------------------------------------------------------------------------------

SPECIAL_DAYS = (
    ["cron(0 6 L * ? *)", "cron(0 6 LW * ? *)", "cron(30 7 ? * L *)"]
    + [f"cron(15 10 ? * {day}L *)" for day in range(1, 8)]
    + [f"cron(0 9 ? * {day}#{nth} *)" for day in range(1, 8) for nth in range(1, 6)]
    + ["cron(0 9 ? * MON#1 *)", "cron(0 9 ? * fri#3 *)", "cron(0 9 ? * SATL *)"]
)


@pytest.mark.parametrize("expression", SPECIAL_DAYS)
def test_last_and_nth_weekday_agree_with_cronsim(expression):
    start = utc("2026-01-01T00:00:00Z")
    oracle = expression.upper().replace("SATL", "7L")
    assert fires(expression, start, 30) == cronsim_fires(oracle, start, 30)


@pytest.mark.parametrize("day", range(1, 32))
def test_nearest_weekday_agrees_with_croniter(day):
    """nW: the Monday-Friday day nearest day n, never leaving the month (1W on a Saturday is
    the Monday after; a 31W in a shorter month counts from its last day, as croniter reads it)."""
    expression = f"cron(0 9 {day}W * ? *)"
    start = utc("2025-12-31T00:00:00Z")
    assert fires(expression, start, 48) == croniter_fires(expression, start, 48)


def test_nearest_weekday_hand_cases():
    # 1 Feb 2026 is a Sunday -> Monday 2nd; 1 Aug 2026 is a Saturday -> Monday 3rd (not Friday
    # 31 July: W never leaves the month); 31 Jan 2027 is a Sunday -> Friday 29th.
    assert fires("cron(0 0 1W * ? *)", utc("2026-01-31T00:00:00Z"), 1) == [utc("2026-02-02T00:00:00Z")]
    assert fires("cron(0 0 1W * ? *)", utc("2026-07-31T00:00:00Z"), 1) == [utc("2026-08-03T00:00:00Z")]
    assert fires("cron(0 0 31W * ? *)", utc("2027-01-15T00:00:00Z"), 1) == [utc("2027-01-29T00:00:00Z")]


def test_no_fifth_monday_means_no_fire_that_month():
    # February 2026 has four Mondays (2, 9, 16, 23); March 2026 has five (2 ... 30).
    assert fires("cron(0 9 ? * 2#5 *)", utc("2026-02-01T00:00:00Z"), 1) == [utc("2026-03-30T09:00:00Z")]


# --------------------------------------------------------------------------------------------
# Daylight saving time
# --------------------------------------------------------------------------------------------
# Scheduler User Guide, "Daylight savings time on EventBridge Scheduler"
# (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#daylist-savings-time):
# "When time shifts forward in the Spring, if a cron expression falls on a non-existent date and
# time, your schedule invocation is skipped. When time shifts backwards in the Fall, your schedule
# runs only once and does not repeat its invocation."

TRANSITIONS = [
    # zone, a day around which the clock changes in 2026
    ("America/New_York", "2026-03-08"),  # 02:00 EST -> 03:00 EDT
    ("America/New_York", "2026-11-01"),  # 02:00 EDT -> 01:00 EST
    ("Europe/Berlin", "2026-03-29"),  # 02:00 CET -> 03:00 CEST
    ("Europe/Berlin", "2026-10-25"),  # 03:00 CEST -> 02:00 CET
    ("Australia/Sydney", "2026-04-05"),  # 03:00 AEDT -> 02:00 AEST
    ("Australia/Sydney", "2026-10-04"),  # 02:00 AEST -> 03:00 AEDT
]

# Each cron expression with the rrule that generates the same wall-clock times.
RRULES = {
    "cron(30 2 * * ? *)": dict(freq=rrule.DAILY, byhour=2, byminute=30, bysecond=0),
    "cron(30 1 * * ? *)": dict(freq=rrule.DAILY, byhour=1, byminute=30, bysecond=0),
    "cron(0/30 * * * ? *)": dict(freq=rrule.MINUTELY, interval=30, bysecond=0),
    "cron(0 * * * ? *)": dict(freq=rrule.HOURLY, byminute=0, bysecond=0),
    "cron(0/20 2 * * ? *)": dict(freq=rrule.DAILY, byhour=2, byminute=(0, 20, 40), bysecond=0),
}


def dateutil_expected(rule: dict, zone_name: str, day: str) -> list[datetime]:
    """Wall times from rrule; skip those dateutil says do not exist; take the first reading."""
    zone = dateutil_tz.gettz(zone_name)
    start = datetime.fromisoformat(day) - timedelta(days=2)
    walls = rrule.rrule(dtstart=start, until=start + timedelta(days=4), **rule)
    expected = []
    for wall in walls:
        local = wall.replace(tzinfo=zone)  # fold=0: the first of two readings
        if not dateutil_tz.datetime_exists(local):
            continue
        expected.append(local.astimezone(UTC))
    return expected


@pytest.mark.parametrize("expression", sorted(RRULES))
@pytest.mark.parametrize("zone, day", TRANSITIONS)
def test_dst_agrees_with_rrule_and_dateutil(expression, zone, day):
    expected = dateutil_expected(RRULES[expression], zone, day)
    start = datetime.fromisoformat(day) - timedelta(days=2)
    after = start.replace(tzinfo=dateutil_tz.gettz(zone)).astimezone(UTC) - timedelta(seconds=1)
    assert fires(expression, after, len(expected), zone) == expected


@pytest.mark.parametrize("expression", ["cron(30 2 * * ? *)", "cron(15 1 * * ? *)", "cron(0/30 * * * ? *)"])
@pytest.mark.parametrize("zone, day", TRANSITIONS)
def test_dst_agrees_with_a_minute_by_minute_utc_scan(expression, zone, day):
    """The same rule seen from the other side: every UTC minute whose local reading croniter
    matches fires, except a reading that dateutil says is the repeat of an earlier one."""
    zone_info = dateutil_tz.gettz(zone)
    unix = cronsim_expression(expression)
    begin = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(hours=18)
    expected = []
    for minute in range(36 * 60):
        instant = begin + timedelta(minutes=minute)
        local = instant.astimezone(zone_info)
        if local.minute % 15:
            continue  # only for speed: every expression here fires on a quarter hour
        repeated = dateutil_tz.datetime_ambiguous(local) and getattr(local, "fold", 0) == 1
        if croniter.match(unix, local.replace(tzinfo=None)) and not repeated:
            expected.append(instant)
    got = [fire for fire in fires(expression, begin - timedelta(seconds=1), len(expected) + 1, zone)]
    assert got[: len(expected)] == expected
    assert got[len(expected)] >= begin + timedelta(hours=36)


FUZZ_ZONES = [
    "America/New_York", "Europe/Berlin", "Australia/Sydney",
    "Australia/Lord_Howe",  # moves its clock by 30 minutes
    "Antarctica/Troll",  # moves its clock by 2 hours
    "Pacific/Chatham", "America/St_Johns", "America/Sao_Paulo", "Asia/Kolkata",
]


def wall_times_from_oracle(unix: str, begin: datetime):
    """Naive wall-clock fire times from cronsim (croniter for nW, which cronsim lacks)."""
    if re.search(r"\d+W", unix):
        iterator = croniter(unix, begin)
        while True:
            yield iterator.get_next(datetime)
    try:
        yield from CronSim(unix, begin)
    except Exception:  # cronsim refuses a day that no listed month has (31 in April): no fire
        return


def test_random_expressions_in_many_zones_agree_with_cronsim_and_dateutil():
    """Seeded random expressions: the oracle lists wall times without any zone, then dateutil
    drops those that do not exist and takes the first reading of the others. (dateutil applies
    no rules past 2037, the end of the zone files' explicit transitions, so the check stops there.)"""
    choose = __import__("random").Random(20261128).choice
    for _ in range(150):
        minute = choose(["*", "0/15", "5,35", "10-20", "*/7", "0", "30", "59"])
        hour = choose(["*", "1-3", "2", "0/6", "22,23,0,1", "1", "3", "0-4/2"])
        month = choose(["*", "3,10", "11,12,1,2", "4", "*/2"])
        if choose([True, False]):
            day_of_month, day_of_week = choose(["*", "L", "LW", "15W", "1W", "31W", "1-10", "*/3", "31"]), "?"
        else:
            day_of_month, day_of_week = "?", choose(["MON-FRI", "1", "6L", "2#2", "L", "1,7", "7#5", "3L"])
        expression = f"cron({minute} {hour} {day_of_month} {month} {day_of_week} *)"
        zone_name = choose(FUZZ_ZONES)
        zone = dateutil_tz.gettz(zone_name)
        after = datetime(2008 + choose(range(22)), choose(range(1, 13)), choose(range(1, 29)),
                         choose(range(24)), choose(range(60)), tzinfo=UTC)
        got = [fire for fire in fires(expression, after, 20, zone_name) if fire.year < 2037]
        expected = []
        begin = after.astimezone(zone).replace(tzinfo=None) - timedelta(days=2)
        for wall in wall_times_from_oracle(cronsim_expression(expression), begin):
            local = wall.replace(tzinfo=zone)
            if len(expected) == 20 or local.year >= 2037:
                break
            if dateutil_tz.datetime_exists(local) and local.astimezone(UTC) > after:
                expected.append(local.astimezone(UTC))
        assert got == expected, (expression, zone_name, after)


def test_aws_los_angeles_example_spring_forward():
    """The guide's example: cron(30 2 * * ? *) in America/Los_Angeles skips the spring-forward
    day (8 March 2026: 1:59 -> 3:00) and resumes the next day; PST is UTC-8, PDT UTC-7."""
    got = fires("cron(30 2 * * ? *)", utc("2026-03-06T12:00:00Z"), 3, "America/Los_Angeles")
    assert got == [utc("2026-03-07T10:30:00Z"), utc("2026-03-09T09:30:00Z"), utc("2026-03-10T09:30:00Z")]


def test_aws_fall_back_runs_once_at_the_first_occurrence():
    """Los Angeles falls back on 1 November 2026 from 1:59 PDT to 1:00 PST, so 1:30 happens twice:
    "runs the schedule only once at [that time] before the shift occurs" -> 1:30 PDT = 08:30 UTC."""
    got = fires("cron(30 1 * * ? *)", utc("2026-10-31T00:00:00Z"), 3, "America/Los_Angeles")
    assert got == [utc("2026-10-31T08:30:00Z"), utc("2026-11-01T08:30:00Z"), utc("2026-11-02T09:30:00Z")]


def test_after_inside_the_repeated_hour():
    """Asked from 1:15 EST (the second 1:15 in New York on 1 Nov 2026, 06:15 UTC), the 1:30 that
    already ran at 1:30 EDT (05:30 UTC) is not run again; the next fire is 2:00 EST (07:00 UTC)."""
    got = fires("cron(0/30 * * * ? *)", utc("2026-11-01T06:15:00Z"), 2, "America/New_York")
    assert got == [utc("2026-11-01T07:00:00Z"), utc("2026-11-01T07:30:00Z")]


def test_zone_without_dst_is_not_adjusted():
    # Asia/Tokyo is UTC+9 all year.
    got = fires("cron(0 9 * * ? *)", utc("2026-03-07T00:00:00Z"), 3, "Asia/Tokyo")
    assert got == [utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"), utc("2026-03-10T00:00:00Z")]


# --------------------------------------------------------------------------------------------
# rate()
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", CASES["invalid_rate"]["invalid"])
def test_rate_unit_must_agree_with_value(expression):
    with pytest.raises(ScheduleError) as error:
        parse_schedule(expression)
    value = int(expression[5:].split()[0])
    unit = expression.split()[1].rstrip(")")
    fixed = f"rate({value} {unit[:-1]})" if value == 1 else f"rate({value} {unit}s)"
    assert fixed in str(error.value)


@pytest.mark.parametrize("expression", CASES["invalid_rate"]["valid"])
def test_rate_documented_valid_forms(expression):
    assert str(parse_schedule(expression)) == expression


@pytest.mark.parametrize(
    "expression, period",
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(3 days)", timedelta(days=3)),
    ],
)
def test_rate_fires_at_start_plus_multiples(expression, period):
    start = utc("2026-01-01T10:17:42Z")
    schedule = parse_schedule(expression, start=start)
    assert schedule.next_after(start - timedelta(seconds=1)) == start
    assert list(schedule.iter_after(start, 3)) == [start + period, start + 2 * period, start + 3 * period]
    assert schedule.next_after(start + 10 * period) == start + 11 * period
    assert schedule.next_after(start + 10 * period - timedelta(microseconds=1)) == start + 10 * period


def test_rate_days_are_24_hours_across_dst():
    """Guide: for rate(... days), "days represents a 24-hour duration on the clock" even when DST
    makes a day 23 or 25 hours long; the zone does not matter to rate()."""
    start = utc("2026-03-07T15:00:00Z")  # 10:00 EST in New York
    schedule = parse_schedule("rate(1 day)", "America/New_York", start=start)
    assert list(schedule.iter_after(start, 2)) == [utc("2026-03-08T15:00:00Z"), utc("2026-03-09T15:00:00Z")]


def test_rate_default_start_is_now():
    before = datetime.now(UTC).replace(microsecond=0)
    schedule = parse_schedule("rate(1 hour)")
    assert before <= schedule.start <= datetime.now(UTC)
    assert schedule.next_after(schedule.start) == schedule.start + timedelta(hours=1)


# --------------------------------------------------------------------------------------------
# at()
# --------------------------------------------------------------------------------------------


def test_at_fires_once():
    schedule = parse_schedule("at(2026-11-28T10:00:00)", "Europe/Berlin")  # CET = UTC+1 in November
    assert schedule.next_after(utc("2026-01-01T00:00:00Z")) == utc("2026-11-28T09:00:00Z")
    assert schedule.next_after(utc("2026-11-28T09:00:00Z")) is None
    assert list(schedule.iter_after(utc("2026-01-01T00:00:00Z"), 5)) == [utc("2026-11-28T09:00:00Z")]


def test_at_in_the_past_fires_no_more():
    assert parse_schedule("at(2020-01-01T00:00:00)").next_after(utc("2026-01-01T00:00:00Z")) is None


def test_at_in_a_spring_forward_gap_never_fires():
    # 2:30 on 8 March 2026 does not exist in New York.
    schedule = parse_schedule("at(2026-03-08T02:30:00)", "America/New_York")
    assert schedule.next_after(utc("2026-01-01T00:00:00Z")) is None
    assert "never fires" in schedule.describe()


def test_at_in_a_repeated_hour_fires_at_the_first():
    # 1:30 happens twice in New York on 1 Nov 2026: first at EDT (UTC-4).
    schedule = parse_schedule("at(2026-11-01T01:30:00)", "America/New_York")
    assert schedule.next_after(utc("2026-01-01T00:00:00Z")) == utc("2026-11-01T05:30:00Z")


# --------------------------------------------------------------------------------------------
# Invalid expressions: every class, each message naming the culprit and the fix
# --------------------------------------------------------------------------------------------

INVALID = [
    # wrong field count
    ("cron(0 10 * * ? * *)", ["7 fields", "6"]),
    ("cron(0 10 *)", ["3 fields", "minutes hours day-of-month month day-of-week year"]),
    ("cron(0 10 * * ?)", ["5 fields", "cron(0 10 * * ? *)"]),
    ("cron(0 0 0 10 * * ? *)", ["8 fields"]),
    ("cron()", ["0 fields"]),
    # the two day fields
    ("cron(0 10 ? * ? *)", ["both '?'", "exactly one"]),
    ("cron(0 10 * * * *)", ["both given", "cron(0 10 * * ? *)", "cron(0 10 ? * * *)"]),
    ("cron(0 10 1 * MON *)", ["both given", "cron(0 10 1 * ? *)", "cron(0 10 ? * MON *)"]),
    ("cron(? 10 * * ? *)", ["'?' is only for day-of-month or day-of-week", "minutes"]),
    # out-of-range values
    ("cron(60 10 * * ? *)", ["60", "minutes", "0-59"]),
    ("cron(0 24 * * ? *)", ["24", "hours", "0-23"]),
    ("cron(0 10 32 * ? *)", ["32", "day-of-month", "1-31"]),
    ("cron(0 10 0 * ? *)", ["0", "day-of-month"]),
    ("cron(0 10 * 13 ? *)", ["13", "month", "1-12"]),
    ("cron(0 10 ? * 8 *)", ["8", "day-of-week", "1-7"]),
    ("cron(0 10 ? * 0 *)", ["0", "day-of-week", "unix"]),
    ("cron(0 10 * * ? 1969)", ["1969", "year", "1970-2199"]),
    ("cron(0 10 * * ? 2200)", ["2200", "year"]),
    ("cron(0 10 32W * ? *)", ["32", "W"]),
    ("cron(0 10 ? * 2#6 *)", ["2#6", "1 to 5"]),
    ("cron(0 10 ? * 2#0 *)", ["2#0", "1 to 5"]),
    # bad names
    ("cron(0 10 * JANUARY ? *)", ["JANUARY", "month", "JAN-DEC"]),
    ("cron(0 10 ? * MONDAY *)", ["MONDAY", "day-of-week", "SUN-SAT"]),
    ("cron(0 10 * FOO-DEC ? *)", ["FOO", "month"]),
    ("cron(0 10 ? * MON-FUN *)", ["FUN", "day-of-week"]),
    ("cron(x 10 * * ? *)", ["'x'", "minutes"]),
    ("cron(0 10 * MON ? *)", ["MON", "month"]),
    # bad steps
    ("cron(0/0 10 * * ? *)", ["0/0", "step", "minutes"]),
    ("cron(0/61 10 * * ? *)", ["0/61", "step"]),
    ("cron(0/x 10 * * ? *)", ["0/x", "step"]),
    ("cron(0 10 ? * */2 *)", ["'/'", "day-of-week", "MON,WED,FRI"]),
    ("cron(0 10 ? * MON/2 *)", ["'/'", "day-of-week"]),
    # other misuse of the special characters
    ("cron(0 10 ? * 3#1,6#3 *)", ["one expression", "3#1,6#3"]),
    ("cron(0 10 L-3 * ? *)", ["L-3", "stand alone"]),
    ("cron(0 10 1,L * ? *)", ["1,L", "stand alone"]),
    ("cron(0 10 ? * 1,6L *)", ["1,6L", "L stands alone"]),
    ("cron(0 10 1,2, * ? *)", ["empty list item"]),
    ("cron(0 10 * * ? 2030-2020)", ["2030-2020", "backwards", "2020-2030"]),
    ("cron(0 10 W * ? *)", ["'W'", "day-of-month"]),
    # rate()
    ("rate(0 minutes)", ["'0'", "1 to 999999999"]),
    ("rate(-5 minutes)", ["'-5'"]),
    ("rate(1.5 hours)", ["'1.5'"]),
    ("rate(5 seconds)", ["'seconds'", "minute, minutes, hour, hours, day or days"]),
    ("rate(5 Minutes)", ["'Minutes'", "lower case"]),
    ("rate(5)", ["value and a unit"]),
    ("rate(1 hour 5 minutes)", ["value and a unit"]),
    ("rate(99999999999 days)", ["99999999999"]),
    # at()
    ("at(2026-11-28 10:00:00)", ["at(yyyy-mm-ddThh:mm:ss)"]),
    ("at(2026-11-28T10:00)", ["at(yyyy-mm-ddThh:mm:ss)"]),
    ("at(2026-11-28T10:00:00Z)", ["without an offset"]),
    ("at(2026-11-28T10:00:00+01:00)", ["without an offset"]),
    ("at(2026-02-30T10:00:00)", ["not a real date", "2026-02-30"]),
    ("at(2026-11-28T24:00:00)", ["not a real date"]),
    # not an expression at all
    ("every 5 minutes", ["not a schedule expression", "rate(5 minutes)"]),
    ("", ["not a schedule expression"]),
    ("Cron(0 10 * * ? *)", ["lower case", "cron(0 10 * * ? *)"]),
    ("schedule(0 10 * * ? *)", ["unknown schedule type 'schedule'"]),
    ("0 10 * * ? *", ["wrap the fields in cron()", "cron(0 10 * * ? *)"]),
]


@pytest.mark.parametrize("expression, fragments", INVALID, ids=[case[0] or "empty" for case in INVALID])
def test_invalid_expression_says_why(expression, fragments):
    with pytest.raises(ScheduleError) as error:
        parse_schedule(expression)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    "zone, fragment",
    [("Mars/Olympus_Mons", "'Mars/Olympus_Mons'"), ("America/NewYork", "did you mean 'America/New_York'"),
     ("europe/berlin", "did you mean 'Europe/Berlin'"), ("", "unknown time zone ''"),
     ("../etc/passwd", "'../etc/passwd'"), ("+05:00", "'+05:00'")],
)
def test_unknown_time_zone_is_named(zone, fragment):
    with pytest.raises(ScheduleError) as error:
        parse_schedule("cron(0 10 * * ? *)", zone)
    assert fragment in str(error.value)
    assert "IANA" in str(error.value)


def test_naive_datetimes_are_refused():
    schedule = parse_schedule("cron(0 10 * * ? *)")
    with pytest.raises(ScheduleError, match="no time zone"):
        schedule.next_after(datetime(2026, 1, 1))
    with pytest.raises(ScheduleError, match="no time zone"):
        parse_schedule("rate(1 hour)", start=datetime(2026, 1, 1))


# --------------------------------------------------------------------------------------------
# Five-field unix cron: refused, with the equivalent AWS expression
# --------------------------------------------------------------------------------------------

UNIX = [
    ("cron(0 0 * * 1)", "cron(0 0 ? * 2 *)"),  # LetsGo's docs: "every Monday at midnight"
    ("cron(0 0 * * 0)", "cron(0 0 ? * 1 *)"),
    ("cron(0 0 * * 7)", "cron(0 0 ? * 1 *)"),
    ("cron(30 9 * * 1-5)", "cron(30 9 ? * 2-6 *)"),
    ("cron(0 12 * * 0,6)", "cron(0 12 ? * 1,7 *)"),
    ("cron(0 12 * * 5-7)", "cron(0 12 ? * 1,6,7 *)"),
    ("cron(0 12 * * */2)", "cron(0 12 ? * 1,3,5,7 *)"),
    ("cron(0 12 * * MON-FRI)", "cron(0 12 ? * MON-FRI *)"),
    ("cron(0 12 * * sat,sun)", "cron(0 12 ? * SUN,SAT *)"),
    ("cron(*/5 * * * *)", "cron(*/5 * * * ? *)"),
    ("cron(0 3 1 * *)", "cron(0 3 1 * ? *)"),
    ("cron(15 14 1 JAN *)", "cron(15 14 1 JAN ? *)"),
    ("cron(0 0 * * 0-6)", "cron(0 0 * * ? *)"),
]


@pytest.mark.parametrize("unix, aws", UNIX)
def test_five_field_unix_cron_is_refused_with_the_aws_form(unix, aws):
    with pytest.raises(ScheduleError) as error:
        parse_schedule(unix)
    message = str(error.value)
    assert "5 fields" in message and "unix" in message
    assert message.endswith(aws), message
    # The suggestion really is the same schedule: croniter reads the unix original.
    start = utc("2026-01-01T00:00:00Z")
    iterator = croniter(unix[5:-1], start.replace(tzinfo=None))
    expected = [iterator.get_next(datetime).replace(tzinfo=UTC) for _ in range(50)]
    assert fires(aws, start, 50) == expected


def test_five_field_with_both_days_suggests_two_schedules():
    # Unix cron fires when *either* day field matches; AWS has no single expression for that.
    with pytest.raises(ScheduleError) as error:
        parse_schedule("cron(0 0 1 * 1)")
    assert "cron(0 0 1 * ? *) and cron(0 0 ? * 2 *)" in str(error.value)


def test_bare_unix_line_gets_the_same_advice():
    with pytest.raises(ScheduleError) as error:
        parse_schedule("0 0 * * 1")
    assert "cron(0 0 ? * 2 *)" in str(error.value)


# --------------------------------------------------------------------------------------------
# Normalization, years, far future
# --------------------------------------------------------------------------------------------


def test_normalized_expression_and_description():
    schedule = parse_schedule("  cron(0   18 ? *  mon-fri *) ", "America/New_York")
    assert str(schedule) == "cron(0 18 ? * MON-FRI *)"
    assert schedule.describe() == "cron(0 18 ? * MON-FRI *) in America/New_York"
    assert schedule.kind == "cron"
    assert parse_schedule("rate(5 minutes)", start=utc("2026-01-01T00:00:00Z")).describe() == (
        "rate(5 minutes) from 2026-01-01T00:00:00Z"
    )
    assert str(parse_schedule("at(2026-11-28T10:00:00)")) == "at(2026-11-28T10:00:00)"


def test_cron_whose_years_are_over_fires_no_more():
    assert parse_schedule("cron(0 10 * * ? 2020-2021)").next_after(utc("2026-01-01T00:00:00Z")) is None
    assert parse_schedule("cron(0 10 * * ? *)").next_after(utc("2199-12-31T10:00:00Z")) is None
    assert parse_schedule("cron(0 10 * * ? *)").next_after(utc("2199-12-31T09:59:00Z")) == utc(
        "2199-12-31T10:00:00Z"
    )


def test_expression_that_never_matches_returns_none():
    # There is no 30 February: skipping by field, the whole 1970-2199 range is checked quickly.
    assert parse_schedule("cron(* * 30 2 ? *)").next_after(utc("1970-01-01T00:00:00Z")) is None


def test_sparse_far_future_expression():
    # The fifth Monday of February happens only when 1 February is a Monday in a leap year.
    # cronsim (5-field, no years) agrees on the sequence from 2100 on.
    got = fires("cron(0 0 ? FEB 2#5 *)", utc("2100-01-01T00:00:00Z"), 2)
    assert got == cronsim_fires("cron(0 0 ? FEB 2#5 *)", utc("2100-01-01T00:00:00Z"), 2)
    assert all(fire.year < 2200 for fire in got)


def test_iter_after_is_increasing_and_matches_next_after():
    schedule = parse_schedule("cron(0/20 1-3 * * ? *)", "Europe/Berlin")
    chained, current = [], utc("2026-10-23T00:00:00Z")
    for _ in range(40):
        current = schedule.next_after(current)
        chained.append(current)
    assert list(schedule.iter_after(utc("2026-10-23T00:00:00Z"), 40)) == chained
    assert all(earlier < later for earlier, later in zip(chained, chained[1:]))


def test_cron_start_bounds_the_first_fire():
    schedule = parse_schedule("cron(0 10 * * ? *)", start=utc("2026-05-01T00:00:00Z"))
    assert schedule.next_after(utc("2026-01-01T00:00:00Z")) == utc("2026-05-01T10:00:00Z")


def test_instants_format_and_parse():
    assert format_instant(utc("2026-11-28T10:00:00Z")) == "2026-11-28T10:00:00Z"
    assert parse_instant("2026-11-28T10:00:00") == utc("2026-11-28T10:00:00Z")
    assert parse_instant("2026-11-28T11:00:00+01:00") == utc("2026-11-28T10:00:00Z")
    with pytest.raises(ScheduleError, match="ISO 8601"):
        parse_instant("next tuesday")


# --------------------------------------------------------------------------------------------
# CLI: letsgo-worker schedule next
# --------------------------------------------------------------------------------------------


def run_cli(capsys, expression, tz=None, after=None, count=None, as_json=False):
    args = argparse.Namespace(expression=expression, tz=tz, after=after, count=count, json=as_json)
    status = cli_schedule_next(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_prints_utc_instants(capsys):
    status, out, err = run_cli(capsys, "cron(0 10 * * ? *)", tz="Europe/Berlin", after="2026-11-27T12:00:00Z", count=2)
    assert status == 0 and err == ""
    # The UTC instant first (what scripts read), then the wall time in the schedule's zone.
    assert out == ("2026-11-28T09:00:00Z  2026-11-28 10:00:00 CET (Europe/Berlin)\n"
                   "2026-11-29T09:00:00Z  2026-11-29 10:00:00 CET (Europe/Berlin)\n")


def test_cli_json(capsys):
    status, out, _ = run_cli(capsys, "cron(0 18 ? * MON-FRI *)", after="2026-01-02T12:00:00Z", count=2, as_json=True)
    assert status == 0
    assert json.loads(out) == ["2026-01-02T18:00:00Z", "2026-01-05T18:00:00Z"]


def test_cli_after_without_offset_is_utc(capsys):
    _, out, _ = run_cli(capsys, "cron(0 10 * * ? *)", after="2026-01-01T10:00:00", count=1)
    assert out == "2026-01-02T10:00:00Z\n"


def test_cli_rate_after_is_the_start(capsys):
    _, out, _ = run_cli(capsys, "rate(1 hour)", after="2026-01-01T10:30:00Z", count=3)
    assert out.split() == ["2026-01-01T10:30:00Z", "2026-01-01T11:30:00Z", "2026-01-01T12:30:00Z"]


def test_cli_default_count_and_now(capsys):
    status, out, _ = run_cli(capsys, "rate(5 minutes)")
    lines = out.split()
    assert status == 0 and len(lines) == 5
    assert abs(utc(lines[0]) - datetime.now(UTC)) < timedelta(minutes=1)


def test_cli_nothing_left_explains_on_stderr(capsys):
    status, out, err = run_cli(capsys, "at(2020-01-01T00:00:00)", after="2026-01-01T00:00:00Z", as_json=True)
    assert status == 0 and json.loads(out) == []
    assert "fires no more after 2026-01-01T00:00:00Z" in err


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(expression="cron(0 0 * * 1)"), "cron(0 0 ? * 2 *)"),
        (dict(expression="cron(0 10 * * ? *)", tz="Nowhere/City"), "'Nowhere/City'"),
        (dict(expression="cron(0 10 * * ? *)", after="yesterday"), "'yesterday'"),
        (dict(expression="cron(0 10 * * ? *)", count=0), "--count 0"),
    ],
)
def test_cli_bad_input_exits_2(capsys, kwargs, fragment):
    status, out, err = run_cli(capsys, **kwargs)
    assert status == 2 and out == ""
    assert fragment in err and err.startswith("letsgo-worker schedule next: ")


def test_installed_command(tmp_path):
    command = Path(sys.executable).parent / "letsgo-worker"
    result = subprocess.run(
        [str(command), "schedule", "next", "cron(0 10 * * ? *)", "--tz", "America/New_York",
         "--after", "2026-03-07T00:00:00Z", "--count", "3", "--json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # 10:00 EST (UTC-5) on 7 March, then 10:00 EDT (UTC-4) from 8 March 2026.
    assert json.loads(result.stdout) == ["2026-03-07T15:00:00Z", "2026-03-08T14:00:00Z", "2026-03-09T14:00:00Z"]
    bad = subprocess.run(
        [str(command), "schedule", "next", "cron(0 0 * * 1)"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert bad.returncode == 2 and "cron(0 0 ? * 2 *)" in bad.stderr


def test_cli_zone_defaults_to_the_configured_one(capsys, monkeypatch):
    monkeypatch.setenv("LETSGO_WORKER_SCHEDULE_TIMEZONE", "Asia/Tokyo")  # UTC+9, no DST
    _, out, _ = run_cli(capsys, "cron(0 9 * * ? *)", after="2026-01-01T00:00:00Z", count=1)
    assert out == "2026-01-02T00:00:00Z  2026-01-02 09:00:00 JST (Asia/Tokyo)\n"


def test_cli_empty_configured_zone_is_utc(capsys, monkeypatch):
    monkeypatch.setenv("LETSGO_WORKER_SCHEDULE_TIMEZONE", "")
    _, out, _ = run_cli(capsys, "cron(0 9 * * ? *)", after="2026-01-01T00:00:00Z", count=1)
    assert out == "2026-01-01T09:00:00Z\n"


def test_cli_bad_configured_zone_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("LETSGO_WORKER_SCHEDULE_TIMEZONE", "Europe/Berln")
    status, out, err = run_cli(capsys, "cron(0 9 * * ? *)", count=1)
    assert status == 2 and out == ""
    assert err.startswith("letsgo-worker schedule next: unknown time zone 'Europe/Berln'")
    assert "'Europe/Berlin'" in err
