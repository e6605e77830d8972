"""What every schedule is: the :class:`Schedule` interface, :class:`ScheduleError`, and instants.

The modules of :mod:`host.schedule` share these; the parser in :mod:`host.schedule.expressions`
builds the schedules.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

UTC = timezone.utc


class ScheduleError(ValueError):
    """A schedule expression, time zone or instant that cannot be used; the message says why and what to do."""


class Schedule:
    """A parsed schedule expression. Build one with :func:`host.schedule.expressions.parse_schedule`.

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


def aware(instant: datetime, what: str) -> datetime:
    """``instant`` itself, once checked to be an aware datetime; ``what`` names it in the error."""
    if not isinstance(instant, datetime):
        raise ScheduleError(f"{what} must be a datetime, not {instant!r}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ScheduleError(
            f"{what} {instant.isoformat()} has no time zone: pass an aware datetime, "
            "e.g. datetime.now(timezone.utc)"
        )
    return instant


def small_int(text: str, digits: int = 4) -> int | None:
    """``text`` as a non-negative integer of at most ``digits`` ASCII digits, else ``None``."""
    if text.isascii() and text.isdigit() and len(text) <= digits:
        return int(text)
    return None
