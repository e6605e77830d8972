"""The Lambda entry point: event routing, scheduled ticks, ``letsgo-worker invoke``,
the real runtime interface client, and the AWS packaging (SAM template, Dockerfile).

Events are the real AWS samples in tests/fixtures/aws. Subprocess tests
find a probe plugin through real entry-point discovery (``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from host import hookimpl
from host.aws.events import UnsupportedEvent, handle_event
from host.core.ticks import ScheduledError
from host.testing import write_distribution

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "aws"
BIN = Path(sys.executable).parent
WAIT = 30  # upper bound for a subprocess or a reply that should come at once


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class Context:
    """A Lambda context counting down in real time."""

    aws_request_id = "0e3f5c1a-0000-4000-8000-00000000000a"

    def __init__(self, timeout_ms: int = 60_000) -> None:
        self.deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


# -- event routing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name,words",
    [
        ("eventbridge-event-ec2.powertools.json", ['source "aws.ec2"', "EC2 Instance State-change Notification"]),
        ("apigw-http-api-v2.powertools.json", ["routeKey", "requestContext"]),
        ("lambda-function-url.powertools.json", ["rawPath"]),
    ],
)
def test_unknown_events_say_what_was_received_and_what_is_accepted(make_worker, name, words):
    worker = make_worker(entry_points=False)
    with pytest.raises(UnsupportedEvent) as raised:
        handle_event(fixture(name), Context(), worker=worker)
    text = str(raised.value)
    assert text.startswith("unsupported event: received an object with keys [")
    for word in words:
        assert word in text
    assert '"aws:sqs"' in text and '"letsgo:local"' in text and '"Scheduled Event"' in text


def test_records_from_another_service_are_not_taken_for_an_sqs_batch(make_worker):
    s3_like = fixture("sqs-standard-batch.json")
    for record in s3_like["Records"]:
        record["eventSource"] = "aws:s3"
    sns_like = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}]}
    worker = make_worker(entry_points=False)
    for event, source in ((s3_like, '"aws:s3"'), (sns_like, '"aws:sns"')):
        with pytest.raises(UnsupportedEvent, match=f"record eventSource {source}"):
            handle_event(event, Context(), worker=worker)


def test_records_from_the_local_runtime_are_an_sqs_batch(make_worker, notifications):
    event = fixture("sqs-single-record.sam-cli.json")
    event["Records"][0]["eventSource"] = "letsgo:local"
    worker = make_worker(plugins=[notifications], entry_points=False)
    response = handle_event(event, None, worker=worker)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_the_entry_point_module_stays_light():
    """Lambda pays for imports on every cold start: no SDK before a message needs it."""
    code = "import sys, lambda_entry; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                            timeout=WAIT).stdout.replace("'", '"')))
    assert not loaded & {"boto3", "botocore", "stripe", "slack_sdk", "httpx", "cryptography", "jwt", "pydantic", "dotenv"}


# -- scheduled ticks ----------------------------------------------------------------


class Ticker:
    """A ``letsgo_scheduled`` implementation; ``mode`` is ok, fail, async or hang."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.calls: list[tuple[dict, object]] = []
        self.release = threading.Event()

    @hookimpl
    def letsgo_scheduled(self, event, ctx):
        self.calls.append((event, ctx))
        if self.mode == "fail":
            raise RuntimeError("nightly report failed")
        if self.mode == "hang":
            self.release.wait(WAIT)


class AsyncTicker:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    @hookimpl
    async def letsgo_scheduled(self, event, ctx):
        await asyncio.sleep(0)
        self.calls.append(event)


@pytest.mark.parametrize(
    "name,detail",
    [
        ("eventbridge-scheduler-event.powertools.json", "{}"),
        ("eventbridge-scheduled-event.json", {}),
        ("eventbridge-scheduled-event.sam-cli.json", {}),
    ],
)
def test_both_scheduled_shapes_call_every_hook_sync_and_async(make_worker, name, detail):
    sync, asynchronous = Ticker(), AsyncTicker()
    worker = make_worker(plugins=[sync, asynchronous], entry_points=False)
    event = fixture(name)
    context = Context()
    assert handle_event(event, context, worker=worker) is None
    [(seen, ctx)] = sync.calls
    assert seen == event and seen["detail"] == detail
    assert ctx.lambda_context is context and 0 < ctx.remaining_time_ms() <= 60_000
    assert asynchronous.calls == [event]


def test_a_failing_hook_fails_the_tick_after_every_other_hook_ran(make_worker):
    first, broken, last = Ticker(), Ticker("fail"), AsyncTicker()
    worker = make_worker(plugins=[first, broken, last], entry_points=False)
    event = fixture("eventbridge-scheduler-event.powertools.json")
    with pytest.raises(ScheduledError) as raised:
        handle_event(event, Context(), worker=worker)
    assert len(first.calls) == 1 and len(broken.calls) == 1 and last.calls == [event]
    assert raised.value.failures == [("Ticker-1", "RuntimeError: nightly report failed")]
    assert event["id"] in str(raised.value) and "'Ticker-1'" in str(raised.value)


def test_a_hook_still_running_at_the_deadline_fails_the_tick_in_time(make_worker):
    hung, fine = Ticker("hang"), Ticker()
    worker = make_worker(plugins=[hung, fine], env={"LETSGO_WORKER_DEADLINE_MARGIN_MS": "1000"}, entry_points=False)
    context = Context(1800)
    try:
        with pytest.raises(ScheduledError, match="still running") as raised:
            handle_event(fixture("eventbridge-scheduled-event.json"), context, worker=worker)
        assert context.get_remaining_time_in_millis() > 0
        assert [plugin for plugin, _ in raised.value.failures] == ["Ticker-0"]
        assert len(fine.calls) == 1
    finally:
        hung.release.set()


def test_a_tick_with_no_hooks_succeeds(make_worker):
    assert handle_event(fixture("eventbridge-scheduled-event.sam-cli.json"), None, worker=make_worker(entry_points=False)) is None


# -- subprocesses: the probe plugin ------------------------------------------------

PROBE = '''
"""A plugin that notes what it did in the file named by PROBE_LOG."""
import asyncio, json, os, time
from host import hookimpl


def note(**fields):
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(json.dumps(fields) + "\\n")


def ok(message, ctx):
    note(kind="message", id=ctx.message_id, remaining=ctx.remaining_time_ms())


def fail(message, ctx):
    raise ValueError("probe.fail always fails")


async def block(message, ctx):
    await asyncio.sleep(60)


def sync_block(message, ctx):
    time.sleep(60)


@hookimpl
def letsgo_register_messages(register):
    register("probe.ok", ok)
    register("probe.fail", fail)
    register("probe.block", block)
    register("probe.sync_block", sync_block)


@hookimpl
def letsgo_startup(worker):
    time.sleep(float(os.environ.get("PROBE_SLOW_START", "0")))


@hookimpl
def letsgo_scheduled(event, ctx):
    note(kind="tick", id=event.get("id"), detail=event.get("detail"), remaining=ctx.remaining_time_ms())
    if event.get("id") == "fail-me":
        raise RuntimeError("the tick failed on purpose")
'''


@pytest.fixture
def probe(tmp_path):
    """Environment for a subprocess that loads only the probe plugin; ``probe.notes()`` reads its log."""
    site = tmp_path / "site"
    write_distribution(site, "lambda-probe", "lambda_probe", PROBE)
    log = tmp_path / "probe.log"

    class Probe:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "AWS_"))},
            "PYTHONPATH": str(site),
            "PROBE_LOG": str(log),
            "LETSGO_WORKER_PLUGINS": "lambda_probe",
            "LETSGO_WORKER_ENV_FILE": str(tmp_path / "absent.env"),
            "PYTHONUNBUFFERED": "1",
        }

        @staticmethod
        def notes() -> list[dict]:
            return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

        @staticmethod
        def event_file(event: dict) -> str:
            path = tmp_path / f"event-{uuid.uuid4().hex}.json"
            path.write_text(json.dumps(event))
            return str(path)

    return Probe()


def sqs_batch(*bodies: object) -> dict:
    """The AWS standard-queue sample with one record per body (ids ``p0``, ``p1``...)."""
    template = fixture("sqs-standard-batch.json")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = json.loads(json.dumps(template))
        record["messageId"] = f"p{index}"
        record["body"] = body if isinstance(body, str) else json.dumps(body)
        records.append(record)
    return {"Records": records}


# -- letsgo-worker invoke ---------------------------------------------------------


def invoke(probe, *args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "letsgo-worker"), "invoke", *args], input=stdin, capture_output=True, text=True,
        env={**probe.env, **(env or {})}, timeout=WAIT,
    )


def last_line(output: str):
    return json.loads(output.strip().splitlines()[-1])


def test_invoke_prints_the_batch_response_as_the_last_line(probe):
    event = sqs_batch({"type": "probe.ok"}, {"type": "probe.fail"}, "Test message.")
    done = invoke(probe, probe.event_file(event), "--timeout-ms", "20000")
    assert done.returncode == 0, done.stderr
    assert last_line(done.stdout) == {"batchItemFailures": [{"itemIdentifier": "p1"}, {"itemIdentifier": "p2"}]}
    [note] = probe.notes()
    assert note["id"] == "p0" and 0 < note["remaining"] <= 20_000
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [line["message_id"] for line in logs if line.get("outcome") in ("failed", "rejected")] == ["p1", "p2"]
    assert any(line.get("records") == 3 for line in logs)


def test_invoke_reads_the_event_from_stdin(probe):
    done = invoke(probe, "-", stdin=json.dumps(fixture("eventbridge-scheduler-event.powertools.json")))
    assert done.returncode == 0, done.stderr
    assert last_line(done.stdout) is None
    assert [(n["kind"], n["detail"]) for n in probe.notes()] == [("tick", "{}")]


def test_invoke_exits_non_zero_with_the_lambda_error_when_the_handler_raises(probe):
    failing_tick = fixture("eventbridge-scheduled-event.json") | {"id": "fail-me"}
    done = invoke(probe, probe.event_file(failing_tick))
    assert done.returncode == 1
    error = last_line(done.stdout)
    assert error["errorType"] == "ScheduledError" and "the tick failed on purpose" in error["errorMessage"]
    unknown = invoke(probe, str(FIXTURES / "eventbridge-event-ec2.powertools.json"))
    assert unknown.returncode == 2  # the event's mistake: bad input
    assert last_line(unknown.stdout)["errorType"] == "UnsupportedEvent"
    assert "letsgo-worker invoke: error: unsupported event: received an object" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_invoke_refuses_a_missing_or_broken_event_file(probe, tmp_path):
    missing = invoke(probe, str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read event file" in missing.stderr and missing.stdout == ""
    broken = tmp_path / "broken.json"
    broken.write_text('{"Records": [')
    bad = invoke(probe, str(broken))
    assert bad.returncode == 2 and "is not valid JSON" in bad.stderr


def test_invoke_times_out_like_lambda(probe):
    """A start-up slower than the timeout is cut off, as Lambda does, with its error shape."""
    done = invoke(probe, str(FIXTURES / "sqs-standard-batch.json"), "--timeout-ms", "300", env={"PROBE_SLOW_START": "20"})
    assert done.returncode == 1
    error = last_line(done.stdout)
    assert error["errorType"] == "Sandbox.Timedout" and "Task timed out after 0.30 seconds" in error["errorMessage"]


def test_invoke_returns_at_the_deadline_without_waiting_for_a_stuck_sync_handler(probe):
    event = sqs_batch({"type": "probe.sync_block"}, {"type": "probe.ok"})
    done = invoke(probe, probe.event_file(event), "--timeout-ms", "3000")  # the handler sleeps 60 s; WAIT is 30 s
    assert done.returncode == 0, done.stderr
    assert last_line(done.stdout) == {"batchItemFailures": [{"itemIdentifier": "p0"}]}
    assert "still running after the handler returned" in done.stderr


# -- the real runtime interface client ------------------------------------------------


class RuntimeAPI:
    """A Lambda Runtime API on 127.0.0.1: hands out queued events, records what the runtime posts."""

    PREFIX = "/2018-06-01/runtime"

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict, int]] = []  # request id, event, timeout in ms
        self.posted: dict[str, tuple[str, object]] = {}
        self.init_errors: list[object] = []
        self.changed = threading.Condition()
        self.stopping = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{api.PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                with api.changed:
                    api.changed.wait_for(lambda: api.pending or api.stopping, timeout=WAIT)
                    if not api.pending:
                        self.send_error(503)
                        return
                    request_id, event, timeout_ms = api.pending.pop(0)
                # As in Lambda, the invocation's clock starts when the runtime receives it.
                deadline_ms = int(time.time() * 1000) + timeout_ms
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:letsgo-worker")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                parts = self.path[len(api.PREFIX):].strip("/").split("/")
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with api.changed:
                    if parts[:2] == ["init", "error"]:
                        api.init_errors.append(body)
                    elif parts[0] == "invocation" and parts[2] in ("response", "error"):
                        api.posted[parts[1]] = (parts[2], body)
                    api.changed.notify_all()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def invoke(self, event: dict, timeout_ms: int = 60_000) -> str:
        request_id = str(uuid.uuid4())
        with self.changed:
            self.pending.append((request_id, event, timeout_ms))
            self.changed.notify_all()
        return request_id

    def result(self, request_id: str) -> tuple[str, object]:
        with self.changed:
            self.changed.wait_for(lambda: request_id in self.posted or self.init_errors, timeout=WAIT)
        assert not self.init_errors, self.init_errors
        return self.posted[request_id]

    def stop(self) -> None:
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()


def test_the_entry_point_under_the_real_lambda_runtime_interface_client(probe):
    api = RuntimeAPI()
    api.thread.start()
    env = {**probe.env, "AWS_LAMBDA_RUNTIME_API": api.address, "AWS_LAMBDA_FUNCTION_NAME": "letsgo-worker",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}
    runtime = subprocess.Popen([sys.executable, "-m", "awslambdaric", "lambda_entry.handler"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        batch = api.invoke(sqs_batch({"type": "probe.ok"}, "Test message.", {"type": "probe.fail"}))
        tick = api.invoke(fixture("eventbridge-scheduler-event.powertools.json"))
        failed_tick = api.invoke(fixture("eventbridge-scheduled-event.json") | {"id": "fail-me"})
        unknown = api.invoke(fixture("eventbridge-event-ec2.powertools.json"))
        # 2 s left and a 1 s margin: the runtime's own context drives the deadline guard.
        short = api.invoke(sqs_batch({"type": "probe.block"}, {"type": "probe.ok"}), timeout_ms=2000)

        assert api.result(batch) == ("response", {"batchItemFailures": [{"itemIdentifier": "p1"}, {"itemIdentifier": "p2"}]})
        assert api.result(tick) == ("response", None)
        kind, error = api.result(failed_tick)
        assert kind == "error" and error["errorType"] == "ScheduledError"
        assert "the tick failed on purpose" in error["errorMessage"]
        kind, error = api.result(unknown)
        assert kind == "error" and error["errorType"] == "UnsupportedEvent"
        assert 'source "aws.ec2"' in error["errorMessage"]
        assert api.result(short) == ("response", {"batchItemFailures": [{"itemIdentifier": "p0"}]})

        notes = probe.notes()
        assert [n["id"] for n in notes if n["kind"] == "message"] == ["p0", "p1"]
        assert all(0 < n["remaining"] <= 60_000 for n in notes)
        assert [n["detail"] for n in notes if n["kind"] == "tick"] == ["{}", {}]
    finally:
        runtime.terminate()
        try:
            output, _ = runtime.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            runtime.kill()
            output, _ = runtime.communicate()
        api.stop()
    # In Lambda the worker's logs are JSON lines on standard output.
    logs = [json.loads(line) for line in output.splitlines() if line.startswith('{"time"')]
    summaries = [line for line in logs if line["logger"] == "letsgo.batch" and "records" in line]
    assert [s["records"] for s in summaries] == [3, 2]
    assert summaries[1]["deadline_reached"] is True and summaries[1]["request_id"] == short


# -- packaging ------------------------------------------------------------------------


def load_template() -> dict:
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(ROOT / "template.yaml"))


def test_cfn_lint_passes_on_the_sam_template():
    done = subprocess.run([str(BIN / "cfn-lint"), str(ROOT / "template.yaml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_event_source_mapping_reports_partial_failures_with_the_letsgo_defaults():
    template = load_template()
    parameters = template["Parameters"]
    function = template["Resources"]["Worker"]["Properties"]
    messages = function["Events"]["Messages"]
    assert messages["Type"] == "SQS"
    properties = messages["Properties"]
    assert properties["Queue"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    defaults = {
        name: parameters[name]["Default"]
        for name in ("BatchSize", "MaximumBatchingWindowInSeconds", "MaximumConcurrency")
    }
    assert defaults == {"BatchSize": 10, "MaximumBatchingWindowInSeconds": 2, "MaximumConcurrency": 5}
    assert properties["BatchSize"] == {"Ref": "BatchSize"}
    assert properties["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    assert properties["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}


def test_the_queue_dead_letters_and_outlasts_six_function_timeouts():
    template = load_template()
    queue = template["Resources"]["Queue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    assert template["Resources"]["Worker"]["Properties"]["Timeout"] == {"Ref": "FunctionTimeout"}
    assert queue["VisibilityTimeout"] == {"Fn::FindInMap": ["VisibilityTimeouts", {"Ref": "FunctionTimeout"}, "Seconds"]}
    mapping = template["Mappings"]["VisibilityTimeouts"]
    allowed = template["Parameters"]["FunctionTimeout"]["AllowedValues"]
    for timeout in allowed:
        assert mapping[str(timeout)]["Seconds"] >= 6 * timeout
    assert template["Parameters"]["FunctionTimeout"]["Default"] in allowed


def test_the_schedule_comes_from_the_expression_and_time_zone_parameters():
    template = load_template()
    ticks = template["Resources"]["Worker"]["Properties"]["Events"]["Ticks"]
    assert ticks["Type"] == "ScheduleV2"
    assert ticks["Properties"]["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert ticks["Properties"]["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert "Input" not in ticks["Properties"], "without Input the function gets Scheduler's 'Scheduled Event'"
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "rate(1 hour)"


def test_every_reference_in_the_template_resolves():
    """cfn-lint does not expand SAM events, so check their Ref/GetAtt targets here."""
    template = load_template()
    known = set(template["Resources"]) | set(template["Parameters"]) | {"AWS::StackName", "AWS::NoValue", "AWS::Region", "AWS::AccountId"}
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref":
                    found.append(value)
                elif key == "Fn::GetAtt":
                    found.append(value[0] if isinstance(value, list) else value.split(".")[0])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(template["Resources"])
    walk(template.get("Outputs", {}))
    assert found and not [name for name in found if name not in known]


def test_the_dockerfile_builds_the_lambda_image_from_this_repository():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    # The Lambda image is the last stage: the default target, which `sam build` and `docker build .` build.
    last_stage = [line for line in lines if line.startswith("FROM ")][-1]
    assert last_stage in ("FROM public.ecr.aws/lambda/python:3.11 AS lambda", "FROM public.ecr.aws/lambda/python:3.12 AS lambda")
    assert lines[-1] == 'CMD ["lambda_entry.handler"]'
    defaults = dict(line[4:].split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line)
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                source = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)].strip('"'), source)  # an ARG's default
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    install = " ".join(line for line in lines if "pip install" in line)
    assert "-c constraints.txt" in install and " -e " not in install
    plugins = next(line for line in lines if line.startswith("ARG PLUGINS=")).split("=", 1)[1].strip('"').split()
    assert plugins and all((ROOT / plugin / "pyproject.toml").exists() for plugin in plugins)
    import lambda_entry

    assert callable(lambda_entry.handler)
