"""Run the benchmark scenarios, print a table, and write the results as Markdown.

``python -m bench.run`` (``make bench``) writes ``bench/RESULTS.md``;
``--mode quick`` (``make bench-quick``) writes ``bench/.out/RESULTS-quick.md``.
Each scenario runs in its own process, bounded in time; one that fails is
reported as failed and the run goes on (exit status 1 at the end). The
hand-written analysis in ``bench/FINDINGS.md`` is appended; after editing it,
``--render`` writes the Markdown again from the saved results without
measuring anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from bench.common import BENCH, MODES, ROOT, fmt
from bench.servers import node_exe

#: Scenario modules in order, with their time bound in seconds per mode (full, quick, tiny).
SCENARIOS = [
    ("cold_start", (240, 60, 60)),
    ("warm_throughput", (240, 60, 60)),
    ("warm_contact", (120, 40, 30)),
    ("io_batches", (120, 40, 30)),
    ("ingestion", (300, 60, 60)),
    ("end_to_end", (180, 60, 60)),
    ("memory", (360, 50, 40)),
    ("dashboard", (300, 150, 60)),
]
OUT = BENCH / ".out"
FINDINGS = BENCH / "FINDINGS.md"
VERSIONED = ["letsgo-worker", "example-orders", "letsgo-stripe", "letsgo-slack", "pydantic", "pydantic_core",
             "pluggy", "aws-lambda-powertools"]


def run_scenario(module: str, mode: str, timeout: float, work: Path = OUT) -> dict:
    """Run one scenario module in a child process; return its JSON result or an error record."""
    work.mkdir(parents=True, exist_ok=True)
    result_path = work / f"{module}.{mode}.json"
    result_path.unlink(missing_ok=True)
    log_path = work / f"{module}.{mode}.log"
    argv = [sys.executable, "-m", f"bench.{module}", "--mode", mode, "--json", str(result_path)]
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        # A new session, so a scenario that overruns is stopped with every process it started.
        child = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)
            child.wait()
            status = None
    seconds = time.perf_counter() - started
    if status == 0 and result_path.exists():
        return json.loads(result_path.read_text())
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
    why = f"timed out after {timeout:.0f} s" if status is None else f"exited with status {status}"
    return {"scenario": module, "title": module, "mode": mode, "error": why, "log": "\n".join(tail), "seconds": round(seconds, 1)}


def machine() -> dict[str, str]:
    """The machine, the software versions and the commit the numbers come from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    versions = []
    for name in VERSIONED:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    import sqlite3

    wrk = "not installed (Python load generator used)"
    if shutil.which("wrk"):
        probe = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        text = (probe.stdout + probe.stderr).strip()
        wrk = text.splitlines()[0].split(" [")[0] if text else "wrk"
    node = node_exe()
    node_version = "not installed (the Node reference is not run)"
    if node:
        node_version = "Node " + subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "host", "plugins", "lambda_entry.py", "bench"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {memory} memory, {os_name}, Linux {platform.release()}",
        "python": f"Python {platform.python_version()} ({platform.python_implementation()}), SQLite {sqlite3.sqlite_version}",
        "versions": ", ".join(versions),
        "load generator": wrk,
        "node": node_version,
        "commit": (commit or "unknown") + (" with uncommitted changes" if dirty else ""),
    }


TARGET_HEADER = ["scenario", "target", "before", "measured", "target", "verdict"]
#: Where the "before" column comes from, printed under the targets table.
BEFORE_NOTE = (
    "**before**: the figure before the current round of work. Scenarios 1, 2 and 2b (the Lambda hot path): a full "
    "run of commit eeb8b09, where this round began, on 2026-12-01 (scenario 2 with the Lambda back-off still on, "
    "see its description); the run before that (commit ae38e14) is compared in bench/FINDINGS.md. "
    "The others: the full run of 2026-11-28 (commit fe2ea2b); "
    "the comparison with the Node reference, which that run did not have, from the wrk measurement that asked for "
    "it (letsgo vs Node at 1, 16 and 64 connections: 1.4k vs 15.1k, 3.4k vs 14.9k, 5.5k vs 16.3k req/s)."
)


def with_unit(value: float, unit: str) -> str:
    """``1.10x`` for ratios, ``3,277 msg/s`` for everything else."""
    return f"{fmt(value)}{unit}" if unit == "x" else f"{fmt(value)} {unit}"


def target_rows(results: list[dict]) -> list[list[str]]:
    """One row per target: scenario, target, before, measured, bound, verdict."""
    rows = []
    for result in results:
        if "error" in result:
            rows.append([f"{result['scenario']}", result["title"], "-", "-", "-", f"not measured: {result['error']}"])
            continue
        for target in result["targets"]:
            unit = target["unit"]
            bound = f"{target['op']} {with_unit(target['bound'], unit)}"
            if target["value"] is None:
                measured, verdict = "-", f"not measured: {target.get('unmeasured')}"
            else:
                measured = with_unit(target["value"], unit)
                verdict = "met" if target["met"] else f"**missed** ({target['miss']})"
            rows.append([f"{result['scenario']}. {result['title']}", target["name"], target.get("before") or "-",
                         measured, bound, verdict])
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table for the terminal."""
    plain = [[cell.replace("**", "") for cell in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [header] + plain) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    return "\n".join([line, "-" * len(line)] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in plain])


def measure_rows(result: dict) -> list[list[str]]:
    """One row per measurement of a scenario."""
    return [[m["metric"], m["subject"], f"{fmt(m['value'])} {m['unit']}", m["detail"]] for m in result["measures"]]


def render(results: list[dict], info: dict[str, str], command: str, mode: str, now: str) -> str:
    """RESULTS.md: how it was measured, every target's verdict, each scenario's numbers and profiles."""
    targets = [t for r in results for t in r.get("targets", [])]
    met = sum(1 for t in targets if t["met"])
    unmeasured = sum(1 for t in targets if t["value"] is None)
    heading = f"{met} of {len(targets)} met" + (f", {unmeasured} not measured" if unmeasured else "")
    parts = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` ({mode} mode) on {now}. Regenerate with `make bench` (about 10 minutes); "
        "`make bench-quick` runs the same scenarios with fewer rounds in under 2 minutes.",
        "",
        "Absolute times on a shared 2-core machine are noise; the ratios hold, because every ratio compares "
        "subjects measured in the same run, alternating. **letsgo** is this worker (`lambda_entry.handler`, "
        "every installed plugin found through entry points); **limit** is the least a correct handler can do "
        "(`json.loads` + one pydantic model + a dict of handlers, `bench/limit_handler.py`); **peer** is what a "
        "Python team writes instead (AWS Lambda Powertools `BatchProcessor` with a pydantic record model, "
        "`bench/peer_handler.py`); **node** is the original LetsGo worker's local server doing its per-request work "
        "on Node's http module, storing nothing (`bench/reference_server.js`), and in scenario 2b the original's Lambda "
        "handler for `letsgo:contact` with Slack unset (`bench/reference_handler.js`). Message mix: `OrderNew` from "
        "example-orders, 10-record batches, with letsgo-stripe, letsgo-slack and example-orders installed; the "
        "local ingestion posts `letsgo:contact` as LetsGo's queue client sends it.",
        "",
        "| | |",
        "|---|---|",
    ]
    parts += [f"| {key} | {value} |" for key, value in info.items()]
    parts += ["", f"## Targets: {heading}", "", markdown_table(TARGET_HEADER, target_rows(results)), "", BEFORE_NOTE, ""]
    for result in results:
        parts += [f"## {result['scenario']}. {result['title']}", ""]
        if "error" in result:
            parts += [f"Not measured: the scenario {result['error']}.", "", "```", result.get("log", ""), "```", ""]
            continue
        parts += [result["method"], "", markdown_table(["metric", "subject", "value", "detail"], measure_rows(result)), ""]
        if result["targets"]:
            parts += [markdown_table(["target", "before", "measured", "bound", "verdict"],
                                     [row[1:] for row in target_rows([result])]), ""]
        if result.get("profile"):
            parts += ["Where the time goes:", "", "```", result["profile"], "```", ""]
        parts += [f"_{result['seconds']} s_", ""]
    if FINDINGS.exists():
        parts += [FINDINGS.read_text().strip(), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the scenarios, print the table, write the Markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="full")
    parser.add_argument("--only", help="comma list of scenario modules to run (default: all)")
    parser.add_argument("--out", help="Markdown file to write (default depends on the mode)")
    parser.add_argument("--command", help="the command to credit in the results (default: this one)")
    parser.add_argument("--work", type=Path, default=OUT, help="directory for each scenario's JSON and log (default bench/.out)")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: write the Markdown again from the JSON results in --work (after editing FINDINGS.md)")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]
    if not chosen:
        print(f"bench: --only {args.only!r} names no scenario; choose from {', '.join(s[0] for s in SCENARIOS)}", file=sys.stderr)
        return 2
    index = MODES.index(args.mode)
    results = []
    for module, bounds in chosen:
        if args.render:
            saved = args.work / f"{module}.{args.mode}.json"
            if saved.exists():
                results.append(json.loads(saved.read_text()))
            continue
        print(f"bench: {module} ({args.mode})...", file=sys.stderr, flush=True)
        results.append(run_scenario(module, args.mode, bounds[index], args.work))
    header_path = args.work / f"run.{args.mode}.json"
    if args.render:
        if not results or not header_path.exists():
            print(f"bench: no saved {args.mode} results in {args.work}; run without --render first", file=sys.stderr)
            return 2
        header = json.loads(header_path.read_text())
    else:
        header = {
            "info": machine(),
            "command": args.command or "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "now": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        header_path.write_text(json.dumps(header, indent=2) + "\n")
    out = Path(args.out) if args.out else (BENCH / "RESULTS.md" if args.mode == "full" else args.work / f"RESULTS-{args.mode}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, header["info"], header["command"], args.mode, header["now"]))
    print()
    for result in results:
        if "error" not in result:
            print(f"{result['scenario']}. {result['title']} ({result['seconds']} s)")
            print(text_table(["metric", "subject", "value", "detail"], measure_rows(result)))
            print()
    print(text_table(TARGET_HEADER, target_rows(results)))
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
