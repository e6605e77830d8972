"""Plugin loading with real entry-point discovery: distributions on sys.path, not a mocked registry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from host.errors import PluginLoadError, RegistrationError, StartupError
from host import hookimpl
from host.testing import run_batch

INVOICES = textwrap.dedent(
    '''
    """A third-party plugin: the Invoices type."""
    from pydantic import BaseModel
    from host import hookimpl

    HANDLED = []

    class InvoiceDue(BaseModel):
        invoiceId: str

    def handle(message, ctx):
        HANDLED.append((message.payload.invoiceId, ctx.message_id, ctx.plugin))

    @hookimpl
    def letsgo_register_messages(register):
        register("InvoiceDue", handle, payload=InvoiceDue, description="An invoice is due")
    '''
)


def plugin_source(type_name: str) -> str:
    return textwrap.dedent(
        f'''
        from host import hookimpl

        @hookimpl
        def letsgo_register_messages(register):
            register({type_name!r}, lambda message, ctx: None)
        '''
    )


def test_installed_plugin_types_appear(install_plugin, make_worker):
    install_plugin("acme-invoices", "acme_invoices", INVOICES)
    worker = make_worker()
    entry = worker.registry.get("InvoiceDue")
    assert entry is not None
    assert (entry.plugin, entry.distribution, entry.description) == ("acme_invoices", "acme-invoices", "An invoice is due")
    info = next(p for p in worker.plugins if p.name == "acme_invoices")
    assert (info.distribution, info.version) == ("acme-invoices", "1.0.0")
    assert worker.plugin_hooks(info) == ["letsgo_register_messages"]

    result = run_batch(worker, {"type": "InvoiceDue", "payload": {"invoiceId": "in_1"}}, message_id="m-1")
    assert result.response() == {"batchItemFailures": []}
    import acme_invoices

    assert acme_invoices.HANDLED == [("in_1", "m-1", "acme_invoices")]


def test_example_orders_is_discovered_from_its_distribution(make_worker):
    worker = make_worker()
    entry = worker.registry.get("OrderNew")
    assert (entry.plugin, entry.distribution) == ("example_orders", "example-orders")
    assert entry.payload.__name__ == "OrderNew"


def test_disabled_plugin_types_vanish(install_plugin, make_worker):
    install_plugin("acme-invoices", "acme_invoices", INVOICES)
    worker = make_worker(env={"LETSGO_WORKER_DISABLE_PLUGINS": "acme_invoices, example_orders"})
    assert "InvoiceDue" not in worker.registry
    assert "OrderNew" not in worker.registry
    assert {p.name for p in worker.plugins}.isdisjoint({"acme_invoices", "example_orders"})


def test_only_listed_plugins_load_and_builtins_stay(install_plugin, make_worker):
    install_plugin("acme-invoices", "acme_invoices", INVOICES)
    worker = make_worker(env={"LETSGO_WORKER_PLUGINS": "acme_invoices"})
    names = {p.name for p in worker.plugins}
    assert "acme_invoices" in names and "letsgo_builtins" in names
    assert names.isdisjoint({"example_orders", "letsgo_stripe", "letsgo_slack"})


def test_empty_plugin_list_loads_no_third_party_plugin(make_worker):
    worker = make_worker(env={"LETSGO_WORKER_PLUGINS": ""})
    assert [p.name for p in worker.plugins] == ["letsgo_builtins"]


def test_unknown_name_in_plugin_list_is_reported(make_worker):
    worker = make_worker(env={"LETSGO_WORKER_PLUGINS": "no_such_plugin"})
    assert any("no_such_plugin" in problem.message for problem in worker.problems)


def test_broken_plugin_is_reported_by_name_and_the_rest_work(install_plugin, make_worker, caplog):
    install_plugin("acme-broken", "acme_broken", "raise ImportError('missing dependency: frobnicate')\n")
    install_plugin("acme-invoices", "acme_invoices", INVOICES)
    worker = make_worker()
    (problem,) = [p for p in worker.problems if p.plugin == "acme_broken"]
    assert problem.distribution == "acme-broken"
    assert "Error importing plugin 'acme_broken' (distribution 'acme-broken')" in problem.message
    assert "missing dependency: frobnicate" in problem.message
    assert "InvoiceDue" in worker.registry and "OrderNew" in worker.registry
    assert "acme_broken" in caplog.text


def test_strict_mode_makes_a_broken_plugin_a_startup_error(install_plugin, make_worker):
    install_plugin("acme-broken", "acme_broken", "1/0\n")
    with pytest.raises(PluginLoadError) as raised:
        make_worker(env={"LETSGO_WORKER_STRICT_PLUGINS": "1"})
    assert raised.value.entry_point == "acme_broken"
    assert raised.value.distribution == "acme-broken"
    assert "ZeroDivisionError" in str(raised.value)


def test_duplicate_type_names_both_plugins(install_plugin, make_worker):
    install_plugin("acme-one", "acme_one", plugin_source("Shared"))
    install_plugin("acme-two", "acme_two", plugin_source("Shared"))
    with pytest.raises(RegistrationError) as raised:
        make_worker()
    message = str(raised.value)
    assert "'Shared' is registered twice" in message
    assert "'acme_one' (distribution 'acme-one')" in message
    assert "'acme_two' (distribution 'acme-two')" in message


def test_duplicate_of_an_installed_type_names_both(install_plugin, make_worker):
    install_plugin("acme-orders", "acme_orders", plugin_source("OrderNew"))
    with pytest.raises(RegistrationError, match="example_orders.*acme_orders|acme_orders.*example_orders"):
        make_worker()


def test_reserved_prefix_from_a_third_party_is_refused(install_plugin, make_worker):
    install_plugin("acme-sneaky", "acme_sneaky", plugin_source("letsgo:contact-v2"))
    with pytest.raises(RegistrationError) as raised:
        make_worker()
    assert "'acme_sneaky' (distribution 'acme-sneaky')" in str(raised.value)
    assert "reserved" in str(raised.value)


def test_registration_hook_raising_is_a_startup_error_naming_the_plugin(install_plugin, make_worker):
    install_plugin(
        "acme-raises",
        "acme_raises",
        "from host import hookimpl\n\n@hookimpl\ndef letsgo_register_messages(register):\n    raise RuntimeError('boom')\n",
    )
    with pytest.raises(StartupError, match="plugin 'acme_raises' failed while registering message types: RuntimeError: boom"):
        make_worker()


def test_startup_and_shutdown_hooks_run_once(make_worker):
    calls = []

    class Lifecycle:
        __name__ = "lifecycle"

        from host import hookimpl as _hookimpl

        @_hookimpl
        def letsgo_startup(self, worker):
            calls.append(("startup", worker.started))

        @_hookimpl
        def letsgo_shutdown(self, worker):
            calls.append(("shutdown", worker.started))

    worker = make_worker(plugins=[Lifecycle()], entry_points=False)
    worker.start()  # idempotent
    worker.stop()
    worker.stop()
    assert calls == [("startup", False), ("shutdown", True)]


def test_loading_is_lazy_and_once_per_process():
    code = textwrap.dedent(
        """
        import sys, json
        import lambda_entry, host.core.worker as w
        before = "example_orders" in sys.modules
        first = w.get_worker(); second = w.get_worker()
        print(json.dumps([before, first is second, "example_orders" in sys.modules]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [False, True, True]


def test_trace_switch_logs_hook_calls(make_worker, caplog):
    caplog.set_level("INFO", logger="letsgo.trace")
    worker = make_worker(env={"LETSGO_WORKER_TRACE_PLUGINS": "1"})
    from host.core.notify import Notification

    worker.pm.hook.letsgo_notify(notification=Notification("hello"))
    assert "hook letsgo_notify" in caplog.text


def test_a_plugin_can_add_hookspecs_other_plugins_implement(make_worker):
    import pluggy

    spec = pluggy.HookspecMarker("letsgo_worker")

    class Specs:
        @spec
        def acme_discounts(self, register):
            """Register discounts."""

    class Host:
        __name__ = "acme_host"

        @hookimpl
        def letsgo_add_hookspecs(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class App:
        __name__ = "acme_app"

        @hookimpl
        def acme_discounts(self, register):
            register("SUMMER")

    worker = make_worker(plugins=[Host(), App()], entry_points=False)
    registered = []
    worker.pm.hook.acme_discounts(register=registered.append)
    assert registered == ["SUMMER"]


class Typo:
    __name__ = "typo"

    @hookimpl
    def letsgo_regster_messages(self, register):
        pass


def test_an_implementation_of_an_unknown_hook_is_reported(make_worker):
    worker = make_worker(plugins=[Typo()], entry_points=False)
    (problem,) = worker.problems
    assert problem.plugin == "typo" and "unknown hook 'letsgo_regster_messages'" in problem.message


def test_an_unknown_hook_is_a_startup_error_when_strict(make_worker):
    with pytest.raises(StartupError, match="plugin 'typo' implements unknown hook 'letsgo_regster_messages'"):
        make_worker(plugins=[Typo()], env={"LETSGO_WORKER_STRICT_PLUGINS": "1"}, entry_points=False)


def test_unknown_type_reason_names_plugins_that_failed_to_load(install_plugin, make_worker):
    from host.core.batch import run
    from host.core.dispatch import Status, dispatch

    install_plugin("acme-broken", "acme_broken", "raise ImportError('missing dependency')\n")
    worker = make_worker()
    outcome = run(dispatch(worker, '{"type": "AcmeThing"}', message_id="m-1"))
    assert outcome.status is Status.REJECTED
    assert outcome.reason.endswith("; plugins with load problems: acme_broken")


def test_hooks_of_objects_a_plugin_registers_are_listed_with_it(make_worker):
    class Sink:
        @hookimpl
        def letsgo_notify(self, notification):
            pass

    class Parent:
        __name__ = "parent"

        @hookimpl
        def letsgo_startup(self, worker):
            worker.pm.register(Sink(), name="parent.sink")

    worker = make_worker(plugins=[Parent()], entry_points=False)
    (info,) = worker.plugins
    assert worker.plugin_hooks(info) == ["letsgo_notify", "letsgo_startup"]


# -------------------------------------------------------------------------
# Plugin settings: declared by the plugin, read by the host's Settings
# -------------------------------------------------------------------------


def settings_plugin(name: str, *settings, distribution: str | None = None):
    """An in-process plugin declaring ``settings`` and remembering what ``letsgo_startup`` read."""

    class Plugin:
        __name__ = name
        read: dict = {}

        @hookimpl
        def letsgo_register_settings(self, register):
            for setting in settings:
                register(setting)

        @hookimpl
        def letsgo_startup(self, worker):
            Plugin.read = {setting.variable: worker.settings.get(setting) for setting in settings}

    plugin = Plugin()
    plugin.distribution = distribution
    return plugin


def test_a_plugin_setting_is_parsed_from_the_environment_and_read_at_startup(make_worker):
    from host import Setting, flag, seconds

    timeout = Setting("ACME_TIMEOUT_SECONDS", "10", seconds(1, 60), "How long to wait.")
    verbose = Setting("ACME_VERBOSE", "no", flag, "Say more.")
    plugin = settings_plugin("acme", timeout, verbose)
    worker = make_worker(plugins=[plugin], env={"ACME_TIMEOUT_SECONDS": "2.5"}, entry_points=False)
    assert plugin.read == {"ACME_TIMEOUT_SECONDS": 2.5, "ACME_VERBOSE": False}
    assert worker.settings.get(timeout) == 2.5
    assert worker.plugin_settings == {"acme": [timeout, verbose]}


def test_a_bad_plugin_setting_is_a_startup_error_naming_the_variable(make_worker):
    from host import ConfigError, Setting, seconds

    plugin = settings_plugin("acme", Setting("ACME_TIMEOUT_SECONDS", "10", seconds(1, 60), "How long to wait."))
    with pytest.raises(ConfigError) as raised:
        make_worker(plugins=[plugin], env={"ACME_TIMEOUT_SECONDS": "soon"}, entry_points=False)
    assert str(raised.value) == "ACME_TIMEOUT_SECONDS='soon' is invalid: not a number"
    assert plugin.read == {}  # start-up stopped before letsgo_startup


def test_two_plugins_declaring_one_variable_is_a_startup_error_naming_both(make_worker):
    from host import Setting

    first = settings_plugin("acme", Setting("SHARED_TOKEN"), distribution="acme-dist")
    second = settings_plugin("other", Setting("SHARED_TOKEN"))
    with pytest.raises(RegistrationError) as raised:
        make_worker(plugins=[first, second], entry_points=False)
    assert str(raised.value) == "setting SHARED_TOKEN is declared by both plugin 'acme' (distribution 'acme-dist') and plugin 'other'"


def test_a_plugin_cannot_declare_a_host_variable(make_worker):
    from host import Setting

    with pytest.raises(RegistrationError, match="^setting PORT is declared by both the host and plugin 'acme'$"):
        make_worker(plugins=[settings_plugin("acme", Setting("PORT"))], entry_points=False)


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        ("ACME_URL", "registered 'ACME_URL' as a setting: pass a host.Setting"),
        ("host-setting", "registered Setting(variable='PORT'"),
        ("1ACME", "declared a setting named '1ACME': an environment variable name is letters, digits and underscores"),
    ],
)
def test_a_malformed_setting_is_refused_naming_the_plugin(make_worker, declared, words):
    from host import Setting
    from host.config import SETTINGS

    setting = {"ACME_URL": "ACME_URL", "host-setting": SETTINGS[0], "1ACME": Setting("1ACME")}[declared]
    with pytest.raises(RegistrationError) as raised:
        make_worker(plugins=[settings_plugin("acme", setting)], entry_points=False)
    assert str(raised.value).startswith("plugin 'acme' ") and words in str(raised.value)


def test_reading_an_undeclared_setting_says_how_to_declare_it(make_worker):
    from host import Setting

    worker = make_worker(entry_points=False)
    with pytest.raises(LookupError, match="ACME_URL is not a declared setting: register it in letsgo_register_settings"):
        worker.settings.get(Setting("ACME_URL"))


def test_a_secret_plugin_setting_never_shows(make_worker, caplog):
    from host import Setting, optional

    token = Setting("ACME_TOKEN", None, optional, "API token.", secret=True)
    worker = make_worker(plugins=[settings_plugin("acme", token)], env={"ACME_TOKEN": "tok_SECRET"}, entry_points=False)
    assert worker.settings.get(token) == "tok_SECRET"
    assert worker.settings.display(token) == "<secret>"
    assert "tok_SECRET" not in repr(worker.settings) + repr(token) + caplog.text


def test_the_installed_plugins_declare_their_own_settings(make_worker):
    from letsgo_slack import SLACK_TIMEOUT, SLACK_URL
    from letsgo_stripe.api import API_BASE, LIVE_API_KEY, TEST_API_KEY
    from letsgo_stripe.dispatch import IN_PROGRESS_SECONDS
    from letsgo_stripe.webhook import LIVE_WEBHOOK_KEY, TEST_WEBHOOK_KEY

    from host.config import SETTINGS

    worker = make_worker(env={"LETSGO_SLACK_TIMEOUT_SECONDS": "3"})
    assert worker.plugin_settings["letsgo_slack"] == [SLACK_URL, SLACK_TIMEOUT]
    assert worker.plugin_settings["letsgo_stripe"] == [
        TEST_WEBHOOK_KEY, LIVE_WEBHOOK_KEY, TEST_API_KEY, LIVE_API_KEY, API_BASE, IN_PROGRESS_SECONDS
    ]
    assert worker.settings.get(SLACK_TIMEOUT) == 3.0 and worker.settings.get(SLACK_URL) is None
    assert SLACK_URL.secret and TEST_WEBHOOK_KEY.secret and LIVE_WEBHOOK_KEY.secret and not SLACK_TIMEOUT.secret
    # The host knows no plugin by name: none of these is among its own settings.
    assert not {s.variable for s in SETTINGS} & {"LETSGO_SLACK_URL", "LETSGO_SLACK_TIMEOUT_SECONDS",
                                                 "LETSGO_STRIPE_TEST_WEBHOOK_KEY", "LETSGO_STRIPE_LIVE_WEBHOOK_KEY"}


def test_a_plugin_calls_its_own_hook_one_plugin_at_a_time(make_worker):
    from host import hookspec

    class Specs:
        @hookspec
        def acme_discounts(self, register, worker):
            """Register discounts."""

    class Host:
        __name__ = "acme_host"

        @hookimpl
        def letsgo_add_hookspecs(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Summer:
        __name__ = "summer"
        distribution = "summer-sales"

        @hookimpl
        def acme_discounts(self, register):  # a subset of the spec's arguments
            register("SUMMER")

    class Winter:
        __name__ = "winter"

        @hookimpl
        def acme_discounts(self, register, worker):
            register("WINTER")

    worker = make_worker(plugins=[Host(), Summer(), Winter()], entry_points=False)
    table = []
    for impl in worker.implementations("acme_discounts"):
        impl(register=lambda code, impl=impl: table.append((code, impl.plugin, impl.distribution)), worker=worker)
    assert table == [("SUMMER", "summer", "summer-sales"), ("WINTER", "winter", None)]
    assert worker.implementations("acme_nobody_implements") == []


# -------------------------------------------------------------------------
# `host` is the public API
# -------------------------------------------------------------------------


def test_every_public_name_of_host_resolves():
    import host

    missing = [name for name in host.__all__ if not hasattr(host, name)]
    assert missing == []
    assert set(host.__all__) <= set(dir(host))
    with pytest.raises(AttributeError, match="module 'host' has no attribute 'nothing_here'"):
        host.nothing_here  # noqa: B018


def test_importing_host_loads_nothing_heavy():
    heavy = ["host.core.worker", "host.local", "host.services", "stripe", "boto3", "httpx", "cryptography", "slack_sdk", "sqlite3"]
    probe = f"import sys, host; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_plugins_in_this_repository_import_only_host():
    import ast
    from pathlib import Path

    root = Path(__file__).parent.parent / "plugins"
    found = []
    for path in sorted(root.glob("*/*/**/*.py")):
        if "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            allowed = {"host", "host.testing"} if path.name == "testing.py" else {"host"}
            found += [f"{path.relative_to(root)}: {name}" for name in names if name.startswith("host.") and name not in allowed]
    assert found == []


def test_the_plugins_listing_shows_declared_settings_but_never_a_secret(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "PORT"))}
    env.update(
        LETSGO_WORKER_ENV_FILE=os.devnull, LETSGO_SLACK_TIMEOUT_SECONDS="3",
        LETSGO_SLACK_URL="https://hooks.slack.com/services/T0/B0/SLACKSECRET", LETSGO_STRIPE_TEST_WEBHOOK_KEY="whsec_STRIPESECRET",
    )
    listing = [sys.executable, "-m", "host.cli", "plugins"]
    as_json = subprocess.run([*listing, "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    as_text = subprocess.run(listing, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert rows["letsgo_slack"]["settings"] == [
        {"variable": "LETSGO_SLACK_URL", "value": "<secret>", "default": None, "secret": True,
         "description": "Slack incoming webhook URL; unset: Slack notifications are off."},
        {"variable": "LETSGO_SLACK_TIMEOUT_SECONDS", "value": "3", "default": "10", "secret": False,
         "description": "Seconds to wait for Slack to answer one post."},
    ]
    assert rows["example_orders"]["settings"] == []
    assert "  settings: LETSGO_STRIPE_TEST_WEBHOOK_KEY=<secret>, LETSGO_STRIPE_LIVE_WEBHOOK_KEY (unset), " in as_text.stdout
    for output in (as_json, as_text):
        assert "SECRET" not in output.stdout + output.stderr
