"""``letsgo-worker schedules``: the listing, its JSON, and the CloudFormation resources (checked by cfn-lint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host.testing import write_distribution

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PLUGIN = '''
from host import hookimpl

def nightly(event, ctx):
    """Archives yesterday's orders."""

@hookimpl
def letsgo_register_schedules(register):
    register("nightly_archive", "cron(30 2 * * ? *)", nightly, timezone="America/New_York")
    register("orders.hourly-sync", "rate(1 hour)", nightly, description="Syncs orders every hour")

@hookimpl
def letsgo_scheduled(event, ctx):
    pass
'''


@pytest.fixture
def run(tmp_path):
    """Run ``letsgo-worker`` with example-orders and a test plugin of two more schedules installed."""
    site = tmp_path / "site"
    write_distribution(site, "archive-plugin", "archive_plugin", PLUGIN)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return subprocess.run([sys.executable, "-m", "host.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    return run


def test_the_listing_shows_every_schedule_with_its_plugin_zone_and_next_fires(run):
    done = run("schedules", LETSGO_WORKER_SCHEDULE="rate(1 hour)")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("LETSGO_WORKER_SCHEDULE") < out.index("nightly_archive") < out.index("orders-daily-report")
    assert "letsgo_scheduled: archive_plugin" in out
    assert "nightly_archive  (plugin archive_plugin)" in out
    assert "cron(30 2 * * ? *) in America/New_York" in out
    assert "Archives yesterday's orders." in out  # the handler's docstring, without a description
    assert "orders-daily-report  (plugin example_orders)" in out and "in Europe/Paris" in out
    # Next fires in the schedule's zone, with UTC beside them: 09:00 in Paris is 08:00 or 07:00 UTC.
    paris = [line for line in out.splitlines() if line.strip().startswith("next") and "T0" in line and "09:00:00+0" in line]
    assert len(paris) == 3 and all("T08:00:00Z" in line or "T07:00:00Z" in line for line in paris)


def test_the_unnamed_schedule_is_left_out_when_unset(run):
    done = run("schedules")
    assert done.returncode == 0 and "LETSGO_WORKER_SCHEDULE" not in done.stdout


def test_json_lists_each_schedule_with_next_fires_in_its_zone_and_in_utc(run):
    done = run("schedules", "--json", "--count", "2", LETSGO_WORKER_SCHEDULE="cron(0 12 * * ? *)",
               LETSGO_WORKER_SCHEDULE_TIMEZONE="Asia/Tokyo")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) >= {"", "nightly_archive", "orders.hourly-sync", "orders-daily-report"}
    unnamed = rows[""]
    assert unnamed["variable"] == "LETSGO_WORKER_SCHEDULE" and "archive_plugin" in unnamed["plugins"]
    assert (unnamed["expression"], unnamed["timezone"]) == ("cron(0 12 * * ? *)", "Asia/Tokyo")
    assert [fire["local"][11:] for fire in unnamed["next"]] == ["12:00:00+09:00"] * 2
    assert [fire["utc"][11:] for fire in unnamed["next"]] == ["03:00:00Z"] * 2
    archive = rows["nightly_archive"]
    assert (archive["plugin"], archive["distribution"], archive["timezone"]) == ("archive_plugin", "archive-plugin", "America/New_York")
    assert rows["orders.hourly-sync"]["description"] == "Syncs orders every hour"


def test_a_bad_count_is_refused_with_status_2(run):
    done = run("schedules", "--count", "0")
    assert done.returncode == 2 and "--count" in done.stderr and not done.stdout


def test_help_says_what_it_lists_the_variables_and_an_example(run):
    done = run("schedules", "--help")
    assert done.returncode == 0
    assert "LETSGO_WORKER_SCHEDULE" in done.stdout and "letsgo-worker schedules --cloudformation" in done.stdout


def test_cloudformation_prints_one_scheduler_schedule_per_named_schedule(run):
    done = run("schedules", "--cloudformation", LETSGO_WORKER_SCHEDULE="rate(1 hour)")
    assert done.returncode == 0, done.stderr
    resources = _resources(done.stdout)
    schedules = {key: value for key, value in resources.items() if value["Type"] == "AWS::Scheduler::Schedule"}
    assert set(schedules) == {"ScheduleNightlyArchive", "ScheduleOrdersHourlySync", "ScheduleOrdersDailyReport"}
    nightly = schedules["ScheduleNightlyArchive"]["Properties"]
    assert nightly["ScheduleExpression"] == "cron(30 2 * * ? *)"
    assert nightly["ScheduleExpressionTimezone"] == "America/New_York"
    target = nightly["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["Worker", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["NamedSchedulesRole", "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # The input is Scheduler's event form, with the name in detail, so lambda_entry routes it by name.
    event = json.loads(target["Input"]["Fn::Sub"])
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.scheduler"
    assert event["detail"] == {"letsgo:schedule": "nightly_archive"}
    assert resources["NamedSchedulesRole"]["Type"] == "AWS::IAM::Role"


def _resources(text: str) -> dict:
    """The pasted resources, read by the YAML loader cfn-lint uses (it knows !GetAtt and !Sub)."""
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.loads("Resources:\n" + text)["Resources"]


def test_the_resources_pasted_into_template_yaml_pass_cfn_lint(run, tmp_path):
    done = run("schedules", "--cloudformation")
    assert done.returncode == 0, done.stderr
    template = (ROOT / "template.yaml").read_text()
    assert template.count("\nResources:\n") == 1
    pasted = tmp_path / "template.yaml"
    pasted.write_text(template.replace("\nResources:\n", "\nResources:\n" + done.stdout, 1))
    lint = subprocess.run([str(BIN / "cfn-lint"), str(pasted)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # cfn-lint reads what was pasted: a reference to a resource the template lacks is caught.
    broken = tmp_path / "broken.yaml"
    broken.write_text(pasted.read_text().replace("!GetAtt NamedSchedulesRole.Arn", "!GetAtt NoSuchRole.Arn"))
    lint = subprocess.run([str(BIN / "cfn-lint"), str(broken)], capture_output=True, text=True, timeout=120)
    assert lint.returncode != 0 and "NoSuchRole" in lint.stdout


def test_names_that_differ_only_in_separators_get_distinct_logical_ids():
    from host.cli.schedules import logical_ids

    assert logical_ids(["a-b", "a_b", "orders-daily-report"]) == {
        "a-b": "ScheduleAB", "a_b": "ScheduleAB2", "orders-daily-report": "ScheduleOrdersDailyReport"}


def test_cloudformation_without_named_schedules_prints_nothing_and_says_so(run):
    done = run("schedules", "--cloudformation", LETSGO_WORKER_DISABLE_PLUGINS="example_orders,archive_plugin")
    assert done.returncode == 0 and done.stdout == "" and "no plugin registers a named schedule" in done.stderr


def test_a_plugin_s_bad_schedule_is_a_start_up_error_naming_plugin_and_schedule(tmp_path):
    site = tmp_path / "site"
    write_distribution(site, "bad-schedule", "bad_schedule", (
        "from host import hookimpl\n\n"
        "@hookimpl\n"
        "def letsgo_register_schedules(register):\n"
        "    register('weekly-digest', 'cron(0 8 * * 1)', lambda event, ctx: None)\n"
    ))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PORT"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run([sys.executable, "-m", "host.cli", "schedules"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not done.stdout
    assert "plugin 'bad_schedule'" in done.stderr and "schedule 'weekly-digest'" in done.stderr
    assert "cron(0 8 ? * 2 *)" in done.stderr  # the AWS form of the unix line
