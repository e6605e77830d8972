"""Services for handlers: enqueueing, the app's API, the idempotency store, Slack mrkdwn text."""
