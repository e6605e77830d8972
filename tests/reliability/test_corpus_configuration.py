"""Bad configuration: a clear start-up error naming the variable and the value, exit status 2.

In-process through ``Settings.from_env`` and ``parse_schedule``; end to end through
the ``letsgo-worker`` command in a subprocess (bad ``.env`` file included).
"""

from __future__ import annotations

import pytest

from host.config import Settings
from host.errors import ConfigError
from host.schedule.expressions import ScheduleError, parse_schedule
from .reliability_kit import clean_env, run_cli

BAD_SETTINGS = [
    ("PORT", "abc", "not a number"),
    ("PORT", "", "not a number"),
    ("PORT", "-1", "from 0 to 65535"),
    ("PORT", "65536", "from 0 to 65535"),
    ("PORT", "3002.5", "not a number"),
    ("PORT", "0x10", "not a number"),
    ("LETSGO_WORKER_BATCH_SIZE", "0", "from 1 to 10000"),
    ("LETSGO_WORKER_BATCH_SIZE", "10001", "from 1 to 10000"),
    ("LETSGO_WORKER_BATCH_SIZE", "ten", "not a number"),
    ("LETSGO_WORKER_BATCH_SIZE", "1e3", "not a number"),
    ("LETSGO_WORKER_VISIBILITY_TIMEOUT", "nan", "seconds"),
    ("LETSGO_WORKER_VISIBILITY_TIMEOUT", "inf", "seconds"),
    ("LETSGO_WORKER_VISIBILITY_TIMEOUT", "-1", "seconds"),
    ("LETSGO_WORKER_BATCH_WINDOW_SECONDS", "301", "seconds"),
    ("LETSGO_WORKER_BACKOFF_BASE_SECONDS", "soon", "not a number"),
    ("LETSGO_WORKER_CONCURRENCY", "0", "from 1 to 1000"),
    ("LETSGO_WORKER_THREADS", "-5", "from 1 to 1000"),
    ("LETSGO_WORKER_MAX_RECEIVE_COUNT", "0", "from 1 to 1000"),
    ("LETSGO_WORKER_STRICT_PLUGINS", "maybe", "true/false"),
    ("LETSGO_WORKER_TRACE_PLUGINS", "2", "true/false"),
    ("LETSGO_WORKER_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
]


@pytest.mark.parametrize("variable,value,why", BAD_SETTINGS, ids=[f"{v}={x!r}" for v, x, _ in BAD_SETTINGS])
def test_bad_setting_names_variable_and_value(variable, value, why):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}={value!r} is invalid"), message
    assert why in message


BAD_SCHEDULES = [
    ("every hour", "rate("),
    ("rate(0 minutes)", "rate(0 minutes)"),
    ("rate(1 hours)", "singular"),
    ("rate(5 hour)", "plural"),
    ("rate(-1 minutes)", "rate(-1 minutes)"),
    ("RATE(1 hour)", "lower case"),
    ("cron(* * * * *)", "cron(* * * * *)"),
    ("cron(0 25 * * ? *)", "hour"),
    ("cron(0 12 * * MON *)", "?"),
    ("at(2026-02-30T10:00:00)", "not a real date"),
    ("", "rate("),
]


@pytest.mark.parametrize("expression,words", BAD_SCHEDULES, ids=[e or "empty" for e, _ in BAD_SCHEDULES])
def test_bad_schedule_is_explained(expression, words):
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(expression)
    assert words in str(raised.value), str(raised.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "utc+1", "America/New York"])
def test_bad_time_zone_is_explained(zone):
    with pytest.raises(ScheduleError, match="time zone"):
        parse_schedule("cron(0 12 * * ? *)", zone)


def test_cli_refuses_a_bad_setting_with_exit_status_2():
    result = run_cli("plugins", env=clean_env(PORT="eighty"))
    assert result.returncode == 2, result
    assert "PORT='eighty' is invalid: not a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_a_bad_value_from_the_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LETSGO_WORKER_BATCH_SIZE=0\n")
    result = run_cli("types", env=clean_env(LETSGO_WORKER_ENV_FILE=str(env_file)))
    assert result.returncode == 2
    assert "LETSGO_WORKER_BATCH_SIZE='0' is invalid" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,words",
    [
        (("schedule", "next", "rate(0 minutes)"), "rate(0 minutes)"),
        (("schedule", "next", "cron(0 12 * * ? *)", "--tz", "Mars/Olympus"), "Mars/Olympus"),
        (("schedule", "next", "rate(1 hour)", "--count", "0"), "--count"),
        (("schedule", "next", "rate(1 hour)", "--after", "yesterday"), "yesterday"),
    ],
    ids=["expression", "time-zone", "count", "after"],
)
def test_schedule_command_refuses_bad_input(args, words):
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "variables,words",
    [
        ({"LETSGO_WORKER_SCHEDULE": "rate(0 minutes)"}, ["LETSGO_WORKER_SCHEDULE", "rate(0 minutes)"]),
        ({"LETSGO_WORKER_SCHEDULE": "every hour"}, ["LETSGO_WORKER_SCHEDULE", "every hour"]),
        ({"LETSGO_WORKER_SCHEDULE": "rate(1 hour)", "LETSGO_WORKER_SCHEDULE_TIMEZONE": "Mars/Olympus"}, ["LETSGO_WORKER_SCHEDULE_TIMEZONE", "Mars/Olympus"]),
        ({"LETSGO_WORKER_BATCH_SIZE": "0"}, ["LETSGO_WORKER_BATCH_SIZE='0'"]),
        ({"LETSGO_WORKER_VISIBILITY_TIMEOUT": "soon"}, ["LETSGO_WORKER_VISIBILITY_TIMEOUT='soon'"]),
    ],
    ids=["schedule-zero-rate", "schedule-prose", "time-zone", "batch-size", "visibility-timeout"],
)
def test_serve_refuses_bad_configuration_before_listening(tmp_path, variables, words):
    result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "queue.db"), env=clean_env(LETSGO_WORKER_PLUGINS="", **variables))
    assert result.returncode == 2, result
    for word in words:
        assert word in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stderr


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_bad_port_flag(tmp_path, port):
    result = run_cli("serve", "--port", port, "--db", str(tmp_path / "queue.db"), env=clean_env(LETSGO_WORKER_PLUGINS=""))
    assert result.returncode == 2 and port in result.stderr and "Traceback" not in result.stderr, result


def test_serve_refuses_a_port_in_use(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("serve", "--port", port, "--db", str(tmp_path / "queue.db"), env=clean_env(LETSGO_WORKER_PLUGINS=""))
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr, result


def test_serve_refuses_a_database_that_is_not_sqlite(tmp_path):
    db = tmp_path / "queue.db"
    db.write_bytes(b"this is not a database" * 100)
    result = run_cli("serve", "--port", "0", "--db", str(db), env=clean_env(LETSGO_WORKER_PLUGINS=""))
    assert result.returncode == 2 and str(db) in result.stderr and "Traceback" not in result.stderr, result
