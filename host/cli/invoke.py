"""``letsgo-worker invoke``: run the Lambda entry point on an event file, like ``sam local invoke``."""

from __future__ import annotations

import argparse

from host.cli.common import lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    invoke = commands.add_parser("invoke", help="run lambda_entry.handler on an event file and print its JSON result")
    invoke.add_argument("event", metavar="EVENT.json", help="event file ('-' for stdin)")
    invoke.add_argument("--timeout-ms", type=int, default=900_000, help="the simulated function timeout")
    invoke.set_defaults(run=lazy("host.aws.invoke:cli_invoke"))
