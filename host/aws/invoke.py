"""``letsgo-worker invoke EVENT.json``: run ``lambda_entry.handler`` once, as Lambda would.

Like ``sam local invoke`` without Docker: the handler gets the event and a
Lambda-like context whose remaining time counts down from ``--timeout-ms``; the
JSON result is the last line of standard output and logs go to standard error.
Exit status 0 when the handler returned; 1 when it raised (the Lambda error
object is printed instead) or ran past the timeout; 2 for a bad event file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
import uuid
from typing import Any

from host.config import Settings

#: Exit status when the event file cannot be read.
EXIT_USAGE = 2
#: Exit status when the handler raised or timed out.
EXIT_FAILED = 1


class CognitoIdentity:
    """The context's ``identity``: empty outside mobile apps, as in the Lambda runtime."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


class LambdaContext:
    """A context object with the attributes and method of the Lambda Python runtime's.

    ``get_remaining_time_in_millis()`` counts down from ``timeout_ms`` (never
    below 0). Names come from the ``AWS_LAMBDA_*`` variables of ``settings``
    (default: read from the environment) when set.
    """

    def __init__(self, timeout_ms: int, *, function_name: str | None = None, region: str | None = None,
                 settings: Settings | None = None) -> None:
        settings = settings if settings is not None else Settings.from_env()
        self.function_name = function_name or settings.lambda_function_name or "letsgo-worker"
        self.function_version = settings.lambda_function_version or "$LATEST"
        region = region or settings.aws_region or "us-east-1"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{self.function_name}"
        self.memory_limit_in_mb = settings.lambda_memory_size or "128"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the simulated timeout, 0 once it has passed."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def read_event(path: str) -> Any:
    """The event in ``path`` (``-`` for standard input); raise ValueError saying what is wrong."""
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as error:
        raise ValueError(f"cannot read event file {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"event file {path!r} is not UTF-8 text: {error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"event file {path!r} is not valid JSON: {error}") from None


def error_object(error: BaseException) -> dict[str, Any]:
    """The error document Lambda returns for an invocation whose handler raised."""
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
    }


def _print_last_line(document: Any) -> None:
    sys.stderr.flush()
    print(json.dumps(document, default=str), flush=True)


def cli_invoke(args: argparse.Namespace) -> int:
    """``letsgo-worker invoke EVENT.json [--timeout-ms N]``: run the Lambda handler on an event file."""
    if args.timeout_ms is None or args.timeout_ms < 1:
        print(f"letsgo-worker: error: --timeout-ms must be a positive number of milliseconds, got {args.timeout_ms}", file=sys.stderr)
        return EXIT_USAGE
    try:
        event = read_event(args.event)
    except ValueError as error:
        print(f"letsgo-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    import lambda_entry
    from host.aws.events import UnsupportedEvent
    from host.core.logs import configure_logging

    # After importing the entry point, which sets up stdout logging inside a Lambda environment:
    # here standard output carries only the result.
    settings = Settings.from_env()
    configure_logging(settings.log_level, stream=sys.stderr, log_format=settings.log_format)
    context = LambdaContext(args.timeout_ms)
    watchdog = _Watchdog(args.timeout_ms, context)
    watchdog.start()
    try:
        result = lambda_entry.handler(event, context)
    except Exception as error:
        if not watchdog.settle():
            return EXIT_FAILED  # the watchdog already reported the timeout
        document = error_object(error)
        document["requestId"] = context.aws_request_id
        if isinstance(error, UnsupportedEvent):
            # The event file's mistake, not the handler's: one line says what arrived and what is accepted.
            print(f"letsgo-worker invoke: error: {error}", file=sys.stderr)
            status = EXIT_USAGE
        else:
            traceback.print_exception(error, file=sys.stderr)
            status = EXIT_FAILED
        _print_last_line(document)
    else:
        if not watchdog.settle():
            return EXIT_FAILED
        _print_last_line(result)
        status = 0
    _exit_without_waiting_for_overrunning_handlers(status)
    return status


class _Watchdog:
    """Ends the process the way Lambda ends an invocation that runs past its timeout."""

    def __init__(self, timeout_ms: int, context: LambdaContext) -> None:
        self._timer = threading.Timer(timeout_ms / 1000, self._fire)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._done = False
        self._timeout_ms = timeout_ms
        self._context = context

    def start(self) -> None:
        self._timer.start()

    def settle(self) -> bool:
        """Called when the handler is done: False if the timeout already fired."""
        with self._lock:
            if self._done:
                return False
            self._done = True
        self._timer.cancel()
        return True

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        message = f"RequestId: {self._context.aws_request_id} Error: Task timed out after {self._timeout_ms / 1000:.2f} seconds"
        print(f"letsgo-worker: {message}", file=sys.stderr)
        _print_last_line({"errorType": "Sandbox.Timedout", "errorMessage": message})
        os._exit(EXIT_FAILED)


def _exit_without_waiting_for_overrunning_handlers(status: int) -> None:
    """Leave at once if handler threads outlived the invocation (Lambda would freeze them).

    Interpreter exit joins every pool thread; a sync handler that overran the
    deadline would hold the command until it finished.
    """
    from host.core.worker import reset_worker

    reset_worker()
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in busy:
        thread.join(timeout=0.2)
    still = [t.name for t in busy if t.is_alive()]
    if still:
        print(f"letsgo-worker: {len(still)} handler thread(s) still running after the handler returned; "
              "exiting without waiting for them", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
