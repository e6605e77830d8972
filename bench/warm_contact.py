"""Scenario 2b, warm contact dispatch: ``letsgo:contact`` batches through a warm handler, against Node.

Subjects, alternating chunk by chunk: ``letsgo`` (``lambda_entry.handler`` in
this process, every installed plugin, Slack unset, default log level) and
``node`` (``bench/reference_handler.js``: what the original LetsGo worker's
handler does for the same batches, in a warm Node process of its own). Both
write their log lines to a file standing for standard output. Without ``node``
only letsgo is measured and the comparison is reported as not measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench.common import (
    BENCH,
    CONTACT_PAYLOAD,
    LAMBDA_ENVIRON,
    LambdaContext,
    Result,
    clean_environ,
    isolated_cwd,
    median,
    rotated,
    stdout_to,
    typed_event,
)
from bench.servers import node_exe

#: (rounds, invocations per chunk) per mode.
SIZES = {"full": (15, 300), "quick": (5, 150), "tiny": (1, 3)}
DISTINCT_EVENTS = 64
NO_NODE = "node is not installed"
#: The ratio before the current round of work: a full run of commit eeb8b09 on 2026-12-01.
BEFORE = "0.26x"


class NodeReference:
    """``node bench/reference_handler.js``, warm, running a chunk of invocations on request."""

    def __init__(self, node: str, events_path: Path, log_path: Path) -> None:
        self._log = open(log_path, "ab")
        self._process = subprocess.Popen(
            [node, str(BENCH / "reference_handler.js"), str(events_path)], env=clean_environ(),
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.PIPE, text=True,
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        line = self._process.stderr.readline().strip()
        if what and line != what or not line:
            raise RuntimeError(f"the Node reference said {line!r} (expected {what or 'a rate'})")
        return line

    def chunk(self, invocations: int) -> float:
        """Run ``invocations`` warm invocations; the messages per second the reference measured."""
        self._process.stdin.write(f"{invocations}\n")
        self._process.stdin.flush()
        return float(self._expect(""))

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(10)
        self._log.close()


def letsgo_chunk(handler, events: list[dict], invocations: int) -> float:
    """Messages per second of ``invocations`` warm invocations of the host's handler."""
    context = LambdaContext()
    started = time.perf_counter()
    messages = 0
    for i in range(invocations):
        event = events[i % len(events)]
        handler(event, context)
        messages += len(event["Records"])
    return messages / (time.perf_counter() - started)


def run(mode: str) -> Result:
    """Measure warm contact dispatch of the host and, with node, of the Node reference, alternating."""
    node = node_exe()
    result = Result(
        "2b", "Warm contact dispatch", mode,
        "One warm process per subject, Slack unset; each handles chunks of 10-record `letsgo:contact` batches in "
        "turn (order rotated each round); messages/s per chunk, medians. letsgo is `lambda_entry.handler` at the "
        "default log level (its handler's INFO line per message and the batch summary, JSON); node is "
        "`bench/reference_handler.js`, LetsGo's handler for the same batches (console.log of each message, the "
        "Slack text built and dropped, two lines per batch). Both log to a file standing for standard output."
        + ("" if node else f" **{NO_NODE}: the Node reference was not run.**"),
    )
    rounds, chunk = SIZES[mode]
    os.environ.clear()
    os.environ.update(clean_environ(**LAMBDA_ENVIRON))
    events = [typed_event("letsgo:contact", [dict(CONTACT_PAYLOAD, name=f"Ada {b}-{i}") for i in range(10)])
              for b in range(DISTINCT_EVENTS)]
    with isolated_cwd() as directory, stdout_to(directory / "stdout.log"):
        import lambda_entry

        handler = lambda_entry.handler
        for event in events:  # warm-up, and a check that the host does the work
            if handler(event, LambdaContext())["batchItemFailures"]:
                raise RuntimeError("letsgo failed a contact record")
        reference = None
        if node:
            (directory / "events.json").write_text(json.dumps(events))
            reference = NodeReference(node, directory / "events.json", directory / "node-stdout.log")
        rates: dict[str, list[float]] = {"letsgo": [], "node": []}
        try:
            for round_ in range(rounds):
                for name in rotated(["letsgo", "node"], round_):
                    if name == "letsgo":
                        rates[name].append(letsgo_chunk(handler, events, chunk))
                    elif reference is not None:
                        rates[name].append(reference.chunk(chunk))
        finally:
            if reference is not None:
                reference.close()
    letsgo = median(rates["letsgo"])
    result.measure("throughput, letsgo:contact", "letsgo", letsgo, "msg/s", f"median of {rounds} x {chunk * 10} msgs")
    if node:
        reference_rate = median(rates["node"])
        result.measure("throughput, letsgo:contact", "node", reference_rate, "msg/s", f"median of {rounds} x {chunk * 10} msgs")
        result.target("contact throughput vs Node reference (aim 1.5x)", letsgo / reference_rate, 1.0, ">=", before=BEFORE)
    else:
        result.unmeasured("contact throughput vs Node reference (aim 1.5x)", NO_NODE, 1.0, ">=", before=BEFORE)
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
