"""One log format: JSON or text with the same fields, text on a terminal and JSON when piped, a handler's
lines carrying its message, one start-up line, and a failure's traceback once, without the host's frames."""

from __future__ import annotations

import http.client
import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.config import Settings
from host.core.logs import JsonFormatter, TextFormatter, format_plugin_traceback, resolve_format
from host.errors import ConfigError
from host.testing import wait_until, write_distribution

PLUGIN = '''
from host import hookimpl


def greet(message, ctx):
    ctx.logger.info("hello from the handler")


def explode(message, ctx):
    helper_that_raises()


def helper_that_raises():
    raise RuntimeError("boom in the plugin")


@hookimpl
def letsgo_register_messages(register):
    register("Greet", greet)
    register("Explode", explode)
'''

#: Bounds for a loaded machine; the tests wait for effects, never for fixed times.
START_TIMEOUT = 60
LISTENING = re.compile(r"letsgo-worker listening on http://127\.0\.0\.1:(\d+)")


# -- the formats ------------------------------------------------------------------------------


def _record(**extra) -> logging.LogRecord:
    record = logging.LogRecord("letsgo.plugin.acme", logging.WARNING, __file__, 1, "order %s late", ("o-1",), None)
    record.__dict__.update(extra)
    return record


def test_json_and_text_lines_carry_the_same_fields_in_the_same_order():
    fields = {"message_id": "m-1", "message_type": "OrderNew", "plugin": "acme", "duration_ms": 1.5, "note": "two words"}
    record = _record(**fields)
    as_json = json.loads(JsonFormatter().format(record))
    text = TextFormatter().format(record)

    assert list(as_json) == ["time", "level", "logger", "message", *fields]
    head, _, tail = text.partition(": order o-1 late ")
    time_text, level, logger = head.split(" ")
    assert (time_text, level, logger) == (as_json["time"], "WARNING", "letsgo.plugin.acme")
    assert tail == 'message_id=m-1 message_type=OrderNew plugin=acme duration_ms=1.5 note="two words"'


def test_a_text_line_escapes_what_a_client_chose():
    text = TextFormatter().format(_record(message_id="m-1\n2026-01-01 INFO forged", message_type="\x1b[31mred"))
    assert "\n" not in text and "\x1b" not in text
    assert 'message_id="m-1\\n2026-01-01 INFO forged"' in text


def test_the_format_follows_the_setting_then_lambda_then_the_terminal(tmp_path):
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal, open(tmp_path / "log", "w") as file:
            assert resolve_format(None, terminal) == "text"
            assert resolve_format(None, file) == "json"
            assert resolve_format(None, terminal, lambda_runtime=True) == "json"
            assert resolve_format("json", terminal) == "json" and resolve_format("text", file) == "text"
    finally:
        os.close(master)
        os.close(slave)


def test_the_setting_is_parsed_and_a_bad_value_names_the_variable():
    assert Settings.from_env({}).log_format is None
    assert Settings.from_env({"LETSGO_WORKER_LOG_FORMAT": " JSON "}).log_format == "json"
    assert Settings.from_env({"LETSGO_WORKER_LOG_FORMAT": "auto"}).log_format is None
    with pytest.raises(ConfigError, match="LETSGO_WORKER_LOG_FORMAT='xml' is invalid: expected json, text or auto"):
        Settings.from_env({"LETSGO_WORKER_LOG_FORMAT": "xml"})


def _plugin_error() -> RuntimeError:
    """A plugin's exception raised through the host, as the dispatch runs a handler."""
    from host.core.loops import run

    async def handler():
        raise RuntimeError("from the plugin")

    try:
        run(handler())
    except RuntimeError as error:
        return error
    raise AssertionError("not raised")


def test_a_plugin_traceback_leaves_out_the_host_frames():
    error = _plugin_error()
    full = "".join(__import__("traceback").format_exception(error))
    assert "host/core/loops.py" in full, "the full traceback passes through the host"
    shown = format_plugin_traceback(error)
    assert "host/core/" not in shown and "host" + os.sep not in shown.replace(str(Path(__file__).parent), "")
    assert "test_log_format.py" in shown and "RuntimeError: from the plugin" in shown


def test_a_traceback_of_host_frames_only_is_kept_whole():
    from host.core.dispatch import parse_body

    try:
        parse_body(b"\xff")
    except Exception as error:  # noqa: BLE001
        caught = error
    caught.__traceback__ = caught.__traceback__.tb_next  # drop this test's frame: only the host's remain
    assert "host/core/dispatch.py" in format_plugin_traceback(caught)


# -- serve, for real --------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path):
    write_distribution(tmp_path / "site", "log-test-plugin", "log_test_plugin", PLUGIN)
    return tmp_path


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(home / "site"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        LETSGO_WORKER_ENV_FILE=os.devnull, LETSGO_WORKER_LOG_LEVEL="INFO", LETSGO_WORKER_PLUGINS="log_test_plugin",
        LETSGO_WORKER_BACKOFF_BASE_SECONDS="0", LETSGO_WORKER_BACKOFF_MAX_SECONDS="0",
        LETSGO_WORKER_MAX_RECEIVE_COUNT="3", LETSGO_WORKER_SCHEDULE="rate(1 day)",
    )
    env.update(extra)
    return env


class Serve:
    """``letsgo-worker serve`` with its stderr on a file or on a terminal (a pseudo-terminal)."""

    def __init__(self, home: Path, env: dict[str, str], terminal: bool = False):
        self.output = b""
        self.master = None
        self.closed = False
        if terminal:
            self.master, slave = pty.openpty()
            stderr = slave
        else:
            self.log = open(home / "serve.log", "wb+")
            stderr = self.log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "serve", "--port", "0", "--db", str(home / "q.db")],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
        if terminal:
            os.close(slave)
        self.port = int(wait_until(lambda: LISTENING.search(self.text()), START_TIMEOUT, message="serve listening").group(1))

    def text(self) -> str:
        if self.closed:
            pass
        elif self.master is not None:
            while select.select([self.master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the terminal's other end closed
                    break
                if not chunk:
                    break
                self.output += chunk
        else:
            self.log.seek(0)
            self.output = self.log.read()
        if not self.closed and self.process.poll() is not None and b"listening" not in self.output:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.output.decode()}")
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def post(self, message: dict) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/", body=json.dumps(message), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 201, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.text()  # what it wrote last
        self.closed = True
        if self.master is not None:
            os.close(self.master)
        else:
            self.log.close()


def test_piped_serve_writes_json_lines_with_the_message_fields_and_one_traceback_per_message(home):
    server = Serve(home, _env(home))
    try:
        server.post({"type": "Greet", "payload": {}})
        server.post({"type": "Explode", "payload": {}})

        def failures():
            lines = [json.loads(line) for line in server.text().splitlines() if line.startswith("{")]
            failed = [line for line in lines if line.get("type") == "Explode" and line.get("outcome") == "failed"]
            return lines if len(failed) == 3 else None

        lines = wait_until(failures, START_TIMEOUT, message="three failed receives of Explode")
    finally:
        server.stop()
    others = [line for line in server.text().splitlines() if line.strip() and not line.startswith("{")]
    assert all(LISTENING.match(line) for line in others), f"every log line is JSON when piped: {others}"

    [started] = [line for line in lines if line["message"].startswith("worker started")]
    assert started["plugins"] == ["letsgo_builtins", "log_test_plugin"]
    assert started["sinks"] == [] and "notification sinks none" in started["message"]
    assert started["schedules"] == ["rate(1 day) (UTC)"]

    [hello] = [line for line in lines if line["message"] == "hello from the handler"]
    assert (hello["message_type"], hello["plugin"]) == ("Greet", "log_test_plugin")
    assert hello["message_id"] and hello["logger"] == "letsgo.plugin.log_test_plugin"

    failed = [line for line in lines if line.get("type") == "Explode" and line.get("outcome") == "failed"]
    assert [line["receive_count"] for line in failed] == [1, 2, 3]
    assert ["error" in line for line in failed] == [True, False, False], "the traceback once, at the first failure"
    error = failed[0]["error"]
    assert "helper_that_raises" in error and "RuntimeError: boom in the plugin" in error
    assert os.sep + "host" + os.sep not in error, "the host's frames are left out"
    assert "concurrent" + os.sep + "futures" not in error, "and the thread pool's that start the handler"
    assert not any("HTTP Request" in line["message"] for line in lines)


def test_serve_on_a_terminal_writes_text_lines_with_the_same_fields(home):
    server = Serve(home, _env(home), terminal=True)
    try:
        server.post({"type": "Greet", "payload": {}})
        text = wait_until(lambda: "hello from the handler" in server.text() and server.text(), START_TIMEOUT,
                          message="the handler's line")
    finally:
        server.stop()
    assert "{" not in text.split("hello from the handler")[0], "text, not JSON, on a terminal"
    [hello] = [line for line in text.splitlines() if "hello from the handler" in line]
    # The message's fields, as the JSON line has them, in its order.
    assert re.search(r" INFO letsgo\.plugin\.log_test_plugin: hello from the handler "
                     r"message_id=\S+ message_type=Greet plugin=log_test_plugin$", hello), hello
    assert "worker started: plugins letsgo_builtins, log_test_plugin; notification sinks none" in text


def test_the_setting_wins_over_the_terminal_check(home):
    server = Serve(home, _env(home, LETSGO_WORKER_LOG_FORMAT="text"))
    try:
        text = wait_until(lambda: "worker started" in server.text() and server.text(), START_TIMEOUT,
                          message="the start-up line")
    finally:
        server.stop()
    [started] = [line for line in text.splitlines() if "worker started" in line]
    assert not started.startswith("{") and " INFO letsgo.worker: worker started: plugins " in started


def test_a_bad_log_format_stops_start_up_naming_the_variable(home):
    env = _env(home, LETSGO_WORKER_LOG_FORMAT="xml")
    done = subprocess.run([sys.executable, "-m", "host.cli", "types"], env=env, cwd=home,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "LETSGO_WORKER_LOG_FORMAT='xml' is invalid" in done.stderr
