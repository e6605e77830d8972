"""letsgo-slack: a notification sink posting to a Slack incoming webhook (``LETSGO_SLACK_URL``).

When the worker starts with ``LETSGO_SLACK_URL`` set, this plugin registers a
:class:`~letsgo_slack.webhook.SlackWebhookSink` (plugin name
``letsgo_slack.webhook``) that implements ``letsgo_notify``: every
``ctx.notify()`` / ``await ctx.anotify()`` is posted to the channel of that
webhook. Without the variable nothing is registered and notifications cost
nothing, as in LetsGo, so calls can stay in the code.

Turn it off with any of: unset ``LETSGO_SLACK_URL``;
``LETSGO_WORKER_DISABLE_PLUGINS=letsgo_slack``; ``pip uninstall letsgo-slack``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from host import Setting, hookimpl, optional, seconds

if TYPE_CHECKING:
    from host import RegisterSetting, Worker

#: The name the sink is registered under in the worker's plugin manager.
SINK_NAME = "letsgo_slack.webhook"

#: The incoming webhook's URL: a secret, since anyone holding it can post to the channel.
SLACK_URL = Setting(
    "LETSGO_SLACK_URL", None, optional, "Slack incoming webhook URL; unset: Slack notifications are off.", secret=True
)
#: How long one post waits for Slack's answer.
SLACK_TIMEOUT = Setting(
    "LETSGO_SLACK_TIMEOUT_SECONDS", "10", seconds(0.1, 300), "Seconds to wait for Slack to answer one post."
)

logger = logging.getLogger("letsgo.slack")


@hookimpl
def letsgo_register_settings(register: RegisterSetting) -> None:
    """Declare ``LETSGO_SLACK_URL`` and ``LETSGO_SLACK_TIMEOUT_SECONDS``."""
    register(SLACK_URL)
    register(SLACK_TIMEOUT)


@hookimpl
def letsgo_startup(worker: Worker) -> None:
    """Register the Slack sink for ``LETSGO_SLACK_URL``; without it, do nothing.

    An invalid URL stops start-up with an error that names the variable but
    never shows its value.
    """
    _remove_sink(worker)
    url = worker.settings.get(SLACK_URL)
    if not url:
        logger.debug("LETSGO_SLACK_URL is not set: notifications are not posted to Slack")
        return
    from letsgo_slack.webhook import SlackWebhookSink

    worker.pm.register(SlackWebhookSink(url, timeout=worker.settings.get(SLACK_TIMEOUT)), name=SINK_NAME)


@hookimpl
def letsgo_shutdown(worker: Worker) -> None:
    """Unregister the Slack sink."""
    _remove_sink(worker)


def _remove_sink(worker: Worker) -> None:
    sink = worker.pm.get_plugin(SINK_NAME)
    if sink is not None:
        worker.pm.unregister(sink, name=SINK_NAME)
