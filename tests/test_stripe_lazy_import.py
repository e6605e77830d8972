"""letsgo-stripe: a worker that never sees a Stripe message never imports the stripe SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from host.core.batch import process_sqs_event
    from host.config import Settings
    from host.local.routes import collect_routes
    from host.core.worker import Worker

    def record(message):
        return {"messageId": "m", "body": json.dumps(message), "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs"}

    def run(message):
        return process_sqs_event(worker, {"Records": [record(message)]}).response()

    worker = Worker(Settings.from_env({"LETSGO_WORKER_PLUGINS": "letsgo_stripe,example_orders"})).start()
    report = {"plugins": sorted(p.name for p in worker.plugins), "after_start": "stripe" in sys.modules}
    collect_routes(worker)
    report["after_routes"] = "stripe" in sys.modules
    report["order"] = run({"type": "OrderNew", "payload": {"orderId": "o-1", "customerId": "c-1"}})
    report["after_order"] = "stripe" in sys.modules
    event = json.loads(sys.stdin.read())
    report["stripe"] = run({"type": "letsgo:stripe", "payload": {**event, "stripeMode": "TEST"}})
    report["after_stripe"] = "stripe" in sys.modules
    print(json.dumps(report))
    """
)


def test_stripe_is_imported_only_when_a_stripe_message_arrives(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=(FIXTURES / "customer.created.json").read_text(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])

    assert {"letsgo_stripe", "example_orders"} <= set(report["plugins"])
    assert report["order"] == {"batchItemFailures": []}
    assert (report["after_start"], report["after_routes"], report["after_order"]) == (False, False, False)
    assert report["stripe"] == {"batchItemFailures": []}
    assert report["after_stripe"] is True
