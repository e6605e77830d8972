"""``letsgo-worker keygen`` and ``token``: the worker's RS256 key pair and access tokens for the app's API."""

from __future__ import annotations

import argparse

from host.cli.common import command_help, lazy

#: Where ``keygen`` writes the private key, and where ``token`` looks for it when no variable names one
#: (``host.services.api.DEFAULT_KEY_FILE``, which a test keeps equal: the parser imports no service).
DEFAULT_KEY_FILE = ".letsgo/worker-key.pem"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    keygen = commands.add_parser(
        "keygen", help="write a new RSA key pair for the worker's access tokens",
        **command_help(
            f"Write a new RSA key pair for the worker's access tokens: the private key to --out (default "
            f"{DEFAULT_KEY_FILE}, mode 0600) and the public key beside it (.pub.pem), and print its key id. "
            "Trust the public key in your app's API.",
            examples=("letsgo-worker keygen", "letsgo-worker keygen --out secrets/worker.pem --force"),
        ),
    )
    keygen.add_argument("--out", default=DEFAULT_KEY_FILE, help="private key file to write")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(run=lazy("host.services.api:cli_keygen"))

    token = commands.add_parser(
        "token", help="print an access token for the app's API",
        **command_help(
            "Print an RS256 access token for the app's API, alone on stdout. The key is "
            f"LETSGO_PKI_PRIVATE_KEY, else the file LETSGO_PKI_PRIVATE_KEY_FILE, else {DEFAULT_KEY_FILE} "
            "where `keygen` writes it.",
            env=("LETSGO_PKI_PRIVATE_KEY  the PEM private key itself",
                 f"LETSGO_PKI_PRIVATE_KEY_FILE  a file holding it (default {DEFAULT_KEY_FILE} when it exists)",
                 "LETSGO_API_AUDIENCE  the token's audience (default letsgo:service)"),
            examples=("letsgo-worker token",
                      "curl -H \"Authorization: Bearer $(letsgo-worker token)\" http://localhost:3001/health"),
        ),
    )
    token.set_defaults(run=lazy("host.services.api:cli_token"))
