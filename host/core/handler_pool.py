"""The thread pool of sync handlers, which makes up for the threads of handlers that timed out.

Loaded with the pool, on the first sync handler: a batch of ``async def``
handlers never needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("letsgo.worker")


class HandlerPool(ThreadPoolExecutor):
    """The thread pool of sync handlers, which makes up for threads held by handlers that timed out.

    A sync handler cannot be stopped. When its message times out, :meth:`set_aside`
    counts its thread as lost: the pool grows by one thread to take its place
    (up to ``cap`` threads in all) and shrinks back when the handler returns, so
    that hung handlers cannot starve every later sync message of a thread.
    """

    def __init__(self, size: int, *, cap: int, visibility_timeout: float) -> None:
        super().__init__(max_workers=size, thread_name_prefix="letsgo-handler")
        self.size = size
        self.cap = max(cap, size)
        self.visibility_timeout = visibility_timeout
        self._lock = threading.Lock()
        # Message id -> the calls of its handler: (future, handler, arguments), to name them in warnings.
        self._by_message: dict[str, list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]] = {}
        self._set_aside: set[Future[Any]] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a pool thread; a handler's call is remembered by its message id."""
        future = super().submit(fn, *args, **kwargs)
        # Handlers are called as handler(message, ctx): the context names the message, which is how
        # a timed-out message finds its thread.
        message_id = getattr(args[-1], "message_id", None) if args else None
        if isinstance(message_id, str):
            with self._lock:
                self._by_message.setdefault(message_id, []).append((future, fn, args))
            future.add_done_callback(lambda done: self._forget(message_id, done))
        return future

    def set_aside(self, message_id: str, timeout: float) -> int:
        """Count the threads still running ``message_id``'s handler as lost; return how many were.

        Each is replaced by a new thread while the pool is under its cap, and a
        warning names the handler and the message type.
        """
        with self._lock:
            calls = self._by_message.get(message_id, [])
            running = [(f, fn, args) for f, fn, args in calls if f.running() and f not in self._set_aside]
            for future, fn, args in running:
                name = getattr(fn, "__qualname__", None) or repr(fn)
                type_ = getattr(args[0], "type", None)
                # ThreadPoolExecutor starts a thread while it has fewer than _max_workers: raising it
                # is how a pool grows (its own API has no resize).
                if self._max_workers < self.cap:
                    self._max_workers += 1
                    self._set_aside.add(future)
                    future.add_done_callback(self._give_back)
                    self._schedule_overrun_warning(future, name, type_, message_id, timeout)
                    logger.warning(
                        "handler %s of message %s (%s) is still running %gs after it timed out; a new thread "
                        "takes its place (%d of at most %d threads)",
                        name, message_id, type_, timeout, self._max_workers, self.cap,
                    )
                else:
                    logger.warning(
                        "handler %s of message %s (%s) is still running %gs after it timed out, and the pool is "
                        "at its cap of %d threads: later sync messages wait for a thread",
                        name, message_id, type_, timeout, self.cap,
                    )
        if running:
            with self._shutdown_lock:  # as ThreadPoolExecutor.submit() does
                if not self._shutdown:
                    self._adjust_thread_count()  # start the replacement now, for work already waiting
        return len(running)

    def _schedule_overrun_warning(self, future: Future[Any], name: str, type_: Any, message_id: str, timeout: float) -> None:
        """Warn if the handler is still running at the visibility timeout: its message runs again meanwhile."""
        if self.visibility_timeout <= timeout:
            return

        def warn() -> None:
            if not future.done():
                logger.warning(
                    "handler %s of message %s (%s) has run longer than the visibility timeout (%gs); its message "
                    "may be delivered and handled again while it still runs (a handler may hang)",
                    name, message_id, type_, self.visibility_timeout,
                )

        timer = threading.Timer(self.visibility_timeout - timeout, warn)
        timer.daemon = True
        timer.start()

    def _give_back(self, future: Future[Any]) -> None:
        with self._lock:
            if future in self._set_aside:
                self._set_aside.discard(future)
                self._max_workers -= 1  # the handler returned: its thread is back in the pool

    def _forget(self, message_id: str, future: Future[Any]) -> None:
        with self._lock:
            calls = [call for call in self._by_message.get(message_id, []) if call[0] is not future]
            if calls:
                self._by_message[message_id] = calls
            else:
                self._by_message.pop(message_id, None)
