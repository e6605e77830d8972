"""``letsgo-worker schedules``: every schedule of the worker, and their EventBridge Scheduler resources.

The listing shows ``LETSGO_WORKER_SCHEDULE`` (when set; it runs every
``letsgo_scheduled`` hook) and each named schedule a plugin registered with
``letsgo_register_schedules``, with its next fire times in its zone and in UTC.
``--cloudformation`` prints one ``AWS::Scheduler::Schedule`` per named
schedule, and the role they invoke the function with, to paste under
``Resources:`` of ``template.yaml``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from host.cli.common import EXIT_USAGE, command_help, lazy

if TYPE_CHECKING:
    from host.core.worker import Worker

DEFAULT_COUNT = 3
MAX_COUNT = 100
#: The logical id of the role the printed schedules invoke the function with.
ROLE_ID = "NamedSchedulesRole"
#: The template's resources the printed schedules refer to.
FUNCTION_ID = "Worker"
DEAD_LETTER_QUEUE_ID = "DeadLetterQueue"
STATE_PARAMETER = "ScheduleState"

def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    schedules = commands.add_parser(
        "schedules", help="list every schedule and its next fires",
        **command_help(
            "List the worker's schedules: LETSGO_WORKER_SCHEDULE and each plugin's named schedules, with their "
            "plugin, expression, zone, description and next fire times (in the zone and in UTC).",
            env=(
                "LETSGO_WORKER_SCHEDULE           the unnamed schedule of letsgo_scheduled hooks (listed when set)",
                "LETSGO_WORKER_SCHEDULE_TIMEZONE  its time zone (default UTC)",
                "LETSGO_WORKER_PLUGINS, LETSGO_WORKER_DISABLE_PLUGINS",
                "                                 which plugins load, and so which named schedules exist",
            ),
            examples=(
                "letsgo-worker schedules",
                "letsgo-worker schedules --json --count 5",
                "letsgo-worker schedules --cloudformation >> named-schedules.yaml",
            ),
        ),
    )
    output = schedules.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON list")
    output.add_argument(
        "--cloudformation", action="store_true",
        help="print an AWS::Scheduler::Schedule per named schedule (and their role), to paste under Resources: of template.yaml",
    )
    schedules.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"next fires shown per schedule (default {DEFAULT_COUNT})")
    schedules.set_defaults(run=lazy("host.cli.schedules:cli_schedules"))


def cli_schedules(args: argparse.Namespace) -> int:
    """Run ``letsgo-worker schedules [--json | --cloudformation] [--count N]``.

    :return: 0; 2 (message on stderr) for a bad ``--count`` or an invalid schedule.
    """
    count = args.count
    if not 1 <= count <= MAX_COUNT:
        print(f"letsgo-worker schedules: error: --count {count}: give a whole number from 1 to {MAX_COUNT}", file=sys.stderr)
        return EXIT_USAGE
    from host.core.plugins import report_problems
    from host.core.worker import get_worker

    worker = get_worker()
    report_problems(worker.problems)
    if args.cloudformation:
        if not len(worker.schedules):
            print("letsgo-worker schedules: no plugin registers a named schedule; nothing to print", file=sys.stderr)
            return 0
        sys.stdout.write(cloudformation(worker))
        return 0
    rows = schedule_rows(worker, count)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no schedules: set LETSGO_WORKER_SCHEDULE, or install a plugin that registers named schedules", file=sys.stderr)
        return 0
    for index, row in enumerate(rows):
        print(("\n" if index else "") + _text(row))
    return 0


def schedule_rows(worker: Worker, count: int = DEFAULT_COUNT, now: datetime | None = None) -> list[dict[str, Any]]:
    """One JSON-ready row per schedule: the unnamed one first (when set), then each named one by name."""
    from host.local.timer import load_schedule

    now = now or datetime.now(timezone.utc)
    rows = []
    settings = worker.settings
    if settings.schedule:
        tz = settings.schedule_timezone or "UTC"
        schedule = load_schedule(settings.schedule, tz)
        plugins = [impl.plugin for impl in worker.implementations("letsgo_scheduled")]
        rows.append({
            "name": "", "variable": "LETSGO_WORKER_SCHEDULE", "plugin": None, "plugins": plugins,
            "distribution": None, "expression": str(schedule), "timezone": tz,
            "description": "runs every letsgo_scheduled hook", "next": _fires(schedule, tz, now, count),
        })
    for named in worker.schedules:
        rows.append({
            "name": named.name, "variable": None, "plugin": named.plugin, "plugins": [named.plugin],
            "distribution": named.distribution, "expression": named.expression, "timezone": named.timezone,
            "description": named.description, "next": _fires(named.schedule, named.timezone, now, count),
        })
    return rows


def _fires(schedule: Any, tz: str, now: datetime, count: int) -> list[dict[str, str]]:
    from host.schedule.expressions import format_instant
    from host.schedule.zones import lookup_zone

    zone = lookup_zone(tz)
    return [
        {"utc": format_instant(fire), "local": fire.astimezone(zone).isoformat()}
        for fire in schedule.iter_after(now, count)
    ]


def _text(row: dict[str, Any]) -> str:
    if row["name"]:
        title = f"{row['name']}  (plugin {row['plugin']})"
    else:
        hooks = ", ".join(row["plugins"]) or "no plugin implements it"
        title = f"LETSGO_WORKER_SCHEDULE  (letsgo_scheduled: {hooks})"
    lines = [title, f"  {row['expression']} in {row['timezone']}"]
    if row["description"]:
        lines.append(f"  {row['description']}")
    if not row["next"]:
        lines.append("  fires no more")
    for fire in row["next"]:
        local = datetime.fromisoformat(fire["local"])
        lines.append(f"  next {local.isoformat(' ')}  ({fire['utc']})")
    return "\n".join(lines)


# -- CloudFormation -------------------------------------------------------------------


def logical_ids(names: list[str]) -> dict[str, str]:
    """A CloudFormation logical id for each schedule name: ``orders-daily-report`` -> ``ScheduleOrdersDailyReport``.

    Names that differ only in their separators (``a-b``, ``a_b``) get a number after the first.
    """
    ids: dict[str, str] = {}
    taken: set[str] = {ROLE_ID}
    for name in sorted(names):
        base = "Schedule" + "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_.]+", name) if part)
        candidate, number = base, 2
        while candidate in taken:
            candidate, number = f"{base}{number}", number + 1
        taken.add(candidate)
        ids[name] = candidate
    return ids


def scheduler_input(name: str) -> str:
    """The target input of schedule ``name``: Scheduler's own event form, with the name in ``detail``.

    ``<aws.scheduler.*>`` are Scheduler's context attributes, filled in at each
    invocation; ``${AWS::...}`` are filled in by CloudFormation (``!Sub``).
    """
    from host.core.schedules import SCHEDULE_KEY

    return json.dumps({
        "version": "0",
        "id": "<aws.scheduler.execution-id>",
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "${AWS::AccountId}",
        "time": "<aws.scheduler.scheduled-time>",
        "region": "${AWS::Region}",
        "resources": ["<aws.scheduler.schedule-arn>"],
        "detail": {SCHEDULE_KEY: name},
    })


def _quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(text)


def cloudformation(worker: Worker) -> str:
    """YAML resources, indented to go under ``Resources:`` of ``template.yaml``.

    Each schedule invokes the template's ``Worker`` function with its name in
    the input, in its own zone, enabled or paused with the template's
    ``ScheduleState``. Its retry policy covers failed invocations; events that
    still fail go to the template's ``DeadLetterQueue``. A function error is
    retried by the function's own ``EventInvokeConfig``, as for the unnamed
    schedule. They share one role, which may invoke the function and write to the
    dead-letter queue (the role SAM generates for the ``Ticks`` event may not).
    """
    ids = logical_ids(worker.schedules.names())
    out = [
        "  # Named schedules of letsgo-worker's plugins (`letsgo-worker schedules --cloudformation`).",
        "  # Each invokes the function with {\"letsgo:schedule\": NAME} in the event's detail.",
    ]
    for named in worker.schedules:
        description = f"{named.name} (plugin {named.plugin})" + (f": {named.description}" if named.description else "")
        if len(description) > 512:
            description = description[:509] + "..."
        out += [
            f"  {ids[named.name]}:",
            "    Type: AWS::Scheduler::Schedule",
            "    Properties:",
            f"      Description: {_quoted(description)}",
            f"      ScheduleExpression: {_quoted(named.expression)}",
            f"      ScheduleExpressionTimezone: {_quoted(named.timezone)}",
            f"      State: !Ref {STATE_PARAMETER}",
            "      FlexibleTimeWindow:",
            '        Mode: "OFF"',
            "      Target:",
            f"        Arn: !GetAtt {FUNCTION_ID}.Arn",
            f"        RoleArn: !GetAtt {ROLE_ID}.Arn",
            f"        Input: !Sub '{scheduler_input(named.name)}'",
            "        RetryPolicy:",
            "          MaximumEventAgeInSeconds: 3600",
            "          MaximumRetryAttempts: 10",
            "        DeadLetterConfig:",
            f"          Arn: !GetAtt {DEAD_LETTER_QUEUE_ID}.Arn",
        ]
    out += [
        f"  {ROLE_ID}:",
        "    Type: AWS::IAM::Role",
        "    Properties:",
        "      AssumeRolePolicyDocument:",
        '        Version: "2012-10-17"',
        "        Statement:",
        "          - Effect: Allow",
        "            Principal:",
        "              Service: scheduler.amazonaws.com",
        "            Action: sts:AssumeRole",
        "            Condition:",
        "              StringEquals:",
        "                aws:SourceAccount: !Ref AWS::AccountId",
        "      Policies:",
        "        - PolicyName: invoke-worker",
        "          PolicyDocument:",
        '            Version: "2012-10-17"',
        "            Statement:",
        "              - Effect: Allow",
        "                Action: lambda:InvokeFunction",
        f"                Resource: !GetAtt {FUNCTION_ID}.Arn",
        "              - Effect: Allow",
        "                Action: sqs:SendMessage",
        f"                Resource: !GetAtt {DEAD_LETTER_QUEUE_ID}.Arn",
    ]
    return "\n".join(out) + "\n"
