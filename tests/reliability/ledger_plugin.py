"""A plugin for the reliability suite's server subprocesses: handlers that keep a ledger.

Installed in a temporary directory with a ``*.dist-info`` (entry point group
``letsgo_worker``) and found by the server through real entry-point discovery.
Every handling attempt appends one line to the file named by ``REL_LEDGER``:
``ok <n> <message id> <receive count>`` or ``fail <n> <message id> <receive count>``.
Lines are written with one ``write()`` on an ``O_APPEND`` descriptor, so they
survive ``kill -9`` of the server and never interleave.

Types:

- ``rel.count``: always succeeds.
- ``rel.flaky``: fails at random with probability ``REL_FAIL_RATE`` (transient);
  a payload with ``"always_fail": true`` always fails (permanent).
- ``rel.hang``: on its first handling blocks for ``REL_HANG_SECONDS``, then succeeds.
- ``rel.slow``: sleeps ``payload["seconds"]`` then succeeds (crash tests kill mid-batch).
- ``rel.notify``: sends a notification (fails when the sink fails).
- ``rel.token``: gets the worker's API access token (fails when the key is unusable).
"""

from __future__ import annotations

import os
import random
import threading
import time

from pydantic import BaseModel

from host import hookimpl


class Numbered(BaseModel):
    n: int
    always_fail: bool = False
    seconds: float = 0.0


_ledger_fd: int | None = None
_lock = threading.Lock()
_random = random.Random(int(os.environ.get("REL_SEED", "0")))
_hung: set[int] = set()


def _write(kind: str, message, ctx) -> None:
    global _ledger_fd
    if _ledger_fd is None:
        _ledger_fd = os.open(os.environ["REL_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_ledger_fd, f"{kind} {message.payload.n} {ctx.message_id} {ctx.receive_count}\n".encode())


def handle_count(message, ctx) -> None:
    _write("ok", message, ctx)


class TransientFailure(Exception):
    """Raised at random: the next delivery may succeed."""


class PermanentFailure(Exception):
    """Raised every time for a message marked ``always_fail``."""


def handle_flaky(message, ctx) -> None:
    if message.payload.always_fail:
        _write("fail", message, ctx)
        raise PermanentFailure(f"order {message.payload.n} can never be processed")
    with _lock:
        unlucky = _random.random() < float(os.environ.get("REL_FAIL_RATE", "0.3"))
    if unlucky:
        _write("fail", message, ctx)
        raise TransientFailure(f"order {message.payload.n}: downstream busy, try again")
    _write("ok", message, ctx)


def handle_hang(message, ctx) -> None:
    with _lock:
        first = message.payload.n not in _hung
        _hung.add(message.payload.n)
    if first:
        _write("hang", message, ctx)
        time.sleep(float(os.environ.get("REL_HANG_SECONDS", "3600")))
        return
    _write("ok", message, ctx)


async def handle_slow(message, ctx) -> None:
    import asyncio

    await asyncio.sleep(message.payload.seconds)
    _write("ok", message, ctx)


def handle_notify(message, ctx) -> None:
    ctx.notify(f"rel.notify {message.payload.n}")
    _write("ok", message, ctx)


def handle_token(message, ctx) -> None:
    from host.services.api import get_access_token

    ctx.logger.debug("token of %d characters", len(get_access_token()))
    _write("ok", message, ctx)


@hookimpl
def letsgo_register_messages(register):
    register("rel.count", handle_count, payload=Numbered, description="always succeeds")
    register("rel.flaky", handle_flaky, payload=Numbered, description="fails at random, or always")
    register("rel.hang", handle_hang, payload=Numbered, description="hangs on its first handling")
    register("rel.slow", handle_slow, payload=Numbered, description="sleeps, then succeeds")
    register("rel.notify", handle_notify, payload=Numbered, description="sends a notification")
    register("rel.token", handle_token, payload=Numbered, description="gets an API access token")
