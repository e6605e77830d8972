"""A bench-only plugin: message types whose handlers wait on I/O, or do nothing at all.

Registered in-process (``Worker(plugins=[bench_plugin])``) or, for the local server, through a
distribution that exists only on the bench's PYTHONPATH (``bench/servers.py``); never installed.
"""

from __future__ import annotations

import asyncio
import os
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


#: When set (by the end-to-end scenario), the no-op handler appends each enqueue-to-handler latency here.
LATENCY_FILE = os.environ.get("BENCH_LATENCY_FILE")
_latency_lock = threading.Lock()


async def noop(message, ctx) -> None:
    """Do nothing; a payload ``{"sent": epoch seconds}`` has its enqueue-to-handler latency written down."""
    handled = time.time()
    payload = message.payload
    if LATENCY_FILE and isinstance(payload, dict) and "sent" in payload:
        with _latency_lock, open(LATENCY_FILE, "a") as file:
            file.write(f"{(handled - payload['sent']) * 1000:.3f}\n")


@hookimpl
def letsgo_register_messages(register):
    """Register BenchAsyncIO, BenchSyncIO and BenchNoop."""
    register("BenchAsyncIO", async_io, payload=Sleep, description="awaits asyncio.sleep")
    register("BenchSyncIO", sync_io, payload=Sleep, description="blocks in time.sleep")
    register("BenchNoop", noop, description="does nothing")
