"""Scheduled ticks: call every ``letsgo_scheduled`` implementation, each even if another fails.

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
from typing import TYPE_CHECKING, Any

from host.core.deadline import Deadline, wait_until_deadline
from host.core.loops import run
from host.core.context import Context
from host.errors import WorkerError
from host.core.logs import log_fields
from host.core.plugins import call_impl, implementations

if TYPE_CHECKING:
    import pluggy

    from host.core.worker import Worker

logger = logging.getLogger("letsgo.scheduled")


class ScheduledError(WorkerError):
    """One or more ``letsgo_scheduled`` implementations failed.

    :ivar failures: ``(plugin, reason)`` for each implementation that failed.
    """

    def __init__(self, event_id: str | None, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        where = "; ".join(f"plugin {plugin!r}: {reason}" for plugin, reason in failures)
        super().__init__(f"scheduled tick {event_id or '(no id)'} failed in {len(failures)} plugin(s): {where}")


def _event_id(event: Any) -> str | None:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


async def _call(worker: Worker, impl: pluggy.HookImpl, event: Any, lambda_context: Any) -> None:
    plugin = impl.plugin_name
    ctx = Context(
        worker,
        logging.LoggerAdapter(logging.getLogger(f"letsgo.plugin.{plugin}"), {"plugin": plugin, "tick_id": _event_id(event)}),
        lambda_context,
    )
    try:
        if inspect.iscoroutinefunction(impl.function):
            await call_impl(impl, event=event, ctx=ctx)
            return
        result = await asyncio.get_running_loop().run_in_executor(
            worker.executor, lambda: call_impl(impl, event=event, ctx=ctx)
        )
        if inspect.isawaitable(result):
            await result
    except SystemExit as error:  # would escape the event loop and skip the other plugins' report
        raise RuntimeError(f"called sys.exit({error.code!r})") from error


async def run_scheduled_async(worker: Worker, event: Any, lambda_context: Any = None) -> None:
    """The coroutine behind :func:`run_scheduled`."""
    began = time.perf_counter()
    tick_id = _event_id(event)
    request_id = getattr(lambda_context, "aws_request_id", None)
    impls = implementations(worker.pm, "letsgo_scheduled")
    deadline = Deadline(lambda_context, worker.settings.deadline_margin_ms)
    tasks = {asyncio.ensure_future(_call(worker, impl, event, lambda_context)): impl for impl in impls}
    pending = await wait_until_deadline(tasks, deadline)
    failures: list[tuple[str, str]] = []
    for task, impl in tasks.items():
        plugin = impl.plugin_name
        if task in pending or task.cancelled():
            reason = f"still running {deadline.margin_ms:g} ms before the Lambda timeout; stopped waiting for it"
            failures.append((plugin, reason))
            log_fields(logger, logging.ERROR, f"scheduled tick {tick_id}: plugin {plugin!r} {reason}",
                       plugin=plugin, tick_id=tick_id, outcome="failed", reason=reason, request_id=request_id)
        elif task.exception() is not None:
            error = task.exception()
            reason = f"{type(error).__name__}: {error}"
            failures.append((plugin, reason))
            log_fields(logger, logging.ERROR, f"scheduled tick {tick_id}: plugin {plugin!r} failed: {reason}",
                       plugin=plugin, tick_id=tick_id, outcome="failed", reason=reason, request_id=request_id,
                       exc_info=error)
    duration = (time.perf_counter() - began) * 1000
    summary = (
        f"{len(impls) - len(failures)} of {len(impls)} plugin(s) succeeded in {duration:.0f} ms"
        if impls else "no installed plugin implements letsgo_scheduled"
    )
    log_fields(
        logger, logging.INFO, f"scheduled tick {tick_id}: {summary}",
        tick_id=tick_id, plugins=len(impls), failed=len(failures), duration_ms=round(duration, 1),
        deadline_reached=True if deadline.reached else None, request_id=request_id,
    )
    if failures:
        raise ScheduledError(tick_id, failures)


def run_scheduled(worker: Worker, event: Any, lambda_context: Any = None) -> None:
    """Run one scheduled tick: every ``letsgo_scheduled`` implementation, sync or async.

    Each implementation runs even when another fails; afterwards, if any failed,
    raise :class:`ScheduledError` naming every failed plugin and its error.
    Blocking (see :func:`host.core.loops.run`).
    """
    run(run_scheduled_async(worker, event, lambda_context))
