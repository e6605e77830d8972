"""Help for an expression that is refused: the AWS form of a unix crontab line, and "did you mean".

Every suggestion is itself checked to parse, so the advice never proposes an expression that
would be refused in its turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from host.schedule.cron import DAY_NAMES, DAY_NAMES_BY_NUMBER, cron_parses

#: The three forms, for messages that say what to write instead.
EXAMPLES = "rate(5 minutes), cron(0 10 * * ? *) or at(2026-11-28T10:00:00)"
_CRON_FIELDS = "minutes hours day-of-month month day-of-week year"


def wrong_field_count(text: str, fields: Sequence[str]) -> str:
    """The error for a ``cron()`` without six fields, with the six-field form when one is clear."""
    found = f"{text!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}"
    need = f"cron() takes 6: {_CRON_FIELDS}"
    if len(fields) == 5:
        return f"{found}; {need}. {_five_field_advice(fields)}"
    if len(fields) == 7:
        dropped = f"cron({' '.join(fields[1:])})"
        if cron_parses(fields[1:]):
            return f"{found}; {need}. If the first is seconds (Quartz style), drop it: {dropped}"
    return f"{found}; {need}, e.g. cron(0 10 * * ? *)"


def _five_field_advice(fields: Sequence[str]) -> str:
    """Advice for five fields: AWS fields without the year, or a unix crontab line to translate."""
    if "?" in fields[2:5]:
        with_year = f"cron({' '.join(fields)} *)"
        if cron_parses([*fields, "*"]):
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
        monthly_fields = [minute, hour, day_of_month, month, "?", "*"]
        weekly_fields = [minute, hour, "?", month, aws_days, "*"]
        if cron_parses(monthly_fields) and cron_parses(weekly_fields):
            monthly, weekly = f"cron({' '.join(monthly_fields)})", f"cron({' '.join(weekly_fields)})"
            return (
                f"{unix} Unix cron runs it when either the day of the month or the day of the week "
                f"matches, which one AWS expression cannot say: use two schedules, {monthly} and {weekly}"
            )
        return f"{unix} Write the six fields by hand, e.g. cron(0 10 * * ? *)"
    if day_of_week == "*" or aws_days == "*":
        suggestion = [minute, hour, day_of_month, month, "?", "*"]
    else:
        suggestion = [minute, hour, "?", month, aws_days, "*"]
    if cron_parses(suggestion):
        return f"{unix} The same schedule in AWS form: cron({' '.join(suggestion)})"
    return f"{unix} Write the six fields by hand, e.g. cron(0 10 * * ? *)"


_UNIX_DAY_NAMES = {name: number - 1 for name, number in DAY_NAMES.items()}


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
    show = DAY_NAMES_BY_NUMBER.get if use_names else str
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


def not_an_expression(text: str) -> str:
    """The error for text that is no ``keyword(...)`` at all, such as bare cron fields."""
    fields = text.split()
    if text and "(" not in text and len(fields) == 6 and cron_parses(fields):
        return f"{text!r} is not a schedule expression: wrap the fields in cron(): cron({text})"
    if text and "(" not in text and len(fields) == 5:
        return f"{text!r} is not a schedule expression: cron fields go inside cron(). {_five_field_advice(fields)}"
    return f"{text!r} is not a schedule expression: use {EXAMPLES}"
