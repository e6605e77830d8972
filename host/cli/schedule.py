"""``letsgo-worker schedule next``: preview when a schedule expression fires."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from host.cli.common import command_help, lazy

#: How many fire times ``schedule next`` prints when ``--count`` is not given, and the most it prints.
DEFAULT_COUNT = 5
MAX_COUNT = 10_000


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    schedule = commands.add_parser(
        "schedule", help="schedule expressions",
        **command_help(
            "Work with schedule expressions, the language of LETSGO_WORKER_SCHEDULE and of EventBridge "
            "Scheduler: rate(...), cron(...) and at(...).",
            env=("LETSGO_WORKER_SCHEDULE_TIMEZONE  the zone when --tz is not given",),
            examples=("letsgo-worker schedule next 'cron(0 9 ? * MON-FRI *)' --tz Europe/Paris",),
        ),
    )
    schedule_commands = schedule.add_subparsers(dest="schedule_command", metavar="SUBCOMMAND", required=True)
    next_ = schedule_commands.add_parser(
        "next", help="print the next fire instants of an expression, in UTC and in its zone",
        **command_help(
            "Print the next fire instants of a schedule expression as AWS computes them: one per line, in UTC "
            "(ISO 8601) with the wall time in the schedule's zone beside it; --json prints a list of the UTC "
            "instants. For rate(), --after is the schedule's start and its first fire.",
            env=("LETSGO_WORKER_SCHEDULE_TIMEZONE  the zone when --tz is not given (default UTC)",),
            examples=("letsgo-worker schedule next 'rate(1 hour)'",
                      "letsgo-worker schedule next 'cron(0 9 ? * MON-FRI *)' --tz Europe/Paris --count 3",
                      "letsgo-worker schedule next 'at(2026-03-29T02:30:00)' --tz Europe/Paris --json"),
        ),
    )
    next_.add_argument("expression", metavar="EXPR", help="rate(...), cron(...) or at(...)")
    next_.add_argument("--tz", default=None, help="IANA time zone (default LETSGO_WORKER_SCHEDULE_TIMEZONE or UTC)")
    next_.add_argument("--after", help="ISO-8601 instant to start after (for rate(): the schedule's start)")
    next_.add_argument("--count", type=int, default=5, help="how many instants (default 5)")
    next_.add_argument("--json", action="store_true", help="print a JSON list")
    next_.set_defaults(run=lazy("host.cli.schedule:cli_schedule_next"))


def cli_schedule_next(args: argparse.Namespace) -> int:
    """Run ``letsgo-worker schedule next EXPR [--tz TZ] [--after ISO8601] [--count N] [--json]``.

    Prints the next fire times in UTC ISO 8601, one per line, with the wall time in the
    schedule's zone beside each when it is not UTC (``--json``: a list of the UTC instants). For
    ``rate()``, ``--after`` is the schedule's start and is itself the first fire time. Without
    ``--tz`` the zone is ``LETSGO_WORKER_SCHEDULE_TIMEZONE``, else UTC.

    :param args: An ``argparse.Namespace`` with ``expression``, ``tz``, ``after``, ``count``, ``json``.
    :return: 0, or 2 (message on stderr) for an invalid expression, time zone, ``--after`` or ``--count``.
    """
    from host.schedule.expressions import ScheduleError, format_instant, parse_instant, parse_schedule

    count = getattr(args, "count", None)
    count = DEFAULT_COUNT if count is None else count
    try:
        if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ScheduleError(f"--count {count!r}: give a whole number from 1 to {MAX_COUNT}")
        after_text = getattr(args, "after", None)
        if after_text:
            after = parse_instant(after_text)
        else:
            after = datetime.now(timezone.utc).replace(microsecond=0)
        tz = getattr(args, "tz", None) or _configured_timezone()
        schedule = parse_schedule(args.expression, tz)
        if schedule.kind == "rate":
            schedule = parse_schedule(args.expression, tz, start=after)
    except ScheduleError as error:
        print(f"letsgo-worker schedule next: {error}", file=sys.stderr)
        return 2
    if schedule.kind == "rate":
        # AWS: a rate schedule's StartDate is its first occurrence.
        fires = [schedule.start, *schedule.iter_after(schedule.start, count - 1)]
    else:
        fires = list(schedule.iter_after(after, count))
    lines = [format_instant(fire) for fire in fires]
    if getattr(args, "json", False):
        print(json.dumps(lines))
    else:
        for fire, line in zip(fires, lines):
            print(f"{line}  {wall_time(fire, schedule.timezone)}" if schedule.timezone != "UTC" else line)
    if not fires:
        print(
            f"letsgo-worker schedule next: {schedule.describe()} fires no more after {format_instant(after)}",
            file=sys.stderr,
        )
    return 0


def wall_time(instant: datetime, zone_name: str) -> str:
    """``instant`` on the clocks of ``zone_name``: ``2026-11-28 10:00:00 CET (Europe/Berlin)``."""
    from host.schedule.zones import lookup_zone

    local = instant.astimezone(lookup_zone(zone_name))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({zone_name})"


def _configured_timezone() -> str:
    """``LETSGO_WORKER_SCHEDULE_TIMEZONE``, or UTC when it is unset or empty.

    The configuration passes the name through as text; :func:`parse_schedule` checks it, so an
    unknown zone is reported like one given with ``--tz``.
    """
    from host.config import Settings

    return Settings.from_env().schedule_timezone or "UTC"
