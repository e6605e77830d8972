"""``letsgo-worker keygen`` and ``token``: the worker's RS256 key pair and access tokens for the app's API."""

from __future__ import annotations

import argparse

from host.cli.common import lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    keygen = commands.add_parser("keygen", help="write a new RSA key pair for the worker's access tokens")
    keygen.add_argument("--out", default=".letsgo/worker-key.pem", help="private key file to write")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(run=lazy("host.services.api:cli_keygen"))

    token = commands.add_parser("token", help="print an access token for the app's API")
    token.set_defaults(run=lazy("host.services.api:cli_token"))
