"""The schedule parser's public names; the implementation is in :mod:`host.schedule.cron` for now."""

from host.schedule.cron import (  # noqa: F401
    Schedule,
    ScheduleError,
    cli_schedule_next,
    format_instant,
    parse_instant,
    parse_schedule,
)
