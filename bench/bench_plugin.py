"""A bench-only plugin: message types whose handlers wait on I/O, or do nothing at all.

Registered in-process (``Worker(plugins=[bench_plugin])``), never installed.
"""

from __future__ import annotations

import asyncio
import threading
import time

from pydantic import BaseModel

from host import hookimpl

#: How long each I/O handler waits, in seconds.
IO_SECONDS = 0.05


class Sleep(BaseModel):
    """Payload of the I/O types: how long to wait, in seconds."""

    seconds: float = IO_SECONDS


async def async_io(message, ctx) -> None:
    """An async handler awaiting I/O (an HTTP call, a database query...)."""
    await asyncio.sleep(message.payload.seconds)


def sync_io(message, ctx) -> None:
    """A sync handler blocking on I/O (a blocking client library)."""
    time.sleep(message.payload.seconds)


class Tally:
    """What the no-op handler saw: how many messages, and when each was handled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.latencies_ms: list[float] = []
        self.done = threading.Event()
        self.expected = 0

    def reset(self, expected: int) -> None:
        """Start counting afresh; ``done`` is set once ``expected`` messages were handled."""
        with self.lock:
            self.count = 0
            self.latencies_ms = []
            self.expected = expected
            self.done.clear()


TALLY = Tally()


async def noop(message, ctx) -> None:
    """Do nothing but count; a payload ``{"sent": epoch seconds}`` records the enqueue-to-handler latency."""
    handled = time.time()
    payload = message.payload
    with TALLY.lock:
        TALLY.count += 1
        if isinstance(payload, dict) and "sent" in payload:
            TALLY.latencies_ms.append((handled - payload["sent"]) * 1000)
        if TALLY.expected and TALLY.count >= TALLY.expected:
            TALLY.done.set()


@hookimpl
def letsgo_register_messages(register):
    """Register BenchAsyncIO, BenchSyncIO and BenchNoop."""
    register("BenchAsyncIO", async_io, payload=Sleep, description="awaits asyncio.sleep")
    register("BenchSyncIO", sync_io, payload=Sleep, description="blocks in time.sleep")
    register("BenchNoop", noop, description="does nothing; counts")
