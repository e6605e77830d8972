"""The benchmark scripts run end to end on tiny inputs and produce well-formed results.

No timing is asserted: speed is measured by ``make bench``, not by the test
suite. This only keeps the scripts from rotting: every scenario runs (cold
starts in new processes, the real ``letsgo-worker serve`` under the Python load
generator, so wrk is not needed), and RESULTS.md is rendered from its rows.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {
    # module: (scenario number, targets it must report)
    "cold_start": ("1", {"wall vs limit", "wall vs peer", "peak RSS vs limit"}),
    "warm_throughput": ("2", {"throughput vs peer", "throughput vs limit", "throughput vs peer (1 in 10 invalid)",
                              "throughput vs limit (1 in 10 invalid)"}),
    "io_batches": ("3", {"async handlers: 10-message batch vs 1 message", "sync handlers: 10-message batch vs 1 message"}),
    "ingestion": ("4", {"durable intake vs non-storing, 16 connections"}),
    "end_to_end": ("5", {"end-to-end throughput"}),
    "memory": ("6", {"RSS growth under load (before to after)"}),
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m bench.run --mode tiny`` once: every scenario's JSON and the rendered Markdown."""
    work = tmp_path_factory.mktemp("bench")
    out = work / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--mode", "tiny", "--work", str(work), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return done, work, out


def test_the_tiny_run_succeeds_and_prints_the_targets_table(tiny_run):
    done, _, _ = tiny_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict" in done.stdout
    for module, (number, targets) in SCENARIOS.items():
        for target in targets:
            assert target in done.stdout


@pytest.mark.parametrize("module", sorted(SCENARIOS))
def test_each_scenario_writes_well_formed_rows(tiny_run, module):
    _, work, _ = tiny_run
    result = json.loads((work / f"{module}.tiny.json").read_text())
    number, targets = SCENARIOS[module]
    assert result["scenario"] == number
    assert result["mode"] == "tiny"
    assert result["title"] and result["method"]
    assert result["measures"], "a scenario measures something"
    for measure in result["measures"]:
        assert set(measure) == {"metric", "subject", "value", "unit", "detail"}
        assert measure["metric"] and measure["subject"] and measure["unit"]
        assert math.isfinite(measure["value"]) and measure["value"] >= 0, measure
    assert {target["name"] for target in result["targets"]} == targets
    for target in result["targets"]:
        assert target["op"] in ("<=", ">=")
        assert math.isfinite(target["value"]) and target["value"] >= -100, target
        assert isinstance(target["met"], bool)
        assert target["met"] == (target["value"] <= target["bound"] if target["op"] == "<=" else target["value"] >= target["bound"])
        assert (target["miss"] == "") == target["met"]


def test_results_markdown_has_every_scenario_and_the_machine(tiny_run):
    _, _, out = tiny_run
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    for key in ("| machine |", "| python |", "| versions |", "| load generator |", "| commit |"):
        assert key in text
    for module, (number, _) in SCENARIOS.items():
        assert f"\n## {number}. " in text, module
    assert "## Targets:" in text
    assert "not measured" not in text


def test_the_subjects_do_the_same_work():
    """The limit and the peer accept a valid OrderNew batch and report an invalid record, like the host."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench import limit_handler, peer_handler
        from bench.common import LambdaContext, order_event
    finally:
        sys.path.remove(str(ROOT))
    valid, mixed = order_event(0), order_event(1, invalid_every=10)
    for handler in (limit_handler.handler, peer_handler.handler):
        assert handler(valid, LambdaContext()) == {"batchItemFailures": []}
        assert handler(mixed, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": mixed["Records"][9]["messageId"]}]}
