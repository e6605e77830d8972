"""Log lines: one format for every runtime, as JSON objects or as text, with the same fields.

The host logs under the ``letsgo`` logger hierarchy (plugins' ``ctx.logger`` is
``letsgo.plugin.<name>``). :func:`configure_logging` (the Lambda entry point,
``letsgo-worker invoke``) gives that hierarchy a handler of its own on standard
output; :func:`configure_cli_logging` (every other command, ``serve`` included)
logs to standard error. ``LETSGO_WORKER_LOG_FORMAT`` picks ``json`` or ``text``;
unset, it is text on a terminal and JSON elsewhere (:func:`resolve_format`).

Fields go in ``extra=`` (see :func:`log_fields`): a JSON line carries them as
keys, a text line as ``key=value`` after the message, in the same order.
Tracebacks leave out the host's own frames (:func:`format_plugin_traceback`):
what a plugin author reads starts at their code.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import weakref
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.core.worker import Worker

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

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        """The traceback without the host's frames (see :func:`format_plugin_traceback`)."""
        return format_plugin_traceback(ei[1]) if ei[1] is not None else super().formatException(ei)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got from ``extra=``, in order: what both formats add after the message."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES and key[:1] != "_"}


#: The folder of the ``host`` package: frames of files inside it are the host's.
_HOST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _is_host_frame(frame: traceback.FrameSummary) -> bool:
    return os.path.abspath(frame.filename).startswith(_HOST_DIR)


def _runner_folders() -> tuple[str, ...]:
    """The standard library's thread pool and event loop: the frames that start a handler for the host."""
    import asyncio
    import concurrent.futures

    return tuple(os.path.dirname(os.path.abspath(module.__file__)) + os.sep for module in (asyncio, concurrent.futures))


def _plugin_frames(stack: traceback.StackSummary) -> list[traceback.FrameSummary]:
    """``stack`` without the host's frames, and without the runners' frames that lead up to the plugin's."""
    kept = [frame for frame in stack if not _is_host_frame(frame)]
    runners = _runner_folders()
    while kept and os.path.abspath(kept[0].filename).startswith(runners):
        kept.pop(0)
    return kept


def format_plugin_traceback(error: BaseException) -> str:
    """``error``'s traceback with the frames of the host's own files left out, for a plugin's failure.

    A handler's exception passes through the dispatch, the batch and the event
    loop on its way up; those frames say nothing to the plugin's author and
    push their own code off the screen. The frames of every other file (the
    plugin, libraries it called, the standard library) stay, and so do chained
    exceptions; the thread pool's or event loop's frames that merely started
    the handler go too. A traceback made only of host frames (a fault of the
    host's own) is kept whole, so that it can still be found.
    """
    summary = traceback.TracebackException.from_exception(error)
    seen: set[int] = set()
    pending = [summary]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        kept = _plugin_frames(part.stack)
        if kept and len(kept) < len(part.stack):
            part.stack = traceback.StackSummary.from_list(kept)
        pending.extend(chained for chained in (part.__cause__, part.__context__) if chained is not None)
    return "".join(summary.format()).rstrip("\n")


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


def resolve_format(chosen: str | None, stream: IO[str], *, lambda_runtime: bool = False) -> str:
    """The format to write on ``stream``: ``chosen`` (``LETSGO_WORKER_LOG_FORMAT``) when set, else
    JSON under Lambda or when ``stream`` is not a terminal (a file, a pipe, a log collector), else text."""
    if chosen:
        return chosen
    if lambda_runtime:
        return "json"
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def new_formatter(log_format: str) -> logging.Formatter:
    """A :class:`JsonFormatter` for ``"json"``, a :class:`TextFormatter` for ``"text"``."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, stream: IO[str] | None = None, log_format: str | None = None) -> logging.Logger:
    """Send the ``letsgo`` loggers to ``stream`` (default: standard output), in JSON unless ``log_format`` is ``text``.

    The Lambda entry point's set-up: ``level`` is a level name, as
    ``Settings.log_level`` gives it (which makes a bad ``LETSGO_WORKER_LOG_LEVEL``
    a :class:`~host.errors.ConfigError`); an unknown name is a ValueError,
    never a silent default. Idempotent: calling it again replaces the handler
    it installed. The records stop propagating to the root logger, so a
    runtime's own handler (Lambda's text formatter) does not print them a second time.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)  # first: an unknown name raises before any handler changes
    for handler in list(logger.handlers):
        if isinstance(handler, _JsonLinesHandler):
            logger.removeHandler(handler)
    handler = _JsonLinesHandler(stream)
    handler.setFormatter(new_formatter(log_format or "json"))
    logger.addHandler(handler)
    logger.propagate = False
    _quiet_http_client(level)
    return logger


def _quiet_http_client(level: str) -> None:
    """httpx logs every request at INFO: below DEBUG, those lines would bury the worker's own."""
    quiet = logging.WARNING if logging.getLevelName(level) > logging.DEBUG else logging.NOTSET
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


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
    """A line for people: time, level, logger and message, then each extra field as ``key=value``.

    The fields are those of the JSON line, in the same order. Control
    characters in the message and the values are escaped: a message id or
    type chosen by a client (``"m-1\\n... INFO forged"``, ANSI escapes) cannot
    forge log lines or drive the terminal. Tracebacks, which the host writes
    itself, keep their lines, without the host's frames.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = printable(record.getMessage())
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in extra_fields(record).items())
        line = f"{_iso_time(record.created)} {record.levelname} {record.name}: {message}" + (f" {fields}" if fields else "")
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        """The traceback without the host's frames (see :func:`format_plugin_traceback`)."""
        return format_plugin_traceback(ei[1]) if ei[1] is not None else super().formatException(ei)


def _text_value(value: Any) -> str:
    """A field's value in a text line: a plain word bare, other text quoted, lists and None as JSON writes them."""
    if isinstance(value, str):
        plain = value and value.isprintable() and not any(char in value for char in ' "=')
        return value if plain else printable(json.dumps(value, ensure_ascii=False))
    if value is None or isinstance(value, (bool, list, tuple, dict)):
        return printable(_ENCODER.encode(value))
    return printable(str(value))


def configure_cli_logging(level: str, log_format: str | None = None) -> None:
    """Log to standard error at ``level``, in ``log_format`` or as :func:`resolve_format` picks: the command line's logging.

    Serves ``serve`` and its delivery processes too: every record of the
    process goes through one handler on the root logger, libraries' included.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(new_formatter(resolve_format(log_format, sys.stderr)))
    logging.basicConfig(level=level, handlers=[handler])  # a no-op where logging is set up already (pytest)
    _quiet_http_client(level)


# Workers whose start-up line was logged: the local runtime and the Lambda path each ask, once is enough.
_announced: weakref.WeakSet = weakref.WeakSet()


def log_startup(worker: Worker) -> None:
    """Log one line saying what this worker runs: its plugins, notification sinks and schedules.

    Called by the runtimes once the worker has started (``serve``, and the
    first message or tick under Lambda); a second call for the same worker
    logs nothing.
    """
    if worker in _announced:
        return
    _announced.add(worker)
    plugins = sorted(info.name for info in worker.plugins)
    sinks = sorted({impl.plugin_name for impl in worker.pm.hook.letsgo_notify.get_hookimpls()})
    schedules = []
    if worker.settings.schedule:
        schedules.append(f"{worker.settings.schedule} ({worker.settings.schedule_timezone or 'UTC'})")
    for named in worker.schedules:  # the plugins' named schedules
        schedules.append(f"{named.name} {named.expression} ({named.timezone}, {named.plugin})")
    log_fields(
        logging.getLogger("letsgo.worker"), logging.INFO,
        f"worker started: plugins {', '.join(plugins) or 'none'}; "
        f"notification sinks {', '.join(sinks) or 'none (notifications are not sent)'}; "
        f"schedules {', '.join(schedules) or 'none'}",
        plugins=plugins, sinks=sinks, schedules=schedules,
        plugin_problems=[problem.plugin for problem in worker.problems] or None,
    )
