"""Notifications: the host's ``notify()``, delivered by every ``letsgo_notify`` sink."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.errors import NotificationError

if TYPE_CHECKING:
    import pluggy

logger = logging.getLogger("letsgo.notify")


@dataclass(frozen=True)
class Notification:
    """A notification for a person: plain text (Slack mrkdwn), optional Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    level: str = "info"
    source: str | None = None


def deliver(pm: pluggy.PluginManager, notification: Notification) -> None:
    """Hand ``notification`` to every sink; raise :class:`NotificationError` if any failed.

    Every sink is called even when an earlier one fails, so one broken sink does
    not silence the others. With no sink installed this only logs at DEBUG.
    """
    from host.plugins import call_impl, implementations

    impls = implementations(pm, "letsgo_notify")
    if not impls:
        logger.debug("no notification sink installed; dropped: %s", notification.text)
        return
    failures: list[str] = []
    for impl in impls:
        try:
            call_impl(impl, notification=notification)
        except Exception as error:  # each sink fails alone
            failures.append(f"{impl.plugin_name}: {error}")
    if failures:
        raise NotificationError("notification failed in " + "; ".join(failures))
