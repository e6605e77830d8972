"""The files ``letsgo-worker new plugin`` writes, as templates.

Each template is plain text with ``{{name}}`` placeholders (not ``str.format``:
the files are full of braces). :func:`render` fills them; the parts between
``{{#schedules}}`` and ``{{/schedules}}`` are kept only when the host has the
``letsgo_register_schedules`` hook, so a plugin generated before that hook
existed still installs and passes its tests.
"""

from __future__ import annotations

import re

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "A letsgo-worker plugin: the {{type}} message type"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["letsgo-worker", "pydantic>=2"]

[project.optional-dependencies]
# Stripe events reach the handler in plugin.py only when letsgo-stripe is installed.
stripe = ["letsgo-stripe"]

# The worker finds the plugin through this entry point; its name is the plugin's name
# (in `letsgo-worker plugins`, logs, LETSGO_WORKER_PLUGINS and LETSGO_WORKER_DISABLE_PLUGINS).
[project.entry-points.letsgo_worker]
{{module}} = "{{module}}.plugin"

[tool.setuptools]
packages = ["{{module}}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

INIT = '''\
"""{{distribution}}: a letsgo-worker plugin. The hooks are in :mod:`{{module}}.plugin`."""
'''

PLUGIN = '''\
"""{{distribution}}: the {{type}} message type, a Stripe handler{{#schedules}} and a named schedule{{/schedules}}.

The worker loads this module through the ``letsgo_worker`` entry point declared in
``pyproject.toml`` and calls the hooks marked ``@hookimpl`` below. Delivery is at least
once: a handler may see the same message twice, so keep every handler idempotent.
"""

from __future__ import annotations

from pydantic import BaseModel

from host import Message, MessageContext, hookimpl

#: The message type this plugin adds. Types starting with "letsgo:" are reserved.
MESSAGE_TYPE = "{{type}}"


class {{model}}(BaseModel):
    """Payload of ``{{type}}``, validated before the handler runs.

    A message whose payload does not match is rejected: it goes to the dead-letter
    queue with the validation error as its reason, and the handler never sees it.
    """

    name: str
    count: int = 1


async def handle_{{snake}}(message: Message[{{model}}], ctx: MessageContext) -> None:
    """Handle one ``{{type}}`` message: replace the body with your own work.

    Returning marks the message done; raising fails it, and it is retried with
    back-off, then dead-lettered with the error. ``ctx.logger`` lines carry the
    message id, type and plugin; ``ctx.notify`` reaches every sink (Slack...).
    """
    payload = message.payload
    ctx.logger.info("{{type}} for %s (count %d)", payload.name, payload.count)
    if ctx.notifies:
        await ctx.anotify(f"{{type}}: {payload.name} x{payload.count}")


@hookimpl
def letsgo_register_messages(register):
    """Register ``{{type}}`` with its payload model and handler."""
    register(MESSAGE_TYPE, handle_{{snake}}, payload={{model}}, description="An example message of {{distribution}}")


async def on_invoice_paid(event, ctx: MessageContext) -> None:
    """Handle Stripe's ``invoice.paid``: ``event`` is a ``stripe.Event``, ``event.data.object`` the invoice.

    Runs only when letsgo-stripe is installed (``pip install {{distribution}}[stripe]``);
    without it this hook is never called. A raise fails the ``letsgo:stripe`` message,
    which is retried.
    """
    invoice = event.data.object
    ctx.logger.info("invoice %s paid: %s %s", invoice.id, invoice.amount_paid, invoice.currency)


@hookimpl
def letsgo_stripe_handlers(register):
    """letsgo-stripe's hook: register a handler per Stripe event type."""
    register("invoice.paid", on_invoice_paid)
{{#schedules}}


def nightly_report(event, ctx) -> None:
    """The ``{{schedule}}`` schedule's work: ``event`` is the scheduled tick, ``ctx`` its context.

    Locally ``letsgo-worker serve`` fires it; in AWS it is one EventBridge Scheduler
    schedule (``letsgo-worker schedules``). A raise is logged and the next fire still comes.
    """
    ctx.logger.info("nightly report at %s", event.get("time"))


#: The schedule's name: unique among every plugin's, and its EventBridge Scheduler name in AWS.
NIGHTLY_SCHEDULE = "{{schedule}}"


@hookimpl
def letsgo_register_schedules(register):
    """Register this plugin's named schedules: name, expression, handler, zone and description."""
    register(
        NIGHTLY_SCHEDULE, "cron(0 3 * * ? *)", nightly_report,
        timezone="UTC", description="Every day at 03:00 UTC",
    )
{{/schedules}}
'''

CONFTEST = '''\
"""The fixtures of ``host.testing`` (``worker``, ``make_worker``, ``notifications``) come with letsgo-worker."""
'''

TESTS = '''\
"""Tests of {{distribution}}, with the fixtures and factories of ``host.testing``.

Run them with ``pytest`` after ``pip install -e .``: the ``worker`` fixture loads the
installed plugins through their entry points, as the real worker does.
"""

from __future__ import annotations

import logging

import pytest

from host.testing import run_batch
from {{module}} import plugin


def test_a_valid_message_succeeds_and_notifies(worker, notifications):
    message = {"type": plugin.MESSAGE_TYPE, "payload": {"name": "Ada", "count": 2}}

    result = run_batch(worker, message)

    assert result.response() == {"batchItemFailures": []}
    assert notifications.texts == ["{{type}}: Ada x2"]


def test_a_payload_that_does_not_match_the_model_is_rejected(worker):
    result = run_batch(worker, {"type": plugin.MESSAGE_TYPE, "payload": {"count": "many"}}, message_id="m-1")

    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    [outcome] = result.outcomes
    assert outcome.status.value == "rejected"
    assert "name" in outcome.reason


def test_the_stripe_handler_runs_for_invoice_paid(make_worker, notifications, caplog):
    stripe_testing = pytest.importorskip("letsgo_stripe.testing", reason="letsgo-stripe is not installed")
    worker = make_worker(plugins=[notifications], env={"LETSGO_WORKER_PLUGINS": "letsgo_stripe,{{module}}"})
    event = {
        "id": "evt_test_1", "object": "event", "type": "invoice.paid",
        "data": {"object": {"id": "in_test_1", "object": "invoice", "amount_paid": 1999, "currency": "usd"}},
    }

    with caplog.at_level(logging.INFO, logger="letsgo.plugin"):
        result = run_batch(worker, stripe_testing.stripe_message(event))

    assert result.response() == {"batchItemFailures": []}
    assert "invoice in_test_1 paid: 1999 usd" in caplog.text
{{#schedules}}


def test_the_nightly_schedule_runs_through_the_worker(worker, caplog):
    from host.testing import run_scheduled

    assert plugin.NIGHTLY_SCHEDULE in {schedule.name for schedule in worker.schedules}
    with caplog.at_level(logging.INFO, logger="letsgo.plugin"):
        run_scheduled(worker, name=plugin.NIGHTLY_SCHEDULE)
    assert "nightly report at" in caplog.text
{{/schedules}}
'''

README = '''\
# {{distribution}}

A [letsgo-worker](https://pypi.org/project/letsgo-worker/) plugin. It adds:

- the `{{type}}` message type, with its payload model `{{model}}` and its handler;
- a handler of Stripe's `invoice.paid` (through letsgo-stripe's `letsgo_stripe_handlers` hook);
{{#schedules}}- a named schedule, `{{schedule}}`, every day at 03:00 UTC (`letsgo-worker schedules` lists it);
{{/schedules}}
All of it is in `{{module}}/plugin.py`, commented.

## Develop

```sh
pip install -e .          # the worker now finds the plugin: letsgo-worker plugins
pytest                    # the tests use host.testing's fixtures
```

Send it a message on a running `letsgo-worker serve`:

```sh
letsgo-worker send {{type}} '{"name": "Ada", "count": 2}'
```

`letsgo-worker types` lists the type and its payload's fields; a payload that does not
match is refused by `send` before it is sent, and by the worker (dead-lettered with the
reason) when it comes another way.

## Deploy

Build a wheel (`pip wheel --no-deps -w dist .`) and install it into the worker's image;
see letsgo-worker's `docs/deploy-plugins.md`.
'''

#: Path inside the new plugin's folder -> template, in the order they are written.
FILES: dict[str, str] = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "{{module}}/__init__.py": INIT,
    "{{module}}/plugin.py": PLUGIN,
    "tests/conftest.py": CONFTEST,
    "tests/test_plugin.py": TESTS,
}

_SECTION = re.compile(r"\{\{#(\w+)\}\}(.*?)\{\{/\1\}\}", re.DOTALL)


def render(template: str, values: dict[str, str], sections: dict[str, bool]) -> str:
    """``template`` with each ``{{#section}}...{{/section}}`` kept or dropped and each ``{{name}}`` filled."""
    text = _SECTION.sub(lambda match: match.group(2) if sections.get(match.group(1)) else "", template)
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    return text
