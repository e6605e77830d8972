"""``letsgo-worker dlq list|redrive|purge``: the dead-letter queue, local or SQS, from the command line.

The commands go through the same inspectors as the dashboard; see :mod:`host.cli.queue`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from host.cli.common import EXIT_USAGE, command_help, lazy
from host.cli.queue import SOURCE_ENVIRONMENT, add_source_arguments
from host.errors import QueueError, StartupError

if TYPE_CHECKING:
    from host.ops.inspector import Inspector

#: The exit status of a purge that the person at the terminal declined.
EXIT_DECLINED = 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    dlq = commands.add_parser(
        "dlq", help="inspect and redrive the dead-letter queue (local or SQS)",
        **command_help(
            "Inspect the dead-letter queue, local or SQS: list what is there and why, send messages back "
            "to the queue, or delete them.",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker dlq list",
                "letsgo-worker dlq redrive --all",
                "letsgo-worker dlq list --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
            ),
        ),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)
    dlq_list = dlq_commands.add_parser(
        "list", help="show dead-lettered messages with their reasons",
        **command_help(
            "Show each dead-lettered message: its id, receive count, reason, last error and body. "
            "Works on a read-only queue file or folder. With --sqs, SQS has no peek: a look receives "
            "each message, which adds one to its receive count.",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker dlq list",
                "letsgo-worker dlq list --json --db /var/lib/letsgo/worker.db",
                "letsgo-worker dlq list --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
            ),
        ),
    )
    dlq_list.add_argument("--json", action="store_true", help="print a JSON list")
    redrive = dlq_commands.add_parser(
        "redrive", help="move messages back to the queue",
        **command_help(
            "Move dead-lettered messages back to the queue, where they are delivered again with a fresh "
            "receive count. Name their ids, or pass --all. With --sqs, --all starts an SQS message-move "
            "task (or moves them one by one where the endpoint has none).",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker dlq redrive 3f1c0e2a-...",
                "letsgo-worker dlq redrive --all",
                "letsgo-worker dlq redrive --all --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
            ),
        ),
    )
    redrive.add_argument("ids", nargs="*", metavar="ID", help="message ids")
    redrive.add_argument("--all", action="store_true", help="every dead-lettered message")
    purge = dlq_commands.add_parser(
        "purge", help="delete every dead-lettered message",
        **command_help(
            "Delete every dead-lettered message, for good. Asks for confirmation on a terminal; "
            "elsewhere (a script, a pipe) it needs --yes.",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker dlq purge",
                "letsgo-worker dlq purge --yes --db /var/lib/letsgo/worker.db",
            ),
        ),
    )
    purge.add_argument("--yes", action="store_true", help="purge without asking")
    for sub in (dlq_list, redrive, purge):
        add_source_arguments(sub)
    dlq.set_defaults(run=lazy("host.cli.dlq:cli_dlq"))


def cli_dlq(args: argparse.Namespace) -> int:
    """``letsgo-worker dlq list [--json] | redrive [ID ... | --all] | purge [--yes]``, each with ``--db`` or ``--sqs``."""
    from host.cli.queue import open_inspector

    if args.dlq_command == "redrive" and bool(args.ids) == bool(args.all):
        print("letsgo-worker: error: name the message ids to redrive, or pass --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    if args.dlq_command == "purge" and not args.yes and not sys.stdin.isatty():
        print("letsgo-worker: error: dlq purge deletes every dead-lettered message for good; standard input is"
              " not a terminal to confirm it, so pass --yes", file=sys.stderr)
        return EXIT_USAGE
    inspector = open_inspector(args)
    if getattr(inspector, "dlq_problem", None):
        raise StartupError(inspector.dlq_problem)
    try:
        if args.dlq_command == "list":
            return _dlq_list(inspector, args.json)
        if args.dlq_command == "redrive":
            return _redrive(inspector, None if args.all else args.ids)
        return _purge(inspector, args.yes)
    except QueueError as error:
        print(f"letsgo-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE


def _redrive(inspector: Inspector, ids: list[str] | None) -> int:
    moved = inspector.redrive(ids)
    method = getattr(inspector, "redrive_method", None)
    from host.ops.sqs_inspector import REDRIVE_BY_MOVE_TASK

    if method == REDRIVE_BY_MOVE_TASK:
        print(f"started an {method} for about {moved} message{'s' * (moved != 1)}; SQS moves them back in the background")
    else:
        print(f"redrove {moved} message{'s' * (moved != 1)} to the queue" + (f", {method}" if method else ""))
    return 0


def _purge(inspector: Inspector, confirmed: bool) -> int:
    if not confirmed:
        count = inspector.stats().dead_letter
        sys.stderr.write(f"Delete the {count} dead-lettered message{'s' * (count != 1)} of {inspector.name}"
            " for good? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("nothing purged", file=sys.stderr)
            return EXIT_DECLINED
    purged = inspector.purge_dead_letters()
    print(f"purged {purged} dead-lettered message{'s' * (purged != 1)}")
    return 0


def _dlq_list(inspector: Inspector, as_json: bool) -> int:
    from host.core.logs import printable
    from host.local.schema import iso_time

    if inspector.peek_note and not as_json:
        print(f"note: {inspector.peek_note}", file=sys.stderr)
    letters = inspector.messages("dead_letter", limit=1_000_000)
    if as_json:
        print(json.dumps([letter.to_json() for letter in letters], indent=2))
        return 0
    if not letters:
        print(f"the dead-letter queue is empty ({inspector.name})")
        return 0
    for letter in letters:
        when = f"  dead-lettered {iso_time(letter.dead_lettered_at)}" if letter.dead_lettered_at else ""
        print(f"{printable(letter.id)}  received {letter.receive_count} time{'s' * (letter.receive_count != 1)}{when}")
        print(f"  reason:     {printable(letter.reason or '-')}")
        print(f"  last error: {printable(letter.last_error or '-')}")
        if letter.last_traceback:
            lines = letter.last_traceback.splitlines()
            print("  traceback:  " + "\n              ".join(printable(line) for line in lines))
        print(f"  body:       {printable(letter.body)}")
    print(f"{len(letters)} dead-lettered message{'s' * (len(letters) != 1)}; "
          "`letsgo-worker dlq redrive ID` or `--all` sends them back")
    return 0
