"""The command line, run as a real subprocess with real entry-point discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from host.testing import write_distribution

CLI = [sys.executable, "-m", "host.cli"]


def run_cli(*args, env=None, cwd=None):
    """Run the CLI with none of the developer's LETSGO_ variables and, by default, no .env file."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "PORT"))}
    environment.setdefault("LETSGO_WORKER_ENV_FILE", os.devnull if cwd is None else ".env")
    environment.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=60)


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "send", "invoke", "plugins", "types", "schedule", "dlq", "keygen", "token"):
        assert command in result.stdout


def test_bad_usage_exits_2():
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_plugins_json_lists_installed_plugins():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"letsgo_builtins", "letsgo_stripe", "letsgo_slack", "example_orders"} <= set(plugins)
    orders = plugins["example_orders"]
    assert orders["distribution"] == "example-orders"
    assert orders["version"] == "0.1.0"
    assert orders["hooks"] == ["letsgo_register_messages", "letsgo_register_schedules"]
    assert orders["types"] == ["OrderNew"]
    assert plugins["letsgo_builtins"]["builtin"] is True


def test_types_json_has_the_contract_fields():
    result = run_cli("types", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["type"]: row for row in json.loads(result.stdout)}
    order = rows["OrderNew"]
    assert set(order) == {"type", "plugin", "distribution", "description", "schema"}
    assert order["plugin"] == "example_orders" and order["distribution"] == "example-orders"
    assert order["schema"]["required"] == ["orderId", "customerId"]


def test_types_text_listing():
    result = run_cli("types")
    assert result.returncode == 0
    assert any(line.startswith("OrderNew") and "example_orders" in line for line in result.stdout.splitlines())


def test_disabled_plugin_vanishes_from_the_listing():
    result = run_cli("types", "--json", env={"LETSGO_WORKER_DISABLE_PLUGINS": "example_orders"})
    assert "OrderNew" not in {row["type"] for row in json.loads(result.stdout)}


def test_broken_plugin_is_listed_as_not_loaded_in_plugins_json(tmp_path: Path):
    write_distribution(tmp_path, "acme-broken", "acme_broken", "import no_such_module_anywhere\n")
    result = run_cli("plugins", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    broken = rows["acme_broken"]
    assert (broken["loaded"], broken["distribution"], broken["types"]) == (False, "acme-broken", [])
    assert "No module named 'no_such_module_anywhere'" in broken["problems"][0]
    assert rows["example_orders"]["loaded"] is True and rows["example_orders"]["problems"] == []


def test_broken_plugin_is_reported_on_stderr_and_the_rest_list(tmp_path: Path):
    write_distribution(tmp_path, "acme-broken", "acme_broken", "import no_such_module_anywhere\n")
    result = run_cli("types", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    assert "plugin 'acme_broken'" in result.stderr
    assert "No module named 'no_such_module_anywhere'" in result.stderr
    assert "OrderNew" in {row["type"] for row in json.loads(result.stdout)}


def test_startup_error_exits_2_naming_the_cause(tmp_path: Path):
    write_distribution(tmp_path, "acme-dup", "acme_dup", (
        "from host import hookimpl\n"
        "@hookimpl\n"
        "def letsgo_register_messages(register):\n"
        "    register('OrderNew', print)\n"
    ))
    result = run_cli("types", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert "'OrderNew' is registered twice" in result.stderr
    assert "acme_dup" in result.stderr and "example_orders" in result.stderr


def test_bad_configuration_exits_2_naming_the_variable():
    result = run_cli("plugins", env={"LETSGO_WORKER_BATCH_SIZE": "lots"})
    assert result.returncode == 2
    assert "LETSGO_WORKER_BATCH_SIZE='lots' is invalid" in result.stderr


def test_dotenv_file_is_loaded(tmp_path: Path):
    (tmp_path / ".env").write_text("LETSGO_WORKER_DISABLE_PLUGINS=example_orders\n")
    result = run_cli("types", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OrderNew" not in {row["type"] for row in json.loads(result.stdout)}


def test_dotenv_file_reaches_every_command(tmp_path: Path):
    (tmp_path / ".env").write_text("LETSGO_WORKER_SCHEDULE_TIMEZONE=Europe/Paris\n")
    result = run_cli("schedule", "next", "cron(0 9 * * ? *)", "--after", "2026-01-05T00:00:00Z", "--count", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "2026-01-05T08:00:00Z"  # 09:00 in Paris is 08:00 UTC in winter


def test_keygen_to_an_impossible_path_exits_2(tmp_path: Path):
    (tmp_path / "file").write_text("")
    result = run_cli("keygen", "--out", str(tmp_path / "file" / "key.pem"))
    assert result.returncode == 2
    assert "cannot write the key pair" in result.stderr and "Traceback" not in result.stderr


def test_output_piped_into_a_reader_that_stops_early_ends_quietly():
    """``letsgo-worker schedule next ... | head -1``: no BrokenPipeError traceback, exit 0."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "PORT"))}
    environment["LETSGO_WORKER_ENV_FILE"] = os.devnull
    writer = subprocess.Popen(
        [*CLI, "schedule", "next", "rate(1 minute)", "--count", "10000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
    )
    first = writer.stdout.readline()
    writer.stdout.close()  # what head does once it has its line
    stderr = writer.stderr.read().decode()
    assert writer.wait(60) == 0, stderr
    assert first.strip() and "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_send_takes_a_fractional_delay_and_refuses_one_out_of_range(tmp_path):
    refused = run_cli("send", "OrderNew", "{}", "--delay", "900.5", "--url", "http://127.0.0.1:9")
    assert refused.returncode == 2 and "delay_seconds must be from 0 to 900" in refused.stderr
    not_a_number = run_cli("send", "OrderNew", "{}", "--delay", "soon")
    assert not_a_number.returncode == 2 and "--delay" in not_a_number.stderr


def test_a_failed_start_up_says_why_without_logging_stopped(tmp_path):
    result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "q.db"), env={"LETSGO_WORKER_SCHEDULE": "cron(0 0 * * 1)"})
    assert result.returncode == 2 and "cron(0 0 ? * 2 *)" in result.stderr
    assert "stopped" not in result.stderr
