"""Time zones: looking one up by its IANA name, and reading its wall clock the way AWS does.

``cron()`` and ``at()`` name wall-clock times. Across daylight-saving changes they follow the
EventBridge Scheduler User Guide ("Daylight savings time on EventBridge Scheduler",
docs/schedules.md quotes it): a wall time the clock skips does not fire, and a wall time the clock
repeats fires once, at its first occurrence. zoneinfo loads only for a zone other than UTC.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from host.schedule.base import UTC, ScheduleError


def lookup_zone(name: str) -> tzinfo:
    """The IANA zone called ``name``; UTC needs no time-zone database.

    :raises ScheduleError: No such zone (the message suggests a close name), or this machine has
        no time-zone database at all.
    """
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
    """The zone ``name`` probably meant: the same name in other letter case, or one a typo away."""
    import difflib
    import zoneinfo

    names = zoneinfo.available_timezones()
    lowered = {zone.lower(): zone for zone in names}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.8)
    return close[0] if close else None


def first_instant(wall: datetime, zone: tzinfo) -> datetime | None:
    """The instant the zone's clock first reads ``wall``; ``None`` if the clock skips it.

    ``fold=0`` picks the earlier of two readings when the clock falls back (AWS: "runs only
    once"); a reading that does not survive the round trip lies in a spring-forward gap (AWS:
    "your schedule invocation is skipped").
    """
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant
