"""letsgo-slack: a notification sink posting to a Slack incoming webhook (``LETSGO_SLACK_URL``)."""

from host import hookimpl


@hookimpl
def letsgo_notify(notification):
    """Post ``notification`` to the Slack incoming webhook in ``LETSGO_SLACK_URL``."""
