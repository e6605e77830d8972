"""letsgo-stripe: a worker that never sees a Stripe message never imports the stripe SDK, nor its dispatch."""

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

    def loaded():
        return sorted(m for m in ("stripe", "letsgo_stripe.dispatch", "letsgo_stripe.webhook") if m in sys.modules)

    worker = Worker(Settings.from_env({"LETSGO_WORKER_PLUGINS": "letsgo_stripe,example_orders"})).start()
    report = {"plugins": sorted(p.name for p in worker.plugins), "after_start": loaded()}
    report["order"] = run({"type": "OrderNew", "payload": {"orderId": "o-1", "customerId": "c-1"}})
    report["after_order"] = loaded()
    collect_routes(worker)
    report["after_routes"] = loaded()
    event = json.loads(sys.stdin.read())
    report["stripe"] = run({"type": "letsgo:stripe", "payload": {**event, "stripeMode": "TEST"}})
    report["after_stripe"] = loaded()
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
    # Starting (settings declared, handlers collected) and an OrderNew batch load none of the Stripe message path.
    assert report["after_start"] == report["after_order"] == []
    # The local server's routes bring the webhook module, still without the SDK.
    assert report["after_routes"] == ["letsgo_stripe.webhook"]
    assert report["stripe"] == {"batchItemFailures": []}
    assert report["after_stripe"] == ["letsgo_stripe.dispatch", "letsgo_stripe.webhook", "stripe"]
