"""Configuration from environment variables (and a ``.env`` file).

Names follow LetsGo where it has one. Every value is parsed once, at start-up;
a bad value is a :class:`ConfigError` that names the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from host.errors import ConfigError


def load_dotenv_file(path: str | None = None) -> None:
    """Load variables from a ``.env`` file into ``os.environ`` (existing ones win).

    The file is ``LETSGO_WORKER_ENV_FILE`` or ``.env`` in the working directory.
    python-dotenv is only imported when the file exists, so Lambda pays nothing.
    """
    path = path or os.environ.get("LETSGO_WORKER_ENV_FILE") or ".env"
    if os.path.isfile(path):
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def _text(value: str) -> str:
    return value


def _optional(value: str) -> str | None:
    return value or None


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return number

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if number != number or not low <= number <= high:  # NaN fails too
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}")
        return number

    return parse


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its name, default (as text) and parser."""

    field: str
    variable: str
    default: str | None
    parse: Callable[[str], Any]
    description: str


#: Every variable the worker reads, in the order the README documents them.
SETTINGS: tuple[Setting, ...] = (
    Setting("port", "PORT", "3002", _int_between(0, 65535), "Local server port."),
    Setting("host", "LETSGO_WORKER_HOST", "127.0.0.1", _text, "Local server bind address."),
    Setting("db_path", "LETSGO_WORKER_DB", ".letsgo/worker.db", _text, "SQLite file of the local queue."),
    Setting("schedule", "LETSGO_WORKER_SCHEDULE", None, _optional, "Schedule expression for scheduled ticks; unset: no local scheduler."),
    Setting("schedule_timezone", "LETSGO_WORKER_SCHEDULE_TIMEZONE", "UTC", _text, "IANA time zone of the schedule."),
    Setting("slack_url", "LETSGO_SLACK_URL", None, _optional, "Slack incoming webhook URL; unset: Slack notifications are off."),
    Setting("slack_timeout", "LETSGO_SLACK_TIMEOUT_SECONDS", "10", _seconds(0.1, 300), "Seconds to wait for Slack to answer one post."),
    Setting("api_url", "LETSGO_API_URL", None, _optional, "Base URL of the app's API."),
    Setting("api_audience", "LETSGO_API_AUDIENCE", "letsgo:service", _text, "Audience of the worker's access token."),
    Setting("local_queue_url", "LETSGO_LOCAL_QUEUE_URL", None, _optional, "Local server URL for enqueue(); unset: SQS."),
    Setting("queue_url", "LETSGO_WORKER_QUEUE_URL", None, _optional, "SQS queue URL for enqueue()."),
    Setting("batch_size", "LETSGO_WORKER_BATCH_SIZE", "10", _int_between(1, 10000), "Messages per batch."),
    Setting("batch_window", "LETSGO_WORKER_BATCH_WINDOW_SECONDS", "0", _seconds(0, 300), "Local batching window."),
    Setting("visibility_timeout", "LETSGO_WORKER_VISIBILITY_TIMEOUT", "360", _seconds(0, 43200), "Seconds a received message stays invisible."),
    Setting("concurrency", "LETSGO_WORKER_CONCURRENCY", "5", _int_between(1, 1000), "Batches handled at once (local runtime)."),
    Setting("thread_pool_size", "LETSGO_WORKER_THREADS", "10", _int_between(1, 1000), "Threads for sync handlers within a batch."),
    Setting("deadline_margin_ms", "LETSGO_WORKER_DEADLINE_MARGIN_MS", "1000", _int_between(0, 900000), "Lambda: stop starting messages this long before the timeout."),
    Setting("max_receive_count", "LETSGO_WORKER_MAX_RECEIVE_COUNT", "5", _int_between(1, 1000), "Receives before a message is dead-lettered."),
    Setting("backoff_base", "LETSGO_WORKER_BACKOFF_BASE_SECONDS", "2", _seconds(0, 43200), "First retry delay; doubles per receive."),
    Setting("backoff_max", "LETSGO_WORKER_BACKOFF_MAX_SECONDS", "300", _seconds(0, 43200), "Longest retry delay."),
    Setting("aws_region", "AWS_REGION", None, _optional, "AWS region for SQS and DynamoDB."),
    Setting("idempotency_table", "LETSGO_WORKER_IDEMPOTENCY_TABLE", None, _optional, "DynamoDB table for the idempotency store (AWS)."),
    Setting("pki_private_key", "LETSGO_PKI_PRIVATE_KEY", None, _optional, "PEM private key for the worker's access tokens."),
    Setting("pki_private_key_file", "LETSGO_PKI_PRIVATE_KEY_FILE", None, _optional, "File holding that PEM key."),
    Setting("stripe_test_webhook_key", "LETSGO_STRIPE_TEST_WEBHOOK_KEY", None, _optional, "Stripe webhook signing secret, test mode."),
    Setting("stripe_live_webhook_key", "LETSGO_STRIPE_LIVE_WEBHOOK_KEY", None, _optional, "Stripe webhook signing secret, live mode."),
    Setting("plugins", "LETSGO_WORKER_PLUGINS", None, _names, "Load only these plugins (comma list; empty: none)."),
    Setting("disable_plugins", "LETSGO_WORKER_DISABLE_PLUGINS", "", _names, "Never load these plugins (comma list)."),
    Setting("strict_plugins", "LETSGO_WORKER_STRICT_PLUGINS", "0", _flag, "A plugin that fails to import stops start-up."),
    Setting("trace_plugins", "LETSGO_WORKER_TRACE_PLUGINS", "0", _flag, "Log every hook call with its arguments and results."),
    Setting("log_level", "LETSGO_WORKER_LOG_LEVEL", "INFO", _log_level, "Log level."),
)


@dataclass(frozen=True)
class Settings:
    """The worker's configuration, parsed and validated. Build with :meth:`from_env`."""

    port: int
    host: str
    db_path: str
    schedule: str | None
    schedule_timezone: str
    slack_url: str | None = field(repr=False)
    slack_timeout: float
    api_url: str | None
    api_audience: str
    local_queue_url: str | None
    queue_url: str | None
    batch_size: int
    batch_window: float
    visibility_timeout: float
    concurrency: int
    thread_pool_size: int
    deadline_margin_ms: int
    max_receive_count: int
    backoff_base: float
    backoff_max: float
    aws_region: str | None
    idempotency_table: str | None
    # Secrets never appear in a repr, so a logged Settings cannot leak them.
    pki_private_key: str | None = field(repr=False)
    pki_private_key_file: str | None
    stripe_test_webhook_key: str | None = field(repr=False)
    stripe_live_webhook_key: str | None = field(repr=False)
    plugins: frozenset[str] | None
    disable_plugins: frozenset[str]
    strict_plugins: bool
    trace_plugins: bool
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse every setting from ``environ`` (default ``os.environ``).

        Keyword ``overrides`` (by field name) win over the environment, for
        command-line flags and tests. Raises :class:`ConfigError` naming the
        first bad variable.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field in overrides:
                continue
            raw = environ.get(setting.variable, setting.default)
            if raw is None:
                values[setting.field] = None
                continue
            try:
                values[setting.field] = setting.parse(raw)
            except ValueError as error:
                reason = str(error) if not str(error).startswith(("invalid literal", "could not convert")) else "not a number"
                raise ConfigError(f"{setting.variable}={raw!r} is invalid: {reason}") from None
        values.update(overrides)
        return cls(**values)


assert {f.name for f in fields(Settings)} == {s.field for s in SETTINGS}
