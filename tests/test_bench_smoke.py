"""The benchmark scripts run end to end on tiny inputs and produce well-formed results.

No timing is asserted: speed is measured by ``make bench``, not by the test
suite. This only keeps the scripts from rotting: every scenario runs (cold
starts in new processes, the real ``letsgo-worker serve`` under the Python load
generator, so wrk is not needed; the Node reference server when node is
installed), and RESULTS.md is rendered from its rows.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
NODE_TARGET = "durable intake vs Node reference, 16 connections (aim 1.0x)"
SCENARIOS = {
    # module: (scenario number, targets it must report)
    "cold_start": ("1", {"wall vs limit", "wall vs peer", "peak RSS vs limit"}),
    "warm_throughput": ("2", {"throughput vs peer", "throughput vs limit", "throughput vs peer (1 in 10 invalid)",
                              "throughput vs limit (1 in 10 invalid)"}),
    "warm_contact": ("2b", {"contact throughput vs Node reference (aim 1.5x)"}),
    "io_batches": ("3", {"async handlers: 10-message batch vs 1 message", "sync handlers: 10-message batch vs 1 message"}),
    "ingestion": ("4", {"durable intake p50 latency, 1 connection", NODE_TARGET}),
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
        assert target["before"], f"{target['name']} shows no figure from before"
        assert isinstance(target["met"], bool)
        if target["value"] is None:  # only the comparison with Node, and only without node
            assert target["name"] == NODE_TARGET and not NODE, target
            assert target["unmeasured"] == "node is not installed" and not target["met"] and not target["miss"]
            continue
        assert math.isfinite(target["value"]) and target["value"] >= -100, target
        assert target["met"] == (target["value"] <= target["bound"] if target["op"] == "<=" else target["value"] >= target["bound"])
        assert (target["miss"] == "") == target["met"]


def test_results_markdown_has_every_scenario_and_the_machine(tiny_run):
    _, _, out = tiny_run
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    for key in ("| machine |", "| python |", "| versions |", "| load generator |", "| node |", "| commit |"):
        assert key in text
    for module, (number, _) in SCENARIOS.items():
        assert f"\n## {number}. " in text, module
    assert "## Targets:" in text
    if NODE:
        assert "not measured" not in text
    else:
        assert f"| {NODE_TARGET} | 0.23x | - | >= 0.60x | not measured: node is not installed |" in text


def test_a_target_not_measured_is_shown_as_such_never_with_a_figure():
    sys.path.insert(0, str(ROOT))
    try:
        from bench.common import Result
        from bench.run import target_rows
    finally:
        sys.path.remove(str(ROOT))
    result = Result("4", "Local ingestion", "tiny", "method")
    result.unmeasured(NODE_TARGET, "node is not installed", 0.6, ">=", before="0.23x")
    assert target_rows([result.to_json()]) == [
        ["4. Local ingestion", NODE_TARGET, "0.23x", "-", ">= 0.60x", "not measured: node is not installed"]
    ]


@pytest.fixture
def reference_server():
    """``node bench/reference_server.js 0``, stopped afterwards; its host and port."""
    if not NODE:
        pytest.skip("node is not installed")
    server = subprocess.Popen([NODE, str(ROOT / "bench" / "reference_server.js"), "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"listening on http://(127\.0\.0\.1):(\d+)", line)
        assert match, f"the reference server printed {line!r}"
        yield match.group(1), int(match.group(2))
    finally:
        server.terminate()
        server.wait(10)


def test_the_node_reference_answers_201_with_the_ids_and_400_to_bad_json(reference_server):
    sys.path.insert(0, str(ROOT))
    try:
        from bench.common import contact_request
    finally:
        sys.path.remove(str(ROOT))
    connection = http.client.HTTPConnection(*reference_server, timeout=10)
    body = contact_request()
    sent_id = json.loads(body)["Records"][0]["messageId"]
    for _ in range(2):  # the second request on the same kept-alive connection
        connection.request("POST", "/", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 201
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read()) == {"messageIds": [sent_id]}
    for bad in (b"{not json", json.dumps({"Records": [{"messageId": "m-1", "body": "{not json"}]}).encode()):
        connection.request("POST", "/", bad, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 400
        assert "not valid JSON" in json.loads(response.read())["error"]
    connection.close()


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


def test_the_node_reference_handler_does_letsgos_work_for_a_contact_batch():
    sys.path.insert(0, str(ROOT))
    try:
        from bench.common import CONTACT_PAYLOAD, sqs_record, typed_event
    finally:
        sys.path.remove(str(ROOT))
    event = typed_event("letsgo:contact", [CONTACT_PAYLOAD, CONTACT_PAYLOAD])
    event["Records"].append(sqs_record("{not json", message_id="m-bad"))
    script = (
        "const { handler } = require(process.argv[1]);"
        "handler(JSON.parse(process.argv[2]), {}).then((r) => console.log(JSON.stringify(r)));"
    )
    done = subprocess.run(
        [NODE or "node", "-e", script, str(ROOT / "bench" / "reference_handler.js"), json.dumps(event)],
        capture_output=True, text=True, timeout=30, env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "WORKER RECEIVED 3 MESSAGES"
    assert sum(line.startswith("CONTACT FORM SUBMISSION {") for line in lines) == 2
    assert lines[-2] == "WORKER RESPONSE: 2 SUCCESS, 1 FAILURE"
    assert json.loads(lines[-1]) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
