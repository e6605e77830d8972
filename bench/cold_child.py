"""One cold start: a new interpreter imports a handler module, handles one batch and exits.

``python bench/cold_child.py SUBJECT EVENT.json [ENTRY_POINTS.json]`` where SUBJECT
is ``letsgo`` (``lambda_entry``, reading the plugins' entry points from
ENTRY_POINTS.json as in the image the Dockerfile builds, or, without it,
scanning the installed distributions), ``limit`` or ``peer``. Prints one JSON line: in-process import, plugin discovery
(letsgo) and first-batch times and the batch's failures (so a broken subject cannot look fast).
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

MODULES = {"letsgo": "lambda_entry", "limit": "limit_handler", "peer": "peer_handler"}


class Context:
    """Just enough of the Lambda context object."""

    function_name = "letsgo-worker"
    memory_limit_in_mb = "1024"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:letsgo-worker"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self):
        return 900_000


def main() -> None:
    subject, event_path = sys.argv[1], sys.argv[2]
    with open(event_path) as file:
        event = json.load(file)
    before_import = time.perf_counter()
    module = __import__(MODULES[subject])
    imported = time.perf_counter()
    if subject == "letsgo":
        # The first invocation would do this itself; timed apart to show where the time goes.
        from host.core.worker import get_worker, use_entry_point_cache

        # In the image the file sits beside lambda_entry.py; here it is the one the bench froze.
        use_entry_point_cache(sys.argv[3] if len(sys.argv) > 3 else None)

        get_worker()
    discovered = time.perf_counter()
    response = module.handler(event, Context())
    handled = time.perf_counter()
    print(json.dumps({
        "subject": subject,
        "import_ms": (imported - before_import) * 1000,
        "discovery_ms": (discovered - imported) * 1000,
        "first_batch_ms": (handled - discovered) * 1000,
        "in_process_ms": (handled - STARTED) * 1000,
        "failures": len(response["batchItemFailures"]),
        "records": len(event["Records"]),
    }))


main()
