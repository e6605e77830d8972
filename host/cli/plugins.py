"""``letsgo-worker plugins`` and ``types``: what is installed and loaded, and the message types it registered."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from host.cli.common import command_help
from host.config import Setting, Settings


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    plugins = commands.add_parser(
        "plugins", help="list loaded plugins",
        **command_help(
            "List the installed plugins: distribution, version, the hooks each implements, the message types "
            "it registered and the settings it declared (a secret's value never shown). A plugin that failed "
            "to load is listed too, NOT LOADED, with its error.",
            env=("LETSGO_WORKER_PLUGINS  load only these plugins (comma list)",
                 "LETSGO_WORKER_DISABLE_PLUGINS  never load these",
                 "LETSGO_WORKER_STRICT_PLUGINS  a plugin that fails to import is an error",
                 "each plugin's own settings (listed by `letsgo-worker plugins`)"),
            examples=("letsgo-worker plugins", "letsgo-worker plugins --json",
                      "letsgo-worker plugins --freeze   # in a Dockerfile, after installing the plugins"),
        ),
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument(
        "--freeze", metavar="FILE", nargs="?", const="",
        help="write the installed plugins' entry points to FILE for the cold starts of an image (default: "
        "beside lambda_entry.py, where the Lambda entry point reads them; see the Dockerfile)",
    )
    plugins.set_defaults(run=cli_plugins)

    types = commands.add_parser(
        "types", help="list registered message types",
        **command_help(
            "List every message type the installed plugins register, with its plugin, description and the "
            "fields of its payload (name, type, required or default). --json adds each payload's JSON Schema.",
            env=("LETSGO_WORKER_PLUGINS  load only these plugins (comma list)",
                 "LETSGO_WORKER_DISABLE_PLUGINS  never load these",
                 "LETSGO_WORKER_STRICT_PLUGINS  a plugin that fails to import is an error",
                 "each plugin's own settings (listed by `letsgo-worker plugins`)"),
            examples=("letsgo-worker types", "letsgo-worker types --json"),
        ),
    )
    types.add_argument("--json", action="store_true", help="print JSON with each payload's JSON Schema")
    types.set_defaults(run=cli_types)


def _started_worker():
    from host.core.worker import get_worker

    from host.core.plugins import report_problems

    worker = get_worker()
    report_problems(worker.problems)
    return worker


def cli_plugins(args: argparse.Namespace) -> int:
    """``letsgo-worker plugins [--json] [--freeze FILE]``: name, distribution, version, hooks, message types, settings.

    A plugin that failed to load is listed too, with ``loaded`` false and its
    problems, so scripts reading the JSON see it as well as people reading stderr.
    Each setting a plugin declared is shown with its value as configured; a
    secret's only as ``<secret>``. ``--freeze FILE`` writes the entry-point
    cache instead (:mod:`host.core.entry_point_cache`), loading no plugin.
    """
    if args.freeze is not None:
        return _freeze(args.freeze)
    worker = _started_worker()
    problems: dict[str, list[str]] = {}
    for problem in worker.problems:
        problems.setdefault(problem.plugin, []).append(problem.message)
    rows = []
    for info in worker.plugins:
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "loaded": True,
                "hooks": worker.plugin_hooks(info),
                "types": [entry.type for entry in worker.registry if entry.plugin == info.name],
                "settings": [_setting_row(worker.settings, setting) for setting in worker.plugin_settings.get(info.name, [])],
                "problems": problems.pop(info.name, []),
            }
        )
    failed = {problem.plugin: problem.distribution for problem in worker.problems}
    for name, messages in problems.items():
        rows.append(
            {
                "name": name, "distribution": failed[name], "version": None, "builtin": False,
                "loaded": False, "hooks": [], "types": [], "settings": [], "problems": messages,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins loaded")
    for row in rows:
        state = "" if row["loaded"] else " NOT LOADED"
        print(f"{row['name']} ({row['distribution'] or 'in-process'} {row['version'] or ''})".replace(" )", ")") + state)
        print(f"  hooks: {', '.join(row['hooks']) or '-'}")
        print(f"  types: {', '.join(row['types']) or '-'}")
        settings = [f"{s['variable']}={s['value']}" if s["value"] is not None else f"{s['variable']} (unset)" for s in row["settings"]]
        print(f"  settings: {', '.join(settings) or '-'}")
    return 0


def _setting_row(settings: Settings, setting: Setting) -> dict[str, Any]:
    """One declared setting for the listing: the value as configured, never a secret's."""
    return {
        "variable": setting.variable,
        "value": settings.display(setting),
        "default": None if setting.secret else setting.default,
        "secret": setting.secret,
        "description": setting.description,
    }


def _freeze(path: str) -> int:
    from host.core.entry_point_cache import freeze

    if not path:
        import lambda_entry

        path = lambda_entry.ENTRY_POINTS_FILE
    try:
        frozen = freeze(path)
    except (OSError, ValueError) as error:
        print(f"letsgo-worker: cannot freeze the entry points into {path}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {len(frozen)} entry point(s)")
    for ep in frozen:
        print(f"  {ep.name} = {ep.value} ({ep.distribution or 'no distribution'} {ep.version or ''})".replace(" )", ")"))
    return 0


def cli_types(args: argparse.Namespace) -> int:
    """``letsgo-worker types [--json]``: every registered type with its plugin and payload schema."""
    worker = _started_worker()
    rows = [
        {
            "type": entry.type,
            "plugin": entry.plugin,
            "distribution": entry.distribution,
            "description": entry.description,
            "schema": entry.payload_schema(),
        }
        for entry in worker.registry
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no message types registered")
    width = max((len(row["type"]) for row in rows), default=0)
    for row in rows:
        print(f"{row['type']:<{width}}  {row['plugin']:<16}  {row['description']}")
        print(f"  payload: {payload_summary(row['schema'])}")
    return 0


def payload_summary(schema: dict[str, Any] | None) -> str:
    """One line on a payload's JSON Schema: each field with its type, and ``?`` when it is optional.

    ``orderId: string, customerId: string, note?: string | null``; "any JSON" when no model
    was registered, "no fields" for a model without any.
    """
    if schema is None:
        return "any JSON (no model)"
    required = set(schema.get("required", ()))
    fields = [
        f"{name}{'' if name in required else '?'}: {_schema_type(prop)}"
        for name, prop in (schema.get("properties") or {}).items()
    ]
    more = ", ..." if schema.get("additionalProperties") not in (None, False) else ""
    return (", ".join(fields) or "no fields") + more


def _schema_type(prop: dict[str, Any]) -> str:
    """A field's type in a few words: ``string``, ``array of integer``, ``Tenant``, ``string | null``."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_schema_type(option) for option in prop["anyOf"])
    if "enum" in prop:
        return " | ".join(json.dumps(value) for value in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"array of {_schema_type(prop['items'])}"
    return kind if isinstance(kind, str) else " | ".join(kind)
