"""Scenario 1, cold start: a new process imports the handler, handles one 10-record batch, exits.

Subjects, alternating round by round: ``letsgo`` (``lambda_entry`` as the
Dockerfile builds it: the plugins' entry points read from the file that
``letsgo-worker plugins --freeze`` wrote), ``letsgo-scan`` (the same without the
file: every installed distribution scanned; a reference, no target), ``limit``
(json + one pydantic model + dict dispatch) and ``peer`` (Powertools BatchProcessor).
Wall time is measured by the parent from spawn to exit; peak RSS and CPU time
(user + system) come from ``wait4`` for that very child. CPU time is shown
beside the wall time because it moves less when other work shares the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    BENCH,
    Result,
    isolated_cwd,
    lambda_like_environ,
    median,
    order_event,
    python_exe,
    rotated,
)

SUBJECTS = ["letsgo", "letsgo-scan", "limit", "peer"]
ROUNDS = {"full": 30, "quick": 8, "tiny": 1}
#: The frozen entry points, written beside the event file as the Dockerfile writes them beside lambda_entry.py.
ENTRY_POINTS_FILE = "letsgo-worker-entry-points.json"


def freeze_entry_points(path: Path, env: dict[str, str]) -> None:
    """``letsgo-worker plugins --freeze`` in the children's layout (``python -S``, packages on PYTHONPATH)."""
    code = "import sys; from host.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([python_exe(), "-S", "-c", code, "plugins", "--freeze", str(path)], env=env, check=True,
                   capture_output=True)


def spawn(subject: str, event_path: Path, env: dict[str, str], *, importtime: bool = False) -> dict:
    """Run one cold start; return the child's own report plus wall ms, peak RSS and stderr."""
    argv = [python_exe(), "-S"] + (["-X", "importtime"] if importtime else []) + [str(BENCH / "cold_child.py")]
    argv += ["letsgo", str(event_path)] if subject == "letsgo-scan" else [subject, str(event_path)]
    if subject == "letsgo":
        argv.append(str(event_path.with_name(ENTRY_POINTS_FILE)))
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read both pipes to the end before reaping, then wait4 gives this child's own rusage.
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall_ms = (time.perf_counter() - started) * 1000
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"cold start of {subject!r} exited {child.returncode}: {err.decode()[-2000:]}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    if report["failures"]:
        raise RuntimeError(f"cold start of {subject!r} failed {report['failures']} of {report['records']} records")
    report.update(wall_ms=wall_ms, cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000, peak_rss_kib=usage.ru_maxrss,
                  stderr=err.decode())
    return report


def import_profile(event_path: Path, env: dict[str, str], top: int = 12) -> str:
    """``python -X importtime`` of a letsgo cold start: top-level packages by cumulative import time."""
    report = spawn("letsgo", event_path, env, importtime=True)
    by_package: Counter[str] = Counter()
    for line in report["stderr"].splitlines():
        if not line.startswith("import time:"):
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|")
        if self_us.strip().isdigit():  # skips the header line
            by_package[name.strip().split(".")[0]] += int(self_us)
    total = sum(by_package.values())
    lines = [f"import time by top-level package (self time summed), letsgo cold start: {total / 1000:.0f} ms in all"]
    for name, micros in by_package.most_common(top):
        lines.append(f"  {micros / 1000:7.1f} ms  {name}")
    lines.append(
        f"in-process (this run, with -X importtime overhead): import lambda_entry {report['import_ms']:.0f} ms, "
        f"plugin discovery and registration {report['discovery_ms']:.0f} ms, first batch {report['first_batch_ms']:.0f} ms"
    )
    return "\n".join(lines)


def run(mode: str) -> Result:
    """Measure cold starts of the three subjects, alternating, and compare them."""
    result = Result(
        "1", "Cold start", mode,
        "New interpreter laid out like a Lambda image (`python -S`, packages on PYTHONPATH, no editable-install "
        "hooks; AWS_LAMBDA_RUNTIME_API set, so each subject logs its handler's INFO line as JSON on stdout): "
        "import the handler, handle one 10-record OrderNew batch, exit. letsgo reads the plugins' entry points from "
        "the file `letsgo-worker plugins --freeze` wrote, as in the image the Dockerfile builds; letsgo-scan scans "
        "the installed distributions instead. Wall time from spawn to exit, peak RSS from wait4; subjects alternate "
        "round by round; medians.",
    )
    rounds = ROUNDS[mode]
    samples: dict[str, dict[str, list[float]]] = {
        s: {"wall": [], "cpu": [], "rss": [], "in_process": [], "import": [], "discovery": [], "first_batch": []}
        for s in SUBJECTS
    }
    with isolated_cwd() as directory:
        event_path = directory / "event.json"
        event_path.write_text(json.dumps(order_event(0)))
        env = lambda_like_environ()
        freeze_entry_points(directory / ENTRY_POINTS_FILE, env)
        for subject in SUBJECTS:  # warm the page cache and bytecode caches; not measured
            spawn(subject, event_path, env)
        for round_ in range(rounds):
            for subject in rotated(SUBJECTS, round_):
                report = spawn(subject, event_path, env)
                samples[subject]["wall"].append(report["wall_ms"])
                samples[subject]["cpu"].append(report["cpu_ms"])
                samples[subject]["rss"].append(report["peak_rss_kib"] / 1024)
                samples[subject]["in_process"].append(report["in_process_ms"])
                for phase in ("import", "discovery", "first_batch"):
                    samples[subject][phase].append(report.get(f"{phase}_ms", 0.0))
        result.profile = import_profile(event_path, env) if mode != "tiny" else ""
    medians = {s: {k: median(v) for k, v in samples[s].items()} for s in SUBJECTS}
    for subject in SUBJECTS:
        result.measure("wall", subject, medians[subject]["wall"], "ms", f"median of {rounds}")
        result.measure("CPU time (user + system)", subject, medians[subject]["cpu"], "ms")
        result.measure("in-process (import + first batch)", subject, medians[subject]["in_process"], "ms")
        result.measure("peak RSS", subject, medians[subject]["rss"], "MiB")
    result.measure("in-process: import lambda_entry", "letsgo", medians["letsgo"]["import"], "ms")
    result.measure("in-process: plugin discovery + registration", "letsgo", medians["letsgo"]["discovery"], "ms")
    result.measure("in-process: first batch", "letsgo", medians["letsgo"]["first_batch"], "ms")
    result.measure("in-process: plugin discovery + registration", "letsgo-scan", medians["letsgo-scan"]["discovery"], "ms",
                   "reference, no target")
    for subject in ("limit", "peer"):
        result.measure("in-process: import handler module", subject, medians[subject]["import"], "ms")
        result.measure("in-process: first batch", subject, medians[subject]["first_batch"], "ms")
    letsgo = medians["letsgo"]
    result.target("wall vs limit", letsgo["wall"] / medians["limit"]["wall"], 1.15, "<=", before="1.35x")
    result.target("wall vs peer", letsgo["wall"] / medians["peer"]["wall"], 0.85, "<=", before="0.97x")
    result.target("peak RSS vs limit", letsgo["rss"] / medians["limit"]["rss"], 1.25, "<=", before="1.15x")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
