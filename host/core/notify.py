"""Notifications: the host's ``notify()``, delivered by every ``letsgo_notify`` sink.

Sinks are plugins (``letsgo-slack`` posts to a Slack incoming webhook). A sink
that fails raises; by default that fails the notification and so the message
that sent it, which is then retried, as in LetsGo. A caller that would rather
lose the notification than retry its work passes ``required=False``.

Sinks block while they post. Sync code calls :func:`deliver` in its own
thread; async code awaits :func:`deliver_async`, which runs the very same
sink calls in a thread pool so that the event loop keeps serving the other
messages of the batch.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.errors import NotificationError

if TYPE_CHECKING:
    import pluggy

logger = logging.getLogger("letsgo.notify")

_warned_about_blocking = False


@dataclass(frozen=True)
class Notification:
    """A notification for a person: plain text (Slack mrkdwn), optional Block Kit blocks.

    :ivar text: the message; with ``blocks`` it is the fallback shown in alerts
    :ivar blocks: Slack Block Kit blocks, or None
    :ivar level: ``"info"``, ``"warning"`` or ``"error"``; a sink may use it (Slack ignores it)
    :ivar source: who sent it (a message type, ``"letsgo-worker"``...), for sinks and logs
    """

    text: str
    blocks: list[dict[str, Any]] | None = None
    level: str = "info"
    source: str | None = None


def _sinks(pm: pluggy.PluginManager) -> list[pluggy.HookImpl]:
    from host.core.plugins import implementations

    return implementations(pm, "letsgo_notify")


def _call_sinks(sinks: list[pluggy.HookImpl], notification: Notification, required: bool) -> None:
    from host.core.plugins import call_impl

    failures: list[str] = []
    for sink in sinks:
        try:
            call_impl(sink, notification=notification)
        except Exception as error:  # each sink fails alone, so one broken sink does not silence the others
            failures.append(f"{sink.plugin_name}: {error}")
    if not failures:
        return
    error = NotificationError("notification failed in " + "; ".join(failures))
    if required:
        raise error
    logger.warning("%s (sent with required=False: the work goes on without it)", error)


def anyone_to_tell(pm: pluggy.PluginManager) -> bool:
    """True when a notification sent now reaches anyone: a sink, or :func:`deliver`'s DEBUG line.

    With neither, a notification's text would be built for nobody; callers
    whose text costs something to build check this first.
    """
    return bool(pm.hook.letsgo_notify.get_hookimpls()) or logger.isEnabledFor(logging.DEBUG)


def _no_sink(notification: Notification) -> None:
    logger.debug("no notification sink installed; not sent: %s", notification.text)


def _warn_if_blocking_event_loop() -> None:
    global _warned_about_blocking
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # not on an event loop's thread: blocking here blocks only this thread
    if not _warned_about_blocking:
        _warned_about_blocking = True
        logger.warning(
            "notify() was called from async code: the event loop waits while the sinks post, "
            "holding up the other messages of the batch; use `await ctx.anotify(...)` in async handlers"
        )


def deliver(pm: pluggy.PluginManager, notification: Notification, *, required: bool = True) -> None:
    """Hand ``notification`` to every sink; raise :class:`NotificationError` if any failed.

    Every sink is called even when an earlier one fails. With ``required=False``
    a failure is logged as a warning instead of raised. With no sink installed
    this only logs at DEBUG. Blocks while the sinks post: from async code, use
    :func:`deliver_async`.
    """
    sinks = _sinks(pm)
    if not sinks:
        _no_sink(notification)
        return
    _warn_if_blocking_event_loop()
    _call_sinks(sinks, notification, required)


async def deliver_async(
    pm: pluggy.PluginManager,
    notification: Notification,
    executor: Executor | None = None,
    *,
    required: bool = True,
) -> None:
    """:func:`deliver` for async code: the sinks run in ``executor``, the event loop keeps going.

    ``executor`` is the worker's thread pool (None: the loop's default executor).
    """
    sinks = _sinks(pm)
    if not sinks:
        _no_sink(notification)
        return
    await asyncio.get_running_loop().run_in_executor(executor, _call_sinks, sinks, notification, required)
