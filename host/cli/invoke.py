"""``letsgo-worker invoke``: run the Lambda entry point on an event file, like ``sam local invoke``."""

from __future__ import annotations

import argparse

from host.cli.common import command_help, lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    invoke = commands.add_parser(
        "invoke", help="run lambda_entry.handler on an event file and print its JSON result",
        **command_help(
            "Run lambda_entry.handler on an event file (an SQS batch or a scheduled tick) in this process, "
            "as Lambda would, and print its JSON result on stdout; logs go to stderr as JSON lines (text with LETSGO_WORKER_LOG_FORMAT=text). Like "
            "`sam local invoke` without Docker. An event it cannot route exits 2 with one line.",
            env=("every worker setting (LETSGO_WORKER_*, see the README's Configuration)",
                 "AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE  "
                 "the simulated function"),
            examples=("letsgo-worker invoke event.json",
                      "letsgo-worker invoke - --timeout-ms 30000 < event.json"),
        ),
    )
    invoke.add_argument("event", metavar="EVENT.json", help="event file ('-' for stdin)")
    invoke.add_argument("--timeout-ms", type=int, default=900_000, help="the simulated function timeout")
    invoke.set_defaults(run=lazy("host.aws.invoke:cli_invoke"))
