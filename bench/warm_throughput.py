"""Scenario 2, warm throughput: messages/s over many invocations of a warm handler.

One process, default log level, the three subjects called in turn, chunk by
chunk (``letsgo`` is ``lambda_entry.handler`` with every installed plugin
discovered through entry points; the peer logs through Powertools' Logger,
the limit through a bare JSON-lines handler). Then the same with one record in ten
invalid (its payload lacks ``customerId``), which each subject must report in
``batchItemFailures``.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    LAMBDA_ENVIRON,
    LambdaContext,
    Result,
    clean_environ,
    isolated_cwd,
    median,
    order_event,
    rotated,
    stdout_to,
    tidy_paths,
)

SUBJECTS = ["letsgo", "limit", "peer"]
#: (rounds, invocations per chunk) per mode.
SIZES = {"full": (15, 300), "quick": (5, 150), "tiny": (1, 3)}
DISTINCT_EVENTS = 64
#: Each target's figure before the current round of work: a full run of commit eeb8b09 on 2026-12-01, where
#: letsgo still ran with the Lambda back-off on (so each batch with an invalid record tried an SQS call).
BEFORE = {"all valid": {"peer": "0.73x", "limit": "0.24x"}, "1 in 10 invalid": {"peer": "0.45x", "limit": "0.16x"}}


def handlers() -> dict[str, Callable[[dict, Any], dict]]:
    """The three subjects' Lambda handlers, imported and warmed up."""
    import lambda_entry

    from bench import limit_handler, peer_handler

    return {"letsgo": lambda_entry.handler, "limit": limit_handler.handler, "peer": peer_handler.handler}


def quiet_loggers() -> Callable[[], None]:
    """Set every subject's handler logger to WARNING; return a function that restores the levels."""
    import logging

    from bench import limit_handler, peer_handler

    loggers = [logging.getLogger("letsgo"), limit_handler.logger, peer_handler.logger]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)

    def restore() -> None:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)

    return restore


def throughput(
    subjects: dict[str, Callable], events: list[dict], expected_failures: int, rounds: int, chunk: int
) -> dict[str, list[float]]:
    """Messages/s of each subject per round, the subjects alternating chunk by chunk."""
    context = LambdaContext()
    messages = sum(len(e["Records"]) for e in events) / len(events)
    rates: dict[str, list[float]] = {name: [] for name in subjects}
    for name, handler in subjects.items():  # warm-up, and a check that each does the work
        failures = len(handler(events[0], context)["batchItemFailures"])
        if failures != expected_failures:
            raise RuntimeError(f"{name} reported {failures} failures in a batch, expected {expected_failures}")
    for round_ in range(rounds):
        for name in rotated(list(subjects), round_):
            handler = subjects[name]
            started = time.perf_counter()
            for i in range(chunk):
                handler(events[i % len(events)], context)
            rates[name].append(chunk * messages / (time.perf_counter() - started))
    return rates


def host_profile(handler: Callable, events: list[dict], calls: int, top: int = 14) -> str:
    """cProfile of the host's warm path: the functions where the time goes."""
    context = LambdaContext()
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        handler(events[i % len(events)], context)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    header = f"cProfile of {calls} warm letsgo invocations ({calls * 10} valid messages), top {top} by own time:"
    return tidy_paths("\n".join([header] + lines[start:]))


def run(mode: str) -> Result:
    """Measure warm throughput of the three subjects, all-valid and with one invalid record in ten."""
    result = Result(
        "2", "Warm throughput", mode,
        "One warm process with the Lambda environment variables; each subject handles chunks of 10-record "
        "OrderNew batches in turn (order rotated each round); messages/s per chunk, medians. Default log level: "
        "each subject writes its handler's INFO line per message as JSON to standard output (a file here). "
        "letsgo runs with `LETSGO_WORKER_LAMBDA_BACKOFF=0`: its back-off of a failed record is a "
        "ChangeMessageVisibility call to SQS (one per batch with a failure, a network round trip in Lambda), "
        "which neither the peer nor the limit makes and which has no queue to reach here.",
    )
    rounds, chunk = SIZES[mode]
    os.environ.clear()
    # Like for like: no subject calls SQS for its failed records (see the description above).
    os.environ.update(clean_environ(**LAMBDA_ENVIRON, LETSGO_WORKER_LAMBDA_BACKOFF="0"))
    # As in Lambda, every subject's log lines go to standard output: here a file, written for real.
    with isolated_cwd() as directory, stdout_to(directory / "stdout.log"):
        subjects = handlers()
        valid = [order_event(b) for b in range(DISTINCT_EVENTS)]
        mixed = [order_event(b, invalid_every=10) for b in range(DISTINCT_EVENTS)]
        for label, events, failures in (("all valid", valid, 0), ("1 in 10 invalid", mixed, 1)):
            rates = throughput(subjects, events, failures, rounds, chunk)
            medians = {name: median(values) for name, values in rates.items()}
            for name in SUBJECTS:
                result.measure(f"throughput, {label}", name, medians[name], "msg/s", f"median of {rounds} x {chunk * 10} msgs")
            suffix = "" if label == "all valid" else f" ({label})"
            result.target(f"throughput vs peer{suffix}", medians["letsgo"] / medians["peer"], 1.0, ">=",
                          before=BEFORE[label]["peer"])
            result.target(f"throughput vs limit{suffix}", medians["letsgo"] / medians["limit"], 0.6, ">=",
                          before=BEFORE[label]["limit"])
        # Reference: the frameworks' own overhead, with every subject's log level at WARNING.
        quiet = quiet_loggers()
        rates = throughput(subjects, valid, 0, rounds, chunk)
        quiet()
        for name in SUBJECTS:
            result.measure("throughput, all valid, log level WARNING", name, median(rates[name]), "msg/s",
                           "reference, no target")
        if mode != "tiny":
            result.profile = host_profile(subjects["letsgo"], valid, 200)
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
