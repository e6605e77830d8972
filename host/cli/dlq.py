"""``letsgo-worker dlq list|redrive|purge``: the local dead-letter queue from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from host.core.logs import printable
from host.errors import StartupError
from host.local.queue import LocalQueue, QueueError
from host.local.schema import iso_time


def default_db_path() -> str:
    """The queue file of the configuration: ``LETSGO_WORKER_DB`` or ``.letsgo/worker.db``."""
    from host.config import Settings

    return Settings.from_env().db_path


def cli_dlq(args: argparse.Namespace) -> int:
    """``letsgo-worker dlq list [--json] | redrive [ID ... | --all] | purge``, each with ``--db PATH``."""
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
