"""What a user expects of the command line: send checks before sending, token finds keygen's key,
a mistyped disable is reported, types shows the payload fields, schedule next shows the wall time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jwt
import pytest
from test_queue import RecordingIntake

CLI = [sys.executable, "-m", "host.cli"]
ORDER = {"orderId": "o-1", "customerId": "c-1"}


def run_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """The CLI with none of the developer's LETSGO_ variables and no .env file."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "PORT"))}
    environ["LETSGO_WORKER_ENV_FILE"] = os.devnull
    environ.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=60)


@pytest.fixture
def intake():
    with RecordingIntake() as server:
        yield server


# -- send checks the message against the installed plugins --------------------------------


def test_send_refuses_a_payload_the_worker_would_reject_and_sends_nothing(intake):
    result = run_cli("send", "OrderNew", '{"orderId": "o-1"}', "--url", intake.url)
    assert result.returncode == 2, result.stderr
    assert "payload of 'OrderNew' is invalid: customerId: Field required" in result.stderr
    assert "--no-check" in result.stderr
    assert intake.posts == []


def test_send_refuses_an_unknown_type_naming_the_known_ones(intake):
    result = run_cli("send", "OrderNwe", json.dumps(ORDER), "--url", intake.url)
    assert result.returncode == 2
    assert "unknown message type 'OrderNwe'" in result.stderr and "OrderNew" in result.stderr
    assert intake.posts == []


def test_send_with_no_check_sends_what_the_registry_does_not_know(intake):
    result = run_cli("send", "OrderNwe", "{}", "--no-check", "--url", intake.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(intake.posts[0]["Records"][0]["body"]) == {"type": "OrderNwe", "payload": {}}


def test_send_with_a_valid_payload_is_sent(intake):
    result = run_cli("send", "OrderNew", json.dumps(ORDER), "--url", intake.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(intake.posts[0]["Records"][0]["body"]) == {"type": "OrderNew", "payload": ORDER}
    assert "HTTP Request" not in result.stderr, "httpx's request lines stay out of send's output"
    assert result.stderr == ""


def test_send_without_a_payload_is_refused_rather_than_sending_null(intake):
    result = run_cli("send", "OrderNew", "--url", intake.url)
    assert result.returncode == 2
    assert "no payload" in result.stderr and "null" in result.stderr
    assert intake.posts == []


# -- token finds the key keygen wrote -----------------------------------------------------


def test_token_reads_the_key_keygen_wrote_at_its_default_path(tmp_path):
    generated = run_cli("keygen", cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    kid = generated.stdout.strip()
    result = run_cli("token", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    public_key = (tmp_path / ".letsgo" / "worker-key.pub.pem").read_text()
    claims = jwt.decode(token, public_key, algorithms=["RS256"], audience="letsgo:service")
    assert kid in jwt.get_unverified_header(token)["kid"] and claims["aud"] == "letsgo:service"


def test_token_without_any_key_says_how_to_get_one(tmp_path):
    result = run_cli("token", cwd=tmp_path)
    assert result.returncode == 2
    assert "LETSGO_PKI_PRIVATE_KEY" in result.stderr and "letsgo-worker keygen" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_key_files_agree_between_the_parser_and_the_service():
    from host.cli.keys import DEFAULT_KEY_FILE
    from host.services import api

    assert os.path.normpath(DEFAULT_KEY_FILE) == os.path.normpath(api.DEFAULT_KEY_FILE)


# -- a disable list naming no plugin is reported ------------------------------------------


def test_a_disabled_name_matching_no_plugin_is_warned_about():
    result = run_cli("types", env={"LETSGO_WORKER_DISABLE_PLUGINS": "example_order"})
    assert result.returncode == 0
    assert "LETSGO_WORKER_DISABLE_PLUGINS names 'example_order', but no installed plugin has that name" in result.stderr
    assert "OrderNew" in result.stdout, "the plugin meant is still loaded, which is why the warning matters"
    exact = run_cli("types", env={"LETSGO_WORKER_DISABLE_PLUGINS": "example_orders"})
    assert "LETSGO_WORKER_DISABLE_PLUGINS" not in exact.stderr


# -- types and schedule next ----------------------------------------------------------------


def test_types_summarises_each_payloads_fields():
    result = run_cli("types")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    order = next(i for i, line in enumerate(lines) if line.startswith("OrderNew"))
    assert lines[order + 1] == "  payload: orderId: string, customerId: string"
    contact = next(i for i, line in enumerate(lines) if line.startswith("letsgo:contact"))
    assert "tenantId?: string | null" in lines[contact + 1], "an optional field is marked"


def test_schedule_next_prints_the_wall_time_beside_utc():
    result = run_cli("schedule", "next", "cron(0 10 * * ? *)", "--tz", "America/New_York",
                     "--after", "2026-03-07T00:00:00Z", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2026-03-07T15:00:00Z  2026-03-07 10:00:00 EST (America/New_York)",
        "2026-03-08T14:00:00Z  2026-03-08 10:00:00 EDT (America/New_York)",
    ]
    in_utc = run_cli("schedule", "next", "cron(0 10 * * ? *)", "--after", "2026-03-07T00:00:00Z", "--count", "1")
    assert in_utc.stdout == "2026-03-07T10:00:00Z\n", "in UTC the instant says it all"
