"""Shared pieces of the benchmarks: events, a Lambda context, statistics and result rows.

Every scenario module has ``run(mode) -> Result`` and a ``main()`` that prints
its rows as JSON (``python -m bench.<scenario> --mode quick --json out.json``).
``mode`` is ``full`` (``make bench``), ``quick`` (``make bench-quick``) or
``tiny`` (the smoke test: seconds, numbers meaningless).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MODES = ("full", "quick", "tiny")


# -- events ------------------------------------------------------------------


def order_body(index: int, *, valid: bool = True) -> str:
    """The JSON body of one ``OrderNew`` message; an invalid one lacks ``customerId``."""
    payload: dict[str, Any] = {"orderId": f"order-{index}"}
    if valid:
        payload["customerId"] = f"customer-{index % 97}"
    return json.dumps({"type": "OrderNew", "payload": payload})


#: The payload of the contact form submission that the ingestion scenario posts.
CONTACT_PAYLOAD = {
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "message": "Hello, is there a plan for teams of five?",
    "timestamp": "2026-01-01T12:00:00.000Z",
    "query": {"utm_source": "newsletter"},
}


def contact_request() -> bytes:
    """A ``POST /`` body as LetsGo's queue client sends it: ``{"Records": [...]}`` with one ``letsgo:contact``."""
    from host.services.enqueue import local_request_body, message_body

    body = message_body({"type": "letsgo:contact", "payload": CONTACT_PAYLOAD})
    return json.dumps(local_request_body(body)).encode()


def sqs_record(body: str, *, message_id: str | None = None, sent_ms: int | None = None) -> dict[str, Any]:
    """An SQS record as Lambda's event source mapping delivers it (every attribute present)."""
    now_ms = int(time.time() * 1000) if sent_ms is None else sent_ms
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex * 4,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(now_ms),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(now_ms + 2),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:letsgo-worker-queue",
        "awsRegion": "us-east-1",
    }


def order_event(batch: int, size: int = 10, invalid_every: int = 0) -> dict[str, Any]:
    """An SQS event of ``size`` OrderNew records; every ``invalid_every``-th record is invalid."""
    records = []
    for i in range(size):
        index = batch * size + i
        valid = not (invalid_every and i % invalid_every == invalid_every - 1)
        records.append(sqs_record(order_body(index, valid=valid)))
    return {"Records": records}


def typed_event(type_: str, payloads: list[Any]) -> dict[str, Any]:
    """An SQS event with one record per payload, all of message type ``type_``."""
    return {"Records": [sqs_record(json.dumps({"type": type_, "payload": p})) for p in payloads]}


class LambdaContext:
    """The attributes and method of the context object the Lambda Python runtime passes."""

    function_name = "letsgo-worker"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:letsgo-worker"
    memory_limit_in_mb = "1024"
    log_group_name = "/aws/lambda/letsgo-worker"
    log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
    identity = None
    client_context = None

    def __init__(self, timeout_ms: int = 900_000) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until the simulated deadline, never negative."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# -- environment ---------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any LETSGO_/PORT setting, plus ``extra``.

    Every subject of a comparison runs with the same environment, and a
    developer's own settings do not leak into the numbers.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETSGO_") and k != "PORT"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


#: What a Lambda execution environment sets; with it, ``lambda_entry`` configures its JSON logging.
LAMBDA_ENVIRON = {
    "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
    "AWS_LAMBDA_FUNCTION_NAME": "letsgo-worker",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_REGION": "us-east-1",
}
PLUGIN_DIRS = ("plugins/letsgo_stripe", "plugins/letsgo_slack", "plugins/example_orders")


def lambda_like_environ() -> dict[str, str]:
    """Environment of a process laid out like a Lambda image, for ``python -S``.

    ``-S`` skips ``site``: no ``.pth`` files (the development install's editable
    finders), no ``sitecustomize``; the packages are found on PYTHONPATH as in
    an image's ``/var/task``, and entry points from their metadata as usual.
    """
    import sysconfig

    paths = [str(ROOT), *(str(ROOT / d) for d in PLUGIN_DIRS), sysconfig.get_paths()["purelib"]]
    return clean_environ(PYTHONPATH=os.pathsep.join(paths), **LAMBDA_ENVIRON)


@contextlib.contextmanager
def stdout_to(path: Path):
    """Send file descriptor 1 (and so every logger writing to standard output) to ``path``."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "ab") as file:
        os.dup2(file.fileno(), 1)
    try:
        yield path
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def isolated_cwd():
    """Run in a fresh empty directory (no ``.env``, no queue file), restored afterwards."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="letsgo-bench-") as directory:
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- statistics --------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rotated(items: list[Any], round_: int) -> list[Any]:
    """``items`` rotated by ``round_``: alternate who goes first so drift hits everyone."""
    shift = round_ % len(items)
    return items[shift:] + items[:shift]


# -- results -------------------------------------------------------------------


@dataclass
class Measure:
    """One measured number: ``subject`` (letsgo, limit, peer...) and what was measured."""

    metric: str
    subject: str
    value: float
    unit: str
    detail: str = ""


@dataclass
class Target:
    """A target of the issue: ``ratio`` (or value) compared with ``bound``.

    ``before`` is the figure before the current round of work, shown beside the
    new one; ``value`` is None when the target could not be measured, and
    ``unmeasured`` then says why.
    """

    name: str
    value: float | None
    bound: float
    op: str  # "<=" or ">="
    unit: str = "x"
    before: str = ""
    unmeasured: str = ""

    @property
    def met(self) -> bool:
        """True when the measured value is on the right side of the bound."""
        if self.value is None:
            return False
        return self.value <= self.bound if self.op == "<=" else self.value >= self.bound

    @property
    def miss(self) -> str:
        """By how much the target is missed, in percent of the bound ('' when met or not measured)."""
        if self.met or self.value is None:
            return ""
        return f"{abs(self.value - self.bound) / self.bound * 100:.0f}% {'over' if self.op == '<=' else 'under'}"


@dataclass
class Result:
    """What one scenario produced."""

    scenario: str
    title: str
    mode: str
    method: str
    measures: list[Measure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    profile: str = ""
    seconds: float = 0.0

    def measure(self, metric: str, subject: str, value: float, unit: str, detail: str = "") -> float:
        """Record a measurement and return its value."""
        self.measures.append(Measure(metric, subject, float(value), unit, detail))
        return value

    def target(self, name: str, value: float, bound: float, op: str, unit: str = "x", *, before: str = "") -> Target:
        """Record a target's measured value, with the figure ``before`` this round of work."""
        target = Target(name, float(value), bound, op, unit, before)
        self.targets.append(target)
        return target

    def unmeasured(self, name: str, why: str, bound: float, op: str, unit: str = "x", *, before: str = "") -> Target:
        """Record a target that could not be measured, and why (never a made-up figure)."""
        target = Target(name, None, bound, op, unit, before, why)
        self.targets.append(target)
        return target

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with each target's ``met`` and ``miss``."""
        data = asdict(self)
        for target, raw in zip(self.targets, data["targets"]):
            raw["met"] = target.met
            raw["miss"] = target.miss
        return data


def scenario_main(run, argv: list[str] | None = None) -> int:
    """Command line of a scenario module: run it and print (or write) its JSON result."""
    parser = argparse.ArgumentParser(description=(run.__module__ or "").split(".")[-1])
    parser.add_argument("--mode", choices=MODES, default="quick")
    parser.add_argument("--json", metavar="FILE", help="write the result here (default: stdout)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(args.mode)
    result.seconds = round(time.perf_counter() - started, 2)
    text = json.dumps(result.to_json(), indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return 0


def fmt(value: float) -> str:
    """A number printed with about three significant digits."""
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def python_exe() -> str:
    """The interpreter running the benchmarks (the project's venv under ``make bench``)."""
    return sys.executable


def tidy_paths(text: str) -> str:
    """``text`` with this machine's directories shortened (profiles are published in RESULTS.md)."""
    import sysconfig

    for path, short in ((sysconfig.get_paths()["purelib"], "site-packages"), (sysconfig.get_paths()["stdlib"], "stdlib"),
                        (str(ROOT), ".")):
        text = text.replace(path + "/", short + "/" if short != "." else "")
    return text
