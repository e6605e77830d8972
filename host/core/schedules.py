"""Named schedules: what each plugin registered with ``letsgo_register_schedules``, built once at start-up.

A named schedule is an expression of the language of ``LETSGO_WORKER_SCHEDULE``
(:mod:`host.schedule`), read in its own time zone, and one handler called as
``handler(event, ctx)`` on each of its ticks. Names are unique across plugins and
safe as EventBridge Scheduler names (letters, digits, ``-``, ``_`` and ``.``), so
one name is the same schedule locally, in the ``ticks`` table, in a tick's
input and in AWS.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from host.errors import RegistrationError

if TYPE_CHECKING:
    from host.schedule.base import Schedule

#: The key of a tick's ``detail`` that names its schedule (the unnamed ``LETSGO_WORKER_SCHEDULE`` has none).
SCHEDULE_KEY = "letsgo:schedule"
#: EventBridge Scheduler's rule for a schedule's name, so a name can be used there as it is.
NAME_PATTERN = re.compile(r"[0-9A-Za-z_.-]{1,64}")
DEFAULT_TIMEZONE = "UTC"

ScheduleHandler = Callable[..., Any]


@dataclass(frozen=True)
class NamedSchedule:
    """One registered schedule and the plugin it came from."""

    name: str
    expression: str
    handler: ScheduleHandler = field(repr=False)
    timezone: str
    description: str
    plugin: str
    distribution: str | None
    #: The parsed expression (a ``rate()`` starts when the worker started).
    schedule: Schedule = field(repr=False)

    @property
    def is_async(self) -> bool:
        """True when the handler is an ``async def`` (awaited on the event loop, not run in a thread)."""
        return inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
            getattr(self.handler, "__call__", None)
        )


class RegisterSchedule(Protocol):
    """The ``register`` callback handed to ``letsgo_register_schedules``."""

    def __call__(
        self, name: str, expression: str, handler: ScheduleHandler, timezone: str = DEFAULT_TIMEZONE, description: str = ""
    ) -> None: ...


def _describe(plugin: str, distribution: str | None) -> str:
    return f"plugin {plugin!r}" + (f" (distribution {distribution!r})" if distribution else "")


class ScheduleRegistry:
    """Every named schedule of the worker, by name."""

    def __init__(self) -> None:
        self._schedules: dict[str, NamedSchedule] = {}

    def registrar(self, plugin: str, distribution: str | None) -> RegisterSchedule:
        """Return a ``register`` callback that stamps every schedule with ``plugin``."""

        def register(
            name: str, expression: str, handler: ScheduleHandler, timezone: str = DEFAULT_TIMEZONE, description: str = ""
        ) -> None:
            self.add(plugin, distribution, name, expression, handler, timezone, description)

        return register

    def add(
        self,
        plugin: str,
        distribution: str | None,
        name: Any,
        expression: Any,
        handler: Any,
        timezone: Any = DEFAULT_TIMEZONE,
        description: str = "",
    ) -> NamedSchedule:
        """Validate and record one schedule; raise :class:`RegistrationError` naming the plugin if it is bad."""
        from host.schedule.expressions import ScheduleError, parse_schedule

        who = _describe(plugin, distribution)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise RegistrationError(
                f"{who} registered a schedule named {name!r}: a name is 1 to 64 letters, digits, '-', '_' or '.'"
                " (EventBridge Scheduler's rule), such as 'orders-daily-report'"
            )
        if not callable(handler):
            raise RegistrationError(f"{who} registered schedule {name!r} with a handler that is not callable: {handler!r}")
        if not isinstance(timezone, str) or not timezone:
            raise RegistrationError(f"{who} registered schedule {name!r} with timezone={timezone!r}: give an IANA zone name such as 'Europe/Paris'")
        try:
            parsed = parse_schedule(expression, timezone)
        except ScheduleError as error:
            raise RegistrationError(f"{who} registered schedule {name!r} with an invalid schedule: {error}") from None
        existing = self._schedules.get(name)
        if existing is not None:
            raise RegistrationError(
                f"schedule {name!r} is registered twice: by {_describe(existing.plugin, existing.distribution)} "
                f"and by {who}; rename one, or disable a plugin with LETSGO_WORKER_DISABLE_PLUGINS"
            )
        entry = NamedSchedule(
            name=name,
            expression=str(parsed),
            handler=handler,
            timezone=timezone,
            description=description or (inspect.getdoc(handler) or "").split("\n", 1)[0],
            plugin=plugin,
            distribution=distribution,
            schedule=parsed,
        )
        self._schedules[name] = entry
        return entry

    def get(self, name: str) -> NamedSchedule | None:
        """The schedule called ``name``, or None."""
        return self._schedules.get(name)

    def names(self) -> list[str]:
        """Every schedule's name, sorted."""
        return sorted(self._schedules)

    def __iter__(self) -> Iterator[NamedSchedule]:
        return iter(sorted(self._schedules.values(), key=lambda entry: entry.name))

    def __len__(self) -> int:
        return len(self._schedules)

    def __contains__(self, name: object) -> bool:
        return name in self._schedules


def schedule_name(event: Any) -> str | None:
    """The name a tick carries in its ``detail`` (an object, or Scheduler's JSON text), or None for an unnamed tick.

    :raises ValueError: the ``detail`` names a schedule with something other than a non-empty string.
    """
    detail = event.get("detail") if isinstance(event, dict) else None
    if isinstance(detail, str) and SCHEDULE_KEY in detail:
        import json

        try:
            detail = json.loads(detail)
        except ValueError:
            return None
    if not isinstance(detail, dict) or SCHEDULE_KEY not in detail:
        return None
    name = detail[SCHEDULE_KEY]
    if not isinstance(name, str) or not name:
        raise ValueError(f"the tick's detail has {SCHEDULE_KEY!r}: {name!r}; expected a schedule's name")
    return name
