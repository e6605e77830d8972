"""The dashboard's views: the data each page shows, built from an :class:`Inspector` and the worker.

Nothing here renders HTML or speaks HTTP (that is :mod:`host.ops.web`); each
function returns plain data for one template, so the pages of ``serve`` and of
``letsgo-worker dashboard --sqs`` are the same views over another inspector.
No secret reaches a view: settings are shown through ``Settings.display``,
which gives a secret's value only as ``<secret>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from host.ops.inspector import STATES, Inspector, MessageView, State, TickView

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.worker import Worker
    from host.schedule.base import Schedule

#: Minutes of outcomes the overview shows.
OUTCOME_MINUTES = 30
#: Messages per page of the Messages view.
PAGE_SIZE = 50
#: How many next fire times the Schedules view shows per schedule.
NEXT_FIRES = 5

OUTCOMES = ("succeeded", "failed", "rejected")

#: What each state is called on the pages.
STATE_LABELS = {"visible": "Waiting", "delayed": "Delayed", "in_flight": "In flight", "dead_letter": "Dead letters"}


# -- Overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartBar:
    """One minute's stacked bar of the outcome chart, in the SVG's units."""

    x: float
    minute: str
    segments: list[tuple[str, float, float, int]]  # (outcome, y, height, count)


def overview(inspector: Inspector | None, worker: Worker | None, *, now: float | None = None) -> dict[str, Any]:
    """The Overview: counts per state, the oldest waiting age, outcomes per type with a chart, plugin problems."""
    now = time.time() if now is None else now
    stats = inspector.stats() if inspector is not None else None
    rows = inspector.outcome_minutes(OUTCOME_MINUTES) if inspector is not None else []
    return {
        "stats": stats,
        "oldest": age_text(stats.oldest_age_seconds) if stats is not None else None,
        "outcomes": outcome_table(rows),
        "chart": outcome_chart(rows, now=now),
        "minutes": OUTCOME_MINUTES,
        "problems": plugin_problems(worker),
    }


def outcome_table(rows: Iterable[tuple[int, str, str, int]]) -> list[dict[str, Any]]:
    """Totals per message type over the rows: ``{"type", "succeeded", "failed", "rejected"}``, busiest first."""
    totals: dict[str, dict[str, int]] = {}
    for _, kind, outcome, count in rows:
        per_type = totals.setdefault(kind, dict.fromkeys(OUTCOMES, 0))
        per_type[outcome] = per_type.get(outcome, 0) + count
    table = [{"type": kind, **counts} for kind, counts in totals.items()]
    table.sort(key=lambda row: (-sum(row[o] for o in OUTCOMES), row["type"]))
    return table


def outcome_chart(rows: Iterable[tuple[int, str, str, int]], *, now: float, minutes: int = OUTCOME_MINUTES,
                  width: float = 600, height: float = 120) -> dict[str, Any]:
    """A stacked bar per minute of the last ``minutes`` (all types together), laid out for an inline SVG."""
    last = int(now // 60) * 60
    first = last - (minutes - 1) * 60
    per_minute: dict[int, dict[str, int]] = {}
    for minute, _, outcome, count in rows:
        if first <= minute <= last:
            slot = per_minute.setdefault(minute, dict.fromkeys(OUTCOMES, 0))
            slot[outcome] = slot.get(outcome, 0) + count
    peak = max((sum(slot.values()) for slot in per_minute.values()), default=0)
    step = width / minutes
    bars = []
    for index in range(minutes):
        minute = first + index * 60
        slot = per_minute.get(minute, {})
        y = height
        segments = []
        for outcome in OUTCOMES:
            count = slot.get(outcome, 0)
            if count and peak:
                bar_height = max(1.0, height * count / peak)
                y -= bar_height
                segments.append((outcome, round(y, 1), round(bar_height, 1), count))
        label = datetime.fromtimestamp(minute, timezone.utc).strftime("%H:%M UTC")
        bars.append(ChartBar(round(index * step, 1), label, segments))
    return {"bars": bars, "width": width, "height": height, "bar_width": round(step * 0.8, 1), "peak": peak}


def plugin_problems(worker: Worker | None) -> list[dict[str, str | None]]:
    """The plugins that failed to load (or had another problem at start-up), each with what went wrong."""
    if worker is None:
        return []
    return [{"plugin": p.plugin, "distribution": p.distribution, "message": p.message} for p in worker.problems]


def age_text(seconds: float | None) -> str:
    """``seconds`` as a person reads an age: ``"42 s"``, ``"3 min 5 s"``, ``"2 h 1 min"``, ``"3 d 4 h"``; "-" for None."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


# -- Messages --------------------------------------------------------------------------


def messages_page(inspector: Inspector, state: State, *, type: str | None = None, text: str | None = None,
                  offset: int = 0) -> dict[str, Any]:
    """A page of the Messages view: one more than a page is asked for, to know whether there is a next one."""
    found = inspector.messages(state, type=type or None, text=text or None, limit=PAGE_SIZE + 1, offset=offset)
    return {
        "state": state,
        "states": [(name, STATE_LABELS[name]) for name in STATES],
        "label": STATE_LABELS[state],
        "messages": [message_row(message) for message in found[:PAGE_SIZE]],
        "type": type or "",
        "text": text or "",
        "offset": offset,
        "previous": max(0, offset - PAGE_SIZE) if offset else None,
        "next": offset + PAGE_SIZE if len(found) > PAGE_SIZE else None,
        "can_peek": inspector.can_peek,
        "peek_note": inspector.peek_note,
        # SQS without a dead-letter queue: why there is nothing to show or redrive.
        "dlq_problem": getattr(inspector, "dlq_problem", None) if state == "dead_letter" else None,
        # SQS: listing waiting messages would receive them, delaying their delivery; only dead letters are looked at.
        "unlisted": None if inspector.can_peek or state == "dead_letter" else (
            f"{STATE_LABELS[state]} messages of an SQS queue are counted, not listed: looking at them would receive "
            "them and hold up their delivery. The dead letters can be looked at."
        ),
    }


def message_row(message: MessageView) -> dict[str, Any]:
    """One line of the list: the message and its times as text."""
    return {
        "view": message,
        "sent": when(message.sent_at),
        "last_received": when(message.last_received_at),
        # The last error says what went wrong; the reason (retries used up, rejected) is the detail page's.
        "summary": _shorten(message.last_error or message.reason or "", 160),
        "preview": message.body[:120],
    }


def _shorten(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def message_detail(message: MessageView) -> dict[str, Any]:
    """The Message view: everything known about one message, its body pretty-printed when it is JSON."""
    try:
        body = json.dumps(json.loads(message.body), indent=2, ensure_ascii=False)
    except ValueError:
        body = message.body
    return {
        "view": message,
        "label": STATE_LABELS[message.state],
        "body": body,
        "times": [
            ("Sent", when(message.sent_at)),
            ("First received", when(message.first_received_at)),
            ("Last received", when(message.last_received_at)),
        ],
    }


def when(epoch: float | None) -> str:
    """An epoch second as ``2026-12-01 10:15:04 UTC``; "-" for None."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- Plugins and types -----------------------------------------------------------------


def plugins_page(worker: Worker | None) -> dict[str, Any]:
    """Plugins and types: each plugin's distribution, version, hooks, settings (secrets as ``<secret>``) and types."""
    if worker is None:
        return {"plugins": [], "types": [], "problems": []}
    types = [
        {
            "type": entry.type,
            "plugin": entry.plugin,
            "description": entry.description,
            "schema": json.dumps(entry.payload_schema(), indent=2) if entry.payload_schema() is not None else None,
        }
        for entry in worker.registry
    ]
    plugins = []
    for info in worker.plugins:
        plugins.append({
            "name": info.name,
            "distribution": info.distribution or "in-process",
            "version": info.version or "",
            "builtin": info.builtin,
            "hooks": worker.plugin_hooks(info),
            "types": [row["type"] for row in types if row["plugin"] == info.name],
            "settings": [
                {"variable": s.variable, "value": worker.settings.display(s), "secret": s.secret, "description": s.description}
                for s in worker.plugin_settings.get(info.name, [])
            ],
        })
    return {"plugins": plugins, "types": types, "problems": plugin_problems(worker)}


# -- Schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule the worker fires: its name ("" for ``LETSGO_WORKER_SCHEDULE``), expression and zone."""

    name: str
    expression: str
    timezone: str
    description: str = ""
    #: The parsed schedule, or None when it could not be parsed (then ``problem`` says why).
    schedule: Schedule | None = field(default=None, compare=False)
    problem: str | None = None


def configured_schedules(settings: Settings, running: Schedule | None = None, named: Iterable[Any] = ()) -> list[ScheduleInfo]:
    """Every schedule the worker fires: ``LETSGO_WORKER_SCHEDULE``, then each plugin's named schedule.

    ``running`` is the parsed ``LETSGO_WORKER_SCHEDULE`` the local timer fires,
    when there is one: its ``rate()`` counts from the server's start, which a
    fresh parse would not know. ``named`` are the schedules plugins registered
    (``worker.schedules``: each with a name, expression, time zone,
    description, plugin and parsed schedule). Every page that lists schedules
    finds them here, in one place.
    """
    found = []
    if settings.schedule:
        from host.schedule.expressions import ScheduleError, parse_schedule

        zone = settings.schedule_timezone
        schedule, problem = running, None
        if schedule is None:
            try:
                schedule = parse_schedule(settings.schedule, zone)
            except ScheduleError as error:
                problem = str(error)
        found.append(ScheduleInfo("", settings.schedule, zone, "LETSGO_WORKER_SCHEDULE", schedule, problem))
    for entry in named:
        description = " · ".join(part for part in (getattr(entry, "description", ""), f"plugin {entry.plugin}") if part)
        found.append(ScheduleInfo(entry.name, entry.expression, entry.timezone, description, entry.schedule))
    return found


def schedules_page(schedules: list[ScheduleInfo], ticks: list[TickView], *, now: datetime | None = None) -> dict[str, Any]:
    """The Schedules view: each schedule's next fire times in its zone and in UTC, and its last tick."""
    from zoneinfo import ZoneInfo

    now = now or datetime.now(timezone.utc)
    last = {tick.name: tick for tick in ticks}
    rows = []
    for info in schedules:
        fires = []
        if info.schedule is not None:
            try:
                zone = ZoneInfo(info.timezone)
            except (ValueError, LookupError):
                zone = timezone.utc
            for fire in info.schedule.iter_after(now, NEXT_FIRES):
                fires.append((fire.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"), fire.strftime("%Y-%m-%d %H:%M:%S UTC")))
        tick = last.get(info.name)
        rows.append({
            "info": info,
            "title": info.name or "(the worker's schedule)",
            "fires": fires,
            "last_tick": tick,
            "last_tick_at": when(tick.fired_at) if tick is not None else None,
        })
    return {"schedules": rows}
