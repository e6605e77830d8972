"""One reusable event loop per thread, and :func:`run` to drive a coroutine on it.

Lambda reuses its process across warm invocations and the local runtime keeps
its delivery threads; keeping each thread's loop keeps loop-bound objects that
handlers cache (an async HTTP client, say) valid from one batch to the next.
"""

from __future__ import annotations

import asyncio
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
    return _thread_loop().run_until_complete(coro)
