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


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, kept for the life of the thread.

    Reusing the loop across warm Lambda invocations (and across a local
    delivery thread's batches) keeps loop-bound objects that handlers cache,
    such as an async HTTP client, valid from one batch to the next.
    """
    thread = threading.current_thread()
    with _loops_lock:
        for other in [t for t in _loops if not t.is_alive()]:
            _loops.pop(other).close()  # its thread is gone: nothing can be running on it
        loop = _loops.get(thread)
        if loop is None or loop.is_closed():
            loop = _loops[thread] = asyncio.new_event_loop()
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
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return loop.run_until_complete(coro)
    return _run_interruptible(loop, coro)


def _run_interruptible(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` with SIGINT turned into a cancellation, then a KeyboardInterrupt once it has unwound.

    Python raises SIGINT's KeyboardInterrupt in whatever code runs, a handler's
    included, and a batch fails a handler's own KeyboardInterrupt as one message.
    So a real Ctrl-C (the Lambda entry point or ``invoke`` on the main thread)
    must not be raised inside a handler: it cancels the work, as
    :class:`asyncio.Runner` does, and stops the process after.
    """
    task = loop.create_task(coro)
    interrupted = False

    def on_sigint(number: int, frame: Any) -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        interrupted = True
        loop.call_soon_threadsafe(task.cancel)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
