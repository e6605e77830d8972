"""Configuration from environment variables (and a ``.env`` file).

Names follow LetsGo where it has one. :class:`Settings` is the one reader of
the environment: the host's variables (:data:`SETTINGS`) are parsed once, at
start-up, and so are the variables each plugin declares with a
:class:`Setting` through ``letsgo_register_settings``. Command-line flags go
through the same parsers. A bad value is a :class:`ConfigError` that names the
variable (or the flag) and the value, unless the value is a secret.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from host.errors import ConfigError


def set_process_environment(variable: str, value: str) -> None:
    """Set ``variable`` in this process's environment, which the processes it starts inherit.

    For a library configured only through the environment, before it is
    imported: ``serve --workers N`` points prometheus-client's multiprocess
    mode at its folder this way, so every delivery process writes its counts there.
    """
    os.environ[variable] = value


def load_dotenv_file(path: str | None = None) -> None:
    """Load variables from a ``.env`` file into ``os.environ`` (existing ones win).

    The file is ``LETSGO_WORKER_ENV_FILE`` or ``.env`` in the working directory.
    python-dotenv is only imported when the file exists, so Lambda pays nothing.
    """
    path = path or os.environ.get("LETSGO_WORKER_ENV_FILE") or ".env"
    if os.path.isfile(path):
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


# -------------------------------------------------------------------------
# Parsers: text in, value out; a ValueError's message says what was expected
# -------------------------------------------------------------------------


def text(value: str) -> str:
    """The text as it is (the default parser)."""
    return value


def bind_address(value: str) -> str:
    """An address to bind; empty is taken as unset (127.0.0.1), since an empty host binds every interface."""
    return value.strip() or "127.0.0.1"


def optional(value: str) -> str | None:
    """The text, or None when it is empty: ``VAR=`` means unset."""
    return value or None


def comma_list(value: str) -> frozenset[str]:
    """A comma-separated list as a set of names, blanks dropped: ``" a, b ,,"`` is ``{"a", "b"}``."""
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def flag(value: str) -> bool:
    """A yes/no switch: 1/0, true/false, yes/no or on/off (any case); empty is no."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` to ``high`` inclusive."""

    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return number

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A parser of a number of seconds (fractions allowed) from ``low`` to ``high`` inclusive."""

    def parse(value: str) -> float:
        number = float(value)
        if number != number or not low <= number <= high:  # NaN fails too
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}")
        return number

    return parse


def optional_seconds(low: float, high: float) -> Callable[[str], float | None]:
    """:func:`seconds`, or None when the text is empty: ``VAR=`` means unset."""
    parse_seconds = seconds(low, high)

    def parse(value: str) -> float | None:
        return parse_seconds(value) if value.strip() else None

    return parse


def log_format(value: str) -> str | None:
    """``json`` or ``text`` (any case); empty or ``auto`` is None: text on a terminal, JSON otherwise."""
    chosen = value.strip().lower()
    if chosen in ("", "auto"):
        return None
    if chosen not in ("json", "text"):
        raise ValueError("expected json, text or auto")
    return chosen


def switch(value: str) -> bool | None:
    """:func:`flag`, or None for ``auto`` (the worker decides where it runs)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return flag(value)
    except ValueError:
        raise ValueError("expected auto, 1/0, true/false, yes/no or on/off") from None


#: What ``LETSGO_WORKER_METRICS`` may name.
METRICS_OUTPUTS = ("emf", "prometheus")


def metrics_outputs(value: str) -> frozenset[str]:
    """A comma list of metrics outputs, each ``emf`` or ``prometheus``; empty: none."""
    names = comma_list(value.lower())
    unknown = sorted(names - set(METRICS_OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output {', '.join(unknown)}; expected a comma list of {', '.join(METRICS_OUTPUTS)}")
    return names


def metrics_namespace(value: str) -> str:
    """A CloudWatch namespace: 1 to 255 letters, digits or ``. - _ / # :`` and spaces, not starting ``AWS/``."""
    if not re.fullmatch(r"[A-Za-z0-9 ._\-/#:]{1,255}", value) or value.startswith("AWS/"):
        raise ValueError("expected 1 to 255 letters, digits, spaces or . - _ / # : (not starting with AWS/)")
    return value


def log_level(value: str) -> str:
    """A :mod:`logging` level name, upper-cased."""
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


# -------------------------------------------------------------------------
# Settings: what is declared, and the parsed values
# -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its name, default (as text), parser and meaning.

    A plugin declares its own in ``letsgo_register_settings`` and reads the
    value with ``worker.settings.get(setting)``::

        TIMEOUT = Setting("MY_PLUGIN_TIMEOUT_SECONDS", "10", seconds(1, 60), "How long to wait.")

    :ivar variable: the environment variable's name.
    :ivar default: the text used when the variable is not set; None: the value is None.
    :ivar parse: turns the text into the value; raises ``ValueError`` saying
        what was expected (the message becomes the start-up error).
    :ivar description: one line for the README and ``letsgo-worker plugins``.
    :ivar secret: the value is never shown: not in a repr, a log line, an
        error message or the ``plugins`` listing.
    :ivar field: for the host's own settings, the :class:`Settings` attribute
        holding the value; None for a plugin's.
    """

    variable: str
    default: str | None = None
    parse: Callable[[str], Any] = text
    description: str = ""
    secret: bool = dataclasses.field(default=False, kw_only=True)
    field: str | None = dataclasses.field(default=None, kw_only=True)


class RegisterSetting(Protocol):
    """The ``register`` callback handed to ``letsgo_register_settings``."""

    def __call__(self, setting: Setting) -> None: ...


def _host(field: str, variable: str, default: str | None, parse: Callable[[str], Any], description: str,
          *, secret: bool = False) -> Setting:
    return Setting(variable, default, parse, description, secret=secret, field=field)


#: Every variable the worker reads, in the order the README documents them.
SETTINGS: tuple[Setting, ...] = (
    _host("port", "PORT", "3002", int_between(0, 65535), "Local server port."),
    _host("host", "LETSGO_WORKER_HOST", "127.0.0.1", bind_address,
          "Local server bind address (empty: as unset, 127.0.0.1; never every interface by accident)."),
    _host("db_path", "LETSGO_WORKER_DB", ".letsgo/worker.db", text, "SQLite file of the local queue."),
    _host("schedule", "LETSGO_WORKER_SCHEDULE", None, optional, "Schedule expression for scheduled ticks; unset: no local scheduler."),
    _host("schedule_timezone", "LETSGO_WORKER_SCHEDULE_TIMEZONE", "UTC", text, "IANA time zone of the schedule."),
    _host("api_url", "LETSGO_API_URL", None, optional, "Base URL of the app's API."),
    _host("api_audience", "LETSGO_API_AUDIENCE", "letsgo:service", text, "Audience of the worker's access token."),
    _host("local_queue_url", "LETSGO_LOCAL_QUEUE_URL", None, optional, "Local server URL for enqueue(); unset: SQS."),
    _host("queue_url", "LETSGO_WORKER_QUEUE_URL", None, optional, "SQS queue URL for enqueue()."),
    _host("batch_size", "LETSGO_WORKER_BATCH_SIZE", "10", int_between(1, 10000), "Messages per batch."),
    _host("batch_window", "LETSGO_WORKER_BATCH_WINDOW_SECONDS", "0", seconds(0, 300), "Local batching window."),
    _host("visibility_timeout", "LETSGO_WORKER_VISIBILITY_TIMEOUT", "360", seconds(0, 43200), "Seconds a received message stays invisible."),
    _host("handler_timeout", "LETSGO_WORKER_HANDLER_TIMEOUT", None, optional_seconds(0, 43200),
          "Seconds a handler may run before its message fails (retried); unset: the visibility timeout less 10%; 0: no limit."),
    _host("concurrency", "LETSGO_WORKER_CONCURRENCY", "5", int_between(1, 1000), "Batches handled at once (local runtime; per process with --workers)."),
    _host("delivery_processes", "LETSGO_WORKER_PROCESSES", "0", int_between(0, 64), "serve: delivery processes (`--workers`); 0 delivers in the server's own process."),
    _host("thread_pool_size", "LETSGO_WORKER_THREADS", "10", int_between(1, 1000), "Threads for sync handlers within a batch."),
    _host("deadline_margin_ms", "LETSGO_WORKER_DEADLINE_MARGIN_MS", "1000", int_between(0, 900000), "Lambda: stop starting messages this long before the timeout."),
    _host("max_receive_count", "LETSGO_WORKER_MAX_RECEIVE_COUNT", "5", int_between(1, 1000), "Receives before a message is dead-lettered."),
    _host("backoff_base", "LETSGO_WORKER_BACKOFF_BASE_SECONDS", "2", seconds(0, 43200), "First retry delay; doubles per receive."),
    _host("backoff_max", "LETSGO_WORKER_BACKOFF_MAX_SECONDS", "300", seconds(0, 43200), "Longest retry delay."),
    _host("max_visibility_extension", "LETSGO_WORKER_MAX_VISIBILITY_EXTENSION", "3600", seconds(0, 43200),
          "serve: the heartbeat keeps a running message invisible up to this long after its receive; 0: no heartbeat."),
    _host("drain_timeout", "LETSGO_WORKER_DRAIN_SECONDS", "25", seconds(0, 3600),
          "serve: on SIGTERM, how long running batches may finish before what remains is returned to the queue"
          " (25: below ECS's default stopTimeout of 30 s)."),
    _host("aws_region", "AWS_REGION", None, optional, "AWS region for SQS and DynamoDB."),
    _host("lambda_backoff", "LETSGO_WORKER_LAMBDA_BACKOFF", "auto", switch,
          "Lambda: give a failed message its back-off with ChangeMessageVisibility; auto: on inside Lambda."),
    _host("dlq_url", "LETSGO_WORKER_DLQ_URL", None, optional,
          "URL of the queue's dead-letter queue: rejected messages are sent there at once (Lambda, serve --sqs)."),
    _host("rejected_to_dlq", "LETSGO_WORKER_REJECTED_TO_DLQ", "1", flag,
          "Send a rejected message straight to the dead-letter queue when it is known; 0: leave it to the redrive policy."),
    _host("large_message_bucket", "LETSGO_WORKER_LARGE_MESSAGE_BUCKET", None, optional,
          "S3 bucket for message bodies over 256 KiB sent to SQS (the SQS Extended Client's pointer format)."),
    _host("aws_endpoint_url", "AWS_ENDPOINT_URL", None, optional, "Endpoint of every AWS service, e.g. a local emulator (boto3 reads it too)."),
    _host("lambda_runtime_api", "AWS_LAMBDA_RUNTIME_API", None, optional, "Set by Lambda: the worker runs inside a Lambda execution environment."),
    _host("lambda_function_name", "AWS_LAMBDA_FUNCTION_NAME", None, optional, "Set by Lambda; `invoke` names its simulated function after it."),
    _host("lambda_function_version", "AWS_LAMBDA_FUNCTION_VERSION", None, optional, "Set by Lambda; the version `invoke` simulates."),
    _host("lambda_memory_size", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", None, optional, "Set by Lambda; the memory (MB) `invoke` simulates."),
    _host("idempotency_table", "LETSGO_WORKER_IDEMPOTENCY_TABLE", None, optional, "DynamoDB table for the idempotency store (AWS)."),
    _host("pki_private_key", "LETSGO_PKI_PRIVATE_KEY", None, optional, "PEM private key for the worker's access tokens.", secret=True),
    _host("pki_private_key_file", "LETSGO_PKI_PRIVATE_KEY_FILE", None, optional, "File holding that PEM key."),
    _host("plugins", "LETSGO_WORKER_PLUGINS", None, comma_list, "Load only these plugins (comma list; empty: none)."),
    _host("disable_plugins", "LETSGO_WORKER_DISABLE_PLUGINS", "", comma_list, "Never load these plugins (comma list)."),
    _host("strict_plugins", "LETSGO_WORKER_STRICT_PLUGINS", "0", flag, "A plugin that fails to import stops start-up."),
    _host("trace_plugins", "LETSGO_WORKER_TRACE_PLUGINS", "0", flag, "Log every hook call with its arguments and results."),
    _host("log_level", "LETSGO_WORKER_LOG_LEVEL", "INFO", log_level, "Log level."),
    _host("log_format", "LETSGO_WORKER_LOG_FORMAT", None, log_format,
          "Log lines as `json` or `text` (same fields); unset: text on a terminal, JSON under Lambda and when piped."),
    _host("metrics", "LETSGO_WORKER_METRICS", "", metrics_outputs,
          "Metrics outputs (comma list): emf writes CloudWatch Embedded Metric Format lines per batch on stdout; "
          "serve counts for GET /metrics (prometheus) by itself."),
    _host("metrics_namespace", "LETSGO_WORKER_METRICS_NAMESPACE", "LetsGoWorker", metrics_namespace,
          "CloudWatch namespace of the EMF metrics."),
    _host("dashboard_token", "LETSGO_WORKER_DASHBOARD_TOKEN", None, optional,
          "Token the dashboard and /metrics require (Bearer header or the login form); required when serve binds beyond loopback.",
          secret=True),
    _host("dashboard_read_only", "LETSGO_WORKER_DASHBOARD_READ_ONLY", "0", flag,
          "Dashboard shows but refuses actions (redrive, delete, purge)."),
)


#: What a secret's error says instead of showing the value.
_NOT_SHOWN = " (the value is not shown because it is a secret)"


def _parse(setting: Setting, raw: str, source: str | None = None) -> Any:
    """``raw`` through ``setting.parse``; a :class:`ConfigError` names ``source`` (default: the variable)."""
    try:
        return setting.parse(raw)
    except ValueError as error:
        reason = str(error)
        # int() and float() explain in Python's words; people want to know it is not a number.
        if reason.startswith(("invalid literal", "could not convert")):
            reason = "not a number"
        if setting.secret:
            raise ConfigError(f"{source or setting.variable} is invalid: {reason}{_NOT_SHOWN}") from None
        culprit = f"{source} {raw!r}" if source else f"{setting.variable}={raw!r}"
        raise ConfigError(f"{culprit} is invalid: {reason}") from None


# A frozen dataclass, so dataclasses.replace() gives a changed copy, whose __init__, __repr__, __eq__ and
# __hash__ loop over SETTINGS: generated for 45 fields, they took each Lambda cold start 3 ms to compile.
@dataclass(frozen=True, init=False, repr=False, eq=False)
class Settings:
    """The worker's configuration, parsed and validated. Build with :meth:`from_env`.

    The host's settings are attributes (``settings.port``); a plugin's are read
    with :meth:`get`. Secrets never appear in the repr, so a logged Settings
    cannot leak them. Two Settings are equal when their host settings are.
    """

    port: int
    host: str
    db_path: str
    schedule: str | None
    schedule_timezone: str
    api_url: str | None
    api_audience: str
    local_queue_url: str | None
    queue_url: str | None
    batch_size: int
    batch_window: float
    visibility_timeout: float
    handler_timeout: float | None
    concurrency: int
    delivery_processes: int
    thread_pool_size: int
    deadline_margin_ms: int
    max_receive_count: int
    backoff_base: float
    backoff_max: float
    max_visibility_extension: float
    drain_timeout: float
    aws_region: str | None
    lambda_backoff: bool | None
    dlq_url: str | None
    rejected_to_dlq: bool
    large_message_bucket: str | None
    aws_endpoint_url: str | None
    lambda_runtime_api: str | None
    lambda_function_name: str | None
    lambda_function_version: str | None
    lambda_memory_size: str | None
    idempotency_table: str | None
    pki_private_key: str | None
    pki_private_key_file: str | None
    plugins: frozenset[str] | None
    disable_plugins: frozenset[str]
    strict_plugins: bool
    trace_plugins: bool
    log_level: str
    log_format: str | None
    metrics: frozenset[str]
    metrics_namespace: str
    dashboard_token: str | None
    dashboard_read_only: bool
    # The environment read, where plugin settings are read too; it holds every secret: never shown or compared.
    _environ: Mapping[str, str]
    # Variable -> parsed value of each plugin setting, filled by with_plugin_settings().
    _plugin_values: Mapping[str, Any]

    def __init__(self, *, _environ: Mapping[str, str] | None = None, _plugin_values: Mapping[str, Any] | None = None,
                 **values: Any) -> None:
        if values.keys() != _FIELD_NAMES:
            unknown, missing = sorted(values.keys() - _FIELD_NAMES), sorted(_FIELD_NAMES - values.keys())
            raise TypeError(f"Settings() needs every host setting: unknown {unknown}, missing {missing}")
        for name, value in {**values, "_environ": _environ or {}, "_plugin_values": _plugin_values or {}}.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{s.field}={getattr(self, s.field)!r}" for s in SETTINGS if not s.secret) + ")"

    def __eq__(self, other: object) -> bool:
        if type(other) is not Settings:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELD_NAMES)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, s.field) for s in SETTINGS))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        flags: Mapping[str, tuple[str, str | None]] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Parse every host setting from ``environ`` (default ``os.environ``).

        ``flags`` maps a field name to a command-line flag and its text, e.g.
        ``{"port": ("--port", "8080")}``; the text goes through the setting's
        own parser and wins over the environment, and a bad one is a
        :class:`ConfigError` naming the flag: ``--port '70000' is invalid:
        expected an integer from 0 to 65535``. A flag whose text is None was
        not given and is skipped. Keyword ``overrides`` (by field name) are
        already-parsed values that win over both, for tests and embedding.

        Raises :class:`ConfigError` naming the first bad variable or flag.
        """
        environ = dict(os.environ if environ is None else environ)
        given = {name: given for name, given in (flags or {}).items() if given[1] is not None}
        unknown = (set(given) | set(overrides)) - {s.field for s in SETTINGS}
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field in overrides:
                continue
            if setting.field in given:
                flag_name, raw = given[setting.field]
                values[setting.field] = _parse(setting, raw, flag_name)
                continue
            raw = environ.get(setting.variable, setting.default)
            values[setting.field] = None if raw is None else _parse(setting, raw)
        values.update(overrides)
        return cls(**values, _environ=environ)

    def with_plugin_settings(self, declared: Iterable[Setting]) -> Settings:
        """A copy that also holds the values of the plugin settings ``declared``.

        Each is parsed from the environment these settings were read from, with
        its own parser; a bad value raises :class:`ConfigError` naming the
        variable. The worker calls this at start-up with every setting that
        plugins registered through ``letsgo_register_settings``.
        """
        values: dict[str, Any] = {}
        for setting in declared:
            raw = self._environ.get(setting.variable, setting.default)
            values[setting.variable] = None if raw is None else _parse(setting, raw)
        return dataclasses.replace(self, _plugin_values=values)

    def get(self, setting: Setting) -> Any:
        """The parsed value of ``setting``: ``worker.settings.get(SLACK_URL)``.

        For a plugin's setting, it must have been registered through
        ``letsgo_register_settings`` (by any plugin) and the worker started;
        otherwise :class:`LookupError` says so. A host setting is its attribute.
        """
        if setting.field is not None:
            return getattr(self, setting.field)
        try:
            return self._plugin_values[setting.variable]
        except KeyError:
            raise LookupError(
                f"{setting.variable} is not a declared setting: register it in letsgo_register_settings "
                "and read it once the worker has started"
            ) from None

    def display(self, setting: Setting) -> str | None:
        """``setting``'s text as configured, for listings: None when unset, ``"<secret>"`` for a secret."""
        raw = self._environ.get(setting.variable, setting.default)
        if raw is None:
            return None
        return "<secret>" if setting.secret else raw


_FIELD_NAMES = {s.field for s in SETTINGS}  # the host settings' attributes, declared in Settings in the same order:
assert [f.name for f in fields(Settings) if not f.name.startswith("_")] == [s.field for s in SETTINGS]
