"""Structured logging: one JSON object per line, for CloudWatch Logs Insights.

The host logs under the ``letsgo`` logger hierarchy (plugins' ``ctx.logger`` is
``letsgo.plugin.<name>``). :func:`configure_logging` gives that hierarchy its own
handler writing JSON lines, as the Lambda entry point and ``letsgo-worker
invoke`` do; elsewhere (the local server, tests) records flow to whatever the
application configured, with a readable message.

Fields go in ``extra=`` (see :func:`log_fields`): the JSON line carries them as
keys, a plain-text formatter still shows the human message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

#: The logger every host module logs under; plugins log under ``letsgo.plugin.<name>``.
ROOT_LOGGER = "letsgo"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# One encoder for every line: json.dumps with options would build a new one per call.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, then every extra field.

    Exceptions become an ``error`` string (type, message and traceback) on the
    same line, so a log event is never split across CloudWatch entries.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key[:1] != "_":
                line[key] = value  # an extra field named like a key above replaces its value, in place
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        return _ENCODER.encode(line)


# The formatted second of the last line: consecutive lines mostly share it.
_last_second: tuple[int, str] = (-1, "")


def _iso_time(created: float) -> str:
    global _last_second
    second, text = _last_second
    if int(created) != second:
        second = int(created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, text)
    return f"{text}.{int(created % 1 * 1000):03d}Z"


class _JsonLinesHandler(logging.StreamHandler):
    """Writes to ``stream``, or to whatever ``sys.stdout`` is at the time of each record.

    The Lambda runtime replaces ``sys.stdout`` with an unbuffered wrapper before
    it imports the handler module; resolving it late keeps every line flushed.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._follow_stdout = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stdout:
            self.stream = sys.stdout
        super().emit(record)


def configure_logging(level: str, stream: IO[str] | None = None) -> logging.Logger:
    """Send the ``letsgo`` loggers to JSON lines on ``stream`` (default: standard output).

    ``level`` is a level name, as ``Settings.log_level`` gives it (which makes a
    bad ``LETSGO_WORKER_LOG_LEVEL`` a :class:`~host.errors.ConfigError`); an
    unknown name is a ValueError, never a silent default. Idempotent: calling it
    again replaces the handler it installed. The records stop propagating to
    the root logger, so a runtime's own handler (Lambda's text formatter) does
    not print them a second time.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)  # first: an unknown name raises before any handler changes
    for handler in list(logger.handlers):
        if isinstance(handler, _JsonLinesHandler):
            logger.removeHandler(handler)
    handler = _JsonLinesHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def log_fields(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log ``message`` with ``fields`` as structured keys (None values are left out).

    Cheap when the level is disabled: nothing is formatted.
    """
    if not logger.isEnabledFor(level):
        return
    exc_info = fields.pop("exc_info", None)
    logger.log(level, message, extra={k: v for k, v in fields.items() if v is not None}, exc_info=exc_info)


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), for a line a terminal shows.

    A client-chosen message id, type or body cannot then forge lines or send escape codes.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class TextFormatter(logging.Formatter):
    """The command line's text lines, with control characters in the message escaped.

    A message id or type chosen by a client (``"m-1\\n... INFO forged"``, ANSI
    escapes) then cannot forge log lines or drive the terminal. Tracebacks,
    which the host writes itself, keep their lines.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        message = record.message
        record.message = printable(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message


def configure_text_logging(level: str) -> None:
    """Log to standard error in text lines (see :class:`TextFormatter`) at ``level``: the command line's logging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())
    logging.basicConfig(level=level, handlers=[handler])
