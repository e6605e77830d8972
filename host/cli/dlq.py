"""``letsgo-worker dlq list|redrive|purge``: the local dead-letter queue from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from host.cli.common import command_help, lazy
from host.errors import QueueError, StartupError

if TYPE_CHECKING:
    from host.local.queue import LocalQueue


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    dlq = commands.add_parser(
        "dlq", help="inspect the local dead-letter queue",
        **command_help(
            "Inspect the local queue's dead-letter queue: list what is there and why, send messages back "
            "to the queue, or delete them.",
            env=("LETSGO_WORKER_DB  the queue file when --db is not given (default .letsgo/worker.db)",),
            examples=("letsgo-worker dlq list", "letsgo-worker dlq redrive --all", "letsgo-worker dlq purge"),
        ),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)
    dlq_list = dlq_commands.add_parser(
        "list", help="show dead-lettered messages with their reasons",
        **command_help(
            "Show each dead-lettered message: id, receive count, when it was dead-lettered, the reason, the "
            "last error and the body (control characters escaped). --json prints them as a list.",
            env=("LETSGO_WORKER_DB  the queue file when --db is not given (default .letsgo/worker.db)",),
            examples=("letsgo-worker dlq list", "letsgo-worker dlq list --json --db /srv/worker.db"),
        ),
    )
    dlq_list.add_argument("--json", action="store_true", help="print JSON")
    redrive = dlq_commands.add_parser(
        "redrive", help="move messages back to the queue",
        **command_help(
            "Move dead-lettered messages back to the queue, visible at once with their receive count reset: "
            "the ones named by id, or every one with --all.",
            env=("LETSGO_WORKER_DB  the queue file when --db is not given (default .letsgo/worker.db)",),
            examples=("letsgo-worker dlq redrive 3f2a9c1e-0000-4000-8000-000000000001",
                      "letsgo-worker dlq redrive --all"),
        ),
    )
    redrive.add_argument("ids", nargs="*", metavar="ID", help="message ids")
    redrive.add_argument("--all", action="store_true", help="every dead-lettered message")
    purge = dlq_commands.add_parser(
        "purge", help="delete every dead-lettered message",
        **command_help(
            "Delete every dead-lettered message for good (list them first: this cannot be undone).",
            env=("LETSGO_WORKER_DB  the queue file when --db is not given (default .letsgo/worker.db)",),
            examples=("letsgo-worker dlq purge", "letsgo-worker dlq purge --db /srv/worker.db"),
        ),
    )
    for sub in (dlq_list, redrive, purge):
        sub.add_argument("--db", help="SQLite queue file (default .letsgo/worker.db)")
    dlq.set_defaults(run=lazy("host.cli.dlq:cli_dlq"))


def default_db_path() -> str:
    """The queue file of the configuration: ``LETSGO_WORKER_DB`` or ``.letsgo/worker.db``."""
    from host.config import Settings

    return Settings.from_env().db_path


def cli_dlq(args: argparse.Namespace) -> int:
    """``letsgo-worker dlq list [--json] | redrive [ID ... | --all] | purge``, each with ``--db PATH``."""
    from host.local.queue import LocalQueue

    path = args.db or default_db_path()
    try:
        local_queue = LocalQueue(path, create=False)
    except QueueError as error:
        raise StartupError(str(error)) from None
    with local_queue:
        if args.dlq_command == "list":
            return _dlq_list(local_queue, args.json)
        if args.dlq_command == "redrive":
            if bool(args.ids) == bool(args.all):
                print("letsgo-worker: error: name the message ids to redrive, or pass --all (not both)", file=sys.stderr)
                return 2
            try:
                moved = local_queue.redrive(None if args.all else args.ids)
            except QueueError as error:
                print(f"letsgo-worker: error: {error}", file=sys.stderr)
                return 2
            print(f"redrove {moved} message{'s' * (moved != 1)} to the queue")
            return 0
        purged = local_queue.purge_dead_letters()
        print(f"purged {purged} dead-lettered message{'s' * (purged != 1)}")
        return 0


def _dlq_list(local_queue: LocalQueue, as_json: bool) -> int:
    from host.core.logs import printable
    from host.local.schema import iso_time

    letters = local_queue.dead_letters()
    if as_json:
        print(json.dumps([letter.to_json() for letter in letters], indent=2))
        return 0
    if not letters:
        print(f"the dead-letter queue is empty ({local_queue.path})")
        return 0
    for letter in letters:
        print(f"{printable(letter.id)}  received {letter.receive_count} time{'s' * (letter.receive_count != 1)}"
              f"  dead-lettered {iso_time(letter.dead_lettered_at)}")
        print(f"  reason:     {printable(letter.reason)}")
        print(f"  last error: {printable(letter.last_error or '-')}")
        print(f"  body:       {printable(letter.body)}")
    print(f"{len(letters)} dead-lettered message{'s' * (len(letters) != 1)}; "
          "`letsgo-worker dlq redrive ID` or `--all` sends them back")
    return 0
