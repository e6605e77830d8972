"""JSON log lines: one object per line, its fields in a fixed order, exceptions on the same line; the level from Settings."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from host.core.logs import ROOT_LOGGER, JsonFormatter, configure_logging, log_fields

ROOT = Path(__file__).resolve().parent.parent
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def json_lines():
    """The ``letsgo`` loggers set up as the Lambda entry point does, writing into a buffer."""
    stream = io.StringIO()
    logger = logging.getLogger(ROOT_LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    configure_logging("DEBUG", stream=stream)

    def lines() -> list[str]:
        return stream.getvalue().splitlines()

    yield lines
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_a_line_holds_time_level_logger_message_then_the_extra_fields_in_order(json_lines):
    log_fields(logging.getLogger("letsgo.test"), logging.INFO, "batch of %d", records=10, ratio=0.5, group=None,
               ok=True, ids=["a", "b"])
    [text] = json_lines()
    line = json.loads(text)
    assert list(line) == ["time", "level", "logger", "message", "records", "ratio", "ok", "ids"]
    assert TIME.fullmatch(line["time"]), line["time"]
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "letsgo.test", "batch of %d")
    assert (line["records"], line["ratio"], line["ok"], line["ids"]) == (10, 0.5, True, ["a", "b"])


def test_the_line_is_what_the_json_module_writes(json_lines):
    logging.getLogger("letsgo.test").warning("café %s", "\"quoted\"\n", extra={"path": Path("/tmp/x"), "nan": math.nan})
    [text] = json_lines()
    line = json.loads(text)
    assert text == json.dumps(line, ensure_ascii=False)
    assert line["message"] == "café \"quoted\"\n"
    assert line["path"] == "/tmp/x", "values JSON cannot hold are written as their str()"
    assert "\"nan\": NaN" in text


def test_an_extra_field_named_like_a_line_key_replaces_its_value_in_place(json_lines):
    logging.getLogger("letsgo.test").info("hello", extra={"logger": "mine", "time": "now", "error": "none", "n": 1})
    [text] = json_lines()
    line = json.loads(text)
    assert list(line) == ["time", "level", "logger", "message", "error", "n"]
    assert (line["time"], line["logger"], line["error"]) == ("now", "mine", "none")


def test_an_exception_is_an_error_field_on_the_same_line(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("letsgo.test").exception("it failed", extra={"error": "replaced", "n": 1})
    [text] = json_lines()
    line = json.loads(text)
    assert list(line) == ["time", "level", "logger", "message", "error", "n"]
    assert line["level"] == "ERROR" and line["message"] == "it failed"
    assert line["error"].startswith("Traceback") and line["error"].endswith("ValueError: boom")


def test_underscored_attributes_are_left_out():
    record = logging.makeLogRecord({"name": "letsgo.test", "msg": "m", "levelname": "INFO", "_private": 1, "kept": 2})
    line = json.loads(JsonFormatter().format(record))
    assert "_private" not in line and line["kept"] == 2


def test_configure_logging_replaces_its_own_handler_and_stops_propagation(json_lines):
    logger = logging.getLogger(ROOT_LOGGER)
    second = io.StringIO()
    configure_logging("WARNING", stream=second)
    logging.getLogger("letsgo.test").info("below the level")
    logging.getLogger("letsgo.test").warning("shown once")
    assert json_lines() == []
    assert [json.loads(text)["message"] for text in second.getvalue().splitlines()] == ["shown once"]
    assert logger.level == logging.WARNING and logger.propagate is False


def test_an_unknown_level_is_an_error_and_changes_nothing(json_lines):
    logger = logging.getLogger(ROOT_LOGGER)
    handlers = list(logger.handlers)
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging("LOUD")
    assert logger.handlers == handlers and logger.level == logging.DEBUG


def _import_the_entry_point_in_lambda(level: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LETSGO_")}
    env.update(AWS_LAMBDA_RUNTIME_API="127.0.0.1:9", LETSGO_WORKER_LOG_LEVEL=level)
    code = "import logging, lambda_entry; print(logging.getLevelName(logging.getLogger('letsgo').level))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_lambda_entry_point_logs_at_the_configured_level():
    result = _import_the_entry_point_in_lambda("debug")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG"


def test_a_bad_log_level_stops_the_lambda_entry_point_naming_the_variable():
    result = _import_the_entry_point_in_lambda("LOUD")
    assert result.returncode != 0
    assert "ConfigError: LETSGO_WORKER_LOG_LEVEL='LOUD' is invalid: expected DEBUG, INFO" in result.stderr, result.stderr
