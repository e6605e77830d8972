"""Scheduled ticks: a named schedule's handler, or every ``letsgo_scheduled`` implementation.

A tick whose ``detail`` carries ``"letsgo:schedule": NAME`` (the input of the
schedules ``letsgo-worker schedules --cloudformation`` prints, and the local
scheduler's ticks of named schedules) runs that schedule's handler only. Any
other tick calls every ``letsgo_scheduled`` implementation, each even if another fails.

A tick comes from EventBridge Scheduler (``detail`` is the string ``"{}"``), an
EventBridge rule (``detail`` is an object) or the local scheduler. Async
implementations run concurrently on the event loop, sync ones in the worker's
thread pool. If any failed (or was still running at the Lambda deadline), the
tick raises :class:`ScheduledError` after all of them ran, so the invocation
fails and AWS's retry policy applies.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from host.core.deadline import Deadline, wait_until_deadline
from host.core.loops import run
from host.core.context import Context
from host.errors import WorkerError
from host.core.logs import log_fields
from host.core.plugins import call_impl, implementations
from host.core.schedules import schedule_name

if TYPE_CHECKING:
    import pluggy

    from host.core.schedules import NamedSchedule
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.scheduled")


class ScheduledError(WorkerError):
    """One or more ``letsgo_scheduled`` implementations failed.

    :ivar failures: ``(plugin, reason)`` for each implementation that failed.
    """

    def __init__(self, event_id: str | None, failures: list[tuple[str, str]], schedule: str | None = None) -> None:
        self.failures = failures
        #: The named schedule whose handler failed, or None for ``letsgo_scheduled``.
        self.schedule = schedule
        where = "; ".join(f"plugin {plugin!r}: {reason}" for plugin, reason in failures)
        of = f" of schedule {schedule!r}" if schedule is not None else ""
        super().__init__(f"scheduled tick {event_id or '(no id)'}{of} failed in {len(failures)} plugin(s): {where}")


def _event_id(event: Any) -> str | None:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


class UnknownSchedule(WorkerError):
    """A tick names a schedule that no loaded plugin registered: the invocation fails, so it is retried, then dead-lettered."""


async def _call(worker: Worker, plugin: str, function: Callable[..., Any], event: Any, lambda_context: Any,
                schedule: str | None = None) -> None:
    fields = {"plugin": plugin, "tick_id": _event_id(event)}
    if schedule is not None:
        fields["schedule"] = schedule
    ctx = Context(worker, logging.LoggerAdapter(logging.getLogger(f"letsgo.plugin.{plugin}"), fields), lambda_context)
    try:
        if inspect.iscoroutinefunction(function):  # the callers below keep a handler's kind
            await function(event=event, ctx=ctx)
            return
        result = await asyncio.get_running_loop().run_in_executor(
            worker.executor, lambda: function(event=event, ctx=ctx)
        )
        if inspect.isawaitable(result):
            await result
    except SystemExit as error:  # would escape the event loop and skip the other plugins' report
        raise RuntimeError(f"called sys.exit({error.code!r})") from error


def _hook_caller(impl: pluggy.HookImpl) -> Callable[..., Any]:
    """``impl`` called with the subset of ``event`` and ``ctx`` it accepts."""
    if inspect.iscoroutinefunction(impl.function):
        async def call_async(**kwargs: Any) -> Any:
            return await call_impl(impl, **kwargs)

        return call_async
    return lambda **kwargs: call_impl(impl, **kwargs)


def _named_caller(named: NamedSchedule) -> Callable[..., Any]:
    """A named schedule's handler, called positionally as ``handler(event, ctx)``."""
    handler = named.handler
    if named.is_async:
        async def call_async(event: Any, ctx: Context) -> Any:
            return await handler(event, ctx)

        return call_async
    return lambda event, ctx: handler(event, ctx)


async def run_scheduled_async(worker: Worker, event: Any, lambda_context: Any = None, *, name: str | None = None) -> None:
    """The coroutine behind :func:`run_scheduled`."""
    began = time.perf_counter()
    tick_id = _event_id(event)
    request_id = getattr(lambda_context, "aws_request_id", None)
    if name is None:
        try:
            name = schedule_name(event)
        except ValueError as error:
            raise UnknownSchedule(f"scheduled tick {tick_id or '(no id)'}: {error}") from None
    if name is None:
        impls = implementations(worker.pm, "letsgo_scheduled")
        calls = [(impl.plugin_name, _hook_caller(impl)) for impl in impls]
        what = "letsgo_scheduled"
    else:
        named = worker.schedules.get(name)
        if named is None:
            known = ", ".join(map(repr, worker.schedules.names())) or "none"
            raise UnknownSchedule(
                f"scheduled tick {tick_id or '(no id)'} names schedule {name!r}, which no loaded plugin registered"
                f" (registered: {known}); install or enable the plugin that registers it, or delete the schedule"
            )
        calls = [(named.plugin, _named_caller(named))]
        what = f"schedule {name!r}"
    deadline = Deadline(lambda_context, worker.settings.deadline_margin_ms)
    tasks = {
        asyncio.ensure_future(_call(worker, plugin, function, event, lambda_context, name)): plugin
        for plugin, function in calls
    }
    pending = await wait_until_deadline(tasks, deadline)
    failures: list[tuple[str, str]] = []
    label = f"scheduled tick {tick_id}" + (f" of schedule {name!r}" if name is not None else "")
    for task, plugin in tasks.items():
        if task in pending or task.cancelled():
            reason = f"still running {deadline.margin_ms:g} ms before the Lambda timeout; stopped waiting for it"
            failures.append((plugin, reason))
            log_fields(logger, logging.ERROR, f"{label}: plugin {plugin!r} {reason}", schedule=name,
                       plugin=plugin, tick_id=tick_id, outcome="failed", reason=reason, request_id=request_id)
        elif task.exception() is not None:
            error = task.exception()
            reason = f"{type(error).__name__}: {error}"
            failures.append((plugin, reason))
            log_fields(logger, logging.ERROR, f"{label}: plugin {plugin!r} failed: {reason}", schedule=name,
                       plugin=plugin, tick_id=tick_id, outcome="failed", reason=reason, request_id=request_id,
                       exc_info=error)
    duration = (time.perf_counter() - began) * 1000
    summary = (
        f"{len(calls) - len(failures)} of {len(calls)} plugin(s) succeeded in {duration:.0f} ms"
        if calls else f"no installed plugin implements {what}"
    )
    log_fields(
        logger, logging.INFO, f"{label}: {summary}", schedule=name,
        tick_id=tick_id, plugins=len(calls), failed=len(failures), duration_ms=round(duration, 1),
        deadline_reached=True if deadline.reached else None, request_id=request_id,
    )
    if failures:
        raise ScheduledError(tick_id, failures, name)


def run_scheduled(worker: Worker, event: Any, lambda_context: Any = None, *, name: str | None = None) -> None:
    """Run one scheduled tick and wait for it.

    A tick that names a schedule (``"detail": {"letsgo:schedule": NAME}``, or
    ``name`` given here) runs that schedule's handler only; a tick naming a
    schedule nobody registered raises :class:`UnknownSchedule`. Any other tick
    runs every ``letsgo_scheduled`` implementation, sync or async, each even
    when another fails. Afterwards, if any failed, raise :class:`ScheduledError`
    naming every failed plugin and its error. Blocking (see :func:`host.core.loops.run`).
    """
    run(run_scheduled_async(worker, event, lambda_context, name=name))
