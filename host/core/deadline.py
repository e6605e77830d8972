"""The Lambda deadline: stop starting work before the timeout, cancel what overruns.

Used by SQS batches (:mod:`host.core.batch`) and scheduled ticks (:mod:`host.core.ticks`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: How long cancelled async handlers get to run their ``finally`` blocks at the deadline.
_CANCEL_GRACE_SECONDS = 0.2


class Deadline:
    """When an invocation must stop starting work, read from its Lambda context.

    Without a context (or one lacking ``get_remaining_time_in_millis``, like the
    empty object the original local server passed) there is no deadline.
    """

    def __init__(self, lambda_context: Any, margin_ms: float) -> None:
        method = getattr(lambda_context, "get_remaining_time_in_millis", None)
        self._remaining = method if callable(method) else None
        self.margin_ms = margin_ms
        self.reached = False

    def remaining_ms(self) -> float | None:
        """Milliseconds before Lambda's timeout, or None when unknown."""
        if self._remaining is None:
            return None
        try:
            return float(self._remaining())
        except Exception:  # a context that cannot tell gives no deadline, not a failed batch
            return None

    def passed(self) -> bool:
        """True once the remaining time is below the margin: start nothing more."""
        remaining = self.remaining_ms()
        if remaining is not None and remaining < self.margin_ms:
            self.reached = True
        return self.reached

    def budget_seconds(self) -> float | None:
        """Seconds work may still run before the margin, or None without a deadline."""
        remaining = self.remaining_ms()
        if remaining is None:
            return None
        return max(0.0, (remaining - self.margin_ms) / 1000)


async def wait_until_deadline(tasks: Iterable[asyncio.Future[Any]], deadline: Deadline) -> set[asyncio.Future[Any]]:
    """Wait for ``tasks`` until the deadline's budget is spent; cancel and return those still running.

    Cancelled async work gets a short grace to unwind. A sync handler cannot be
    stopped: its thread runs on, but nothing waits for it any more.
    """
    tasks = set(tasks)
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=deadline.budget_seconds())
    if pending:
        deadline.reached = True
        for task in pending:
            task.cancel()
        await cancel_grace(pending, deadline)
    return pending


async def cancel_grace(cancelled: Iterable[asyncio.Future[Any]], deadline: Deadline) -> None:
    """Give ``cancelled`` tasks a short grace to unwind (their ``finally`` blocks), within the deadline's margin."""
    await asyncio.wait(cancelled, timeout=min(_CANCEL_GRACE_SECONDS, deadline.margin_ms / 4000))
