"""One reusable event loop per thread, and :func:`run` to drive a coroutine on it.

Lambda reuses its process across warm invocations and the local runtime keeps
its delivery threads; keeping each thread's loop keeps loop-bound objects that
handlers cache (an async HTTP client, say) valid from one batch to the next.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loops: dict[threading.Thread, asyncio.AbstractEventLoop] = {}
_loops_lock = threading.Lock()
_this_thread = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, kept for the life of the thread.

    Reusing the loop across warm Lambda invocations (and across a local
    delivery thread's batches) keeps loop-bound objects that handlers cache,
    such as an async HTTP client, valid from one batch to the next.
    """
    loop = getattr(_this_thread, "loop", None)
    if loop is None or loop.is_closed():
        thread = threading.current_thread()
        with _loops_lock:
            for other in [t for t in _loops if not t.is_alive()]:
                _loops.pop(other).close()  # its thread is gone: nothing can be running on it
            loop = _loops[thread] = _this_thread.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on this thread's reusable event loop.

    Blocking: call it from synchronous code (the Lambda handler, a delivery
    thread), never from a coroutine, where it would have to block the loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError(
            "host.core.loops.run() was called from a running event loop; call the batch and tick "
            "functions from a thread (for example with loop.run_in_executor)"
        )
    loop = _thread_loop()
    if threading.current_thread() is threading.main_thread() and _interrupts.installed():
        return _interrupts.run(loop, coro)
    return loop.run_until_complete(coro)


class _Interrupts:
    """A SIGINT on the main thread while :func:`run` runs there: a cancellation, then a KeyboardInterrupt.

    Python raises SIGINT's KeyboardInterrupt in whatever code runs, a handler's
    included, and a batch fails a handler's own KeyboardInterrupt as one message.
    So a real Ctrl-C (the Lambda entry point or ``invoke`` on the main thread)
    must not be raised inside a handler: it cancels the work, as
    :class:`asyncio.Runner` does, and stops the process after.

    The handler is installed on the first run, when SIGINT still has Python's
    default handler (a program that handles SIGINT itself keeps its own), and
    stays: between runs it raises KeyboardInterrupt as the default does.
    Swapping handlers around every batch, as :class:`asyncio.Runner` does, cost
    about 20 us a batch.
    """

    def __init__(self) -> None:
        self._installed = False
        self._task: asyncio.Task[Any] | None = None
        self._interrupted = False

    def installed(self) -> bool:
        """True when this handler takes SIGINT, installing it if SIGINT has Python's default handler (main thread only)."""
        if not self._installed and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self._installed

    def _on_sigint(self, number: int, frame: Any) -> None:
        task = self._task
        if task is None or self._interrupted:
            raise KeyboardInterrupt  # nothing running, or a second Ctrl-C: stop at once
        self._interrupted = True
        task.get_loop().call_soon_threadsafe(task.cancel)

    def run(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on ``loop``; a SIGINT meanwhile cancels it, and raises KeyboardInterrupt once it has unwound."""
        task = self._task = loop.create_task(coro)
        self._interrupted = False
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if self._interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            self._task = None


_interrupts = _Interrupts()
