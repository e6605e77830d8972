"""Faulty plugins, found by real entry-point discovery: each error names the plugin and its distribution.

Each test lays out installed distributions (``*.dist-info`` with ``entry_points.txt``
in group ``letsgo_worker``) in a temporary directory on ``sys.path``; the worker
finds them through ``importlib.metadata`` as it finds pip-installed plugins.
"""

from __future__ import annotations

import itertools
import json
import textwrap

import pytest

from host.core.batch import process_sqs_event
from host.config import Settings
from host.core.dispatch import Status
from host.errors import PluginLoadError, RegistrationError, StartupError
from host.core.worker import Worker
from .reliability_kit import clean_env, record, run_cli, write_distribution

_counter = itertools.count()

GOOD = """
from host import hookimpl

def handle(message, ctx):
    pass

@hookimpl
def letsgo_register_messages(register):
    register("{type}", handle)
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install({"plugin": source, ...})`` -> real names; each plugin is its own distribution."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(plugins: dict[str, str]) -> dict[str, str]:
        names = {}
        for short, source in plugins.items():
            unique = f"{short}_{next(_counter)}"
            module = f"relplug_{unique}"
            write_distribution(tmp_path, f"rel-{unique}", {unique: module}, {module: textwrap.dedent(source)})
            names[short] = unique
        return names

    return install


def worker_for(names: dict[str, str], **env: str) -> Worker:
    env.setdefault("LETSGO_WORKER_PLUGINS", ",".join(names.values()))
    return Worker(Settings.from_env(env))


def good(type_: str) -> str:
    return GOOD.replace("{type}", type_)


BROKEN_IMPORTS = [
    ("raises-import-error", "raise ImportError('needs the frobnicate package')\n", "ImportError: needs the frobnicate package"),
    ("syntax-error", "def broken(:\n", "SyntaxError"),
    ("raises-at-import", "1 / 0\n", "ZeroDivisionError"),
    ("imports-missing-module", "import no_such_module_for_letsgo\n", "No module named 'no_such_module_for_letsgo'"),
]


@pytest.mark.parametrize("case,source,words", BROKEN_IMPORTS, ids=[c[0] for c in BROKEN_IMPORTS])
def test_plugin_that_fails_to_import_is_skipped_and_named(install, case, source, words):
    names = install({"broken": source, "healthy": good("rel.healthy")})
    worker = worker_for(names).start()
    try:
        assert "rel.healthy" in worker.registry
        [problem] = worker.problems
        assert problem.plugin == names["broken"] and problem.distribution == f"rel-{names['broken']}"
        assert f"Error importing plugin {names['broken']!r}" in problem.message and words in problem.message
        assert process_sqs_event(worker, {"Records": [record({"type": "rel.healthy"})]}).response() == {"batchItemFailures": []}
    finally:
        worker.stop()


@pytest.mark.parametrize("case,source,words", BROKEN_IMPORTS, ids=[c[0] for c in BROKEN_IMPORTS])
def test_strict_mode_stops_start_up_on_a_broken_plugin(install, case, source, words):
    names = install({"broken": source})
    with pytest.raises(PluginLoadError) as raised:
        worker_for(names, LETSGO_WORKER_STRICT_PLUGINS="1").start()
    assert names["broken"] in str(raised.value) and f"rel-{names['broken']}" in str(raised.value)
    assert words in str(raised.value)


def test_entry_point_naming_a_missing_attribute(install, tmp_path):
    write_distribution(tmp_path, "rel-missing-attr", {"missing_attr": "relplug_attr_module:nope"}, {"relplug_attr_module": "x = 1\n"})
    worker = Worker(Settings.from_env({"LETSGO_WORKER_PLUGINS": "missing_attr"})).start()
    try:
        [problem] = worker.problems
        assert "'missing_attr'" in problem.message and "rel-missing-attr" in problem.message and "nope" in problem.message
    finally:
        worker.stop()


def test_disabling_a_broken_plugin_lets_the_worker_start(install):
    names = install({"broken": "raise ImportError('boom')\n", "healthy": good("rel.healthy2")})
    worker = worker_for(names, LETSGO_WORKER_DISABLE_PLUGINS=names["broken"], LETSGO_WORKER_STRICT_PLUGINS="1").start()
    try:
        assert worker.problems == [] and "rel.healthy2" in worker.registry
    finally:
        worker.stop()


def test_selecting_a_plugin_that_is_not_installed_is_reported(install):
    names = install({"healthy": good("rel.healthy3")})
    worker = worker_for(names, LETSGO_WORKER_PLUGINS=f"{names['healthy']},not_installed_plugin").start()
    try:
        assert [p.message for p in worker.problems] == [
            "LETSGO_WORKER_PLUGINS names 'not_installed_plugin', but no installed plugin has that name"
        ]
    finally:
        worker.stop()


STARTUP_FAILURES = [
    (
        "register-hook-raises",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            raise KeyError("missing table")
        """,
        StartupError,
        ["failed while registering message types", "KeyError", "missing table"],
    ),
    (
        "startup-hook-raises",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_startup(worker):
            raise ConnectionError("database unreachable")
        """,
        StartupError,
        ["failed in letsgo_startup", "ConnectionError", "database unreachable"],
    ),
    (
        "reserved-type",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("letsgo:contact", lambda message, ctx: None)
        """,
        RegistrationError,
        ["'letsgo:contact'", "reserved"],
    ),
    (
        "handler-not-callable",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("rel.notcallable", "handle_it")
        """,
        RegistrationError,
        ["'rel.notcallable'", "not callable", "'handle_it'"],
    ),
    (
        "handler-none",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("rel.nohandler", None)
        """,
        RegistrationError,
        ["'rel.nohandler'", "not callable"],
    ),
    (
        "type-not-a-string",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register(42, lambda message, ctx: None)
        """,
        RegistrationError,
        ["invalid message type 42", "non-empty string"],
    ),
    (
        "type-blank",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("  ", lambda message, ctx: None)
        """,
        RegistrationError,
        ["invalid message type '  '"],
    ),
    (
        "payload-not-a-model",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("rel.badpayload", lambda message, ctx: None, payload={"orderId": str})
        """,
        RegistrationError,
        ["'rel.badpayload'", "pydantic model"],
    ),
    (
        "register-wrong-keyword",
        """
        from host import hookimpl
        @hookimpl
        def letsgo_register_messages(register):
            register("rel.kw", lambda message, ctx: None, schema=None)
        """,
        StartupError,
        ["failed while registering message types", "schema"],
    ),
]


@pytest.mark.parametrize("case,source,error,words", STARTUP_FAILURES, ids=[c[0] for c in STARTUP_FAILURES])
def test_faulty_plugin_stops_start_up_naming_it(install, case, source, error, words):
    names = install({"faulty": source})
    with pytest.raises(error) as raised:
        worker_for(names).start()
    message = str(raised.value)
    assert names["faulty"] in message, message
    for word in words:
        assert word in message, message


def test_duplicate_type_names_both_plugins_and_distributions(install):
    names = install({"first": good("rel.dup"), "second": good("rel.dup")})
    with pytest.raises(RegistrationError) as raised:
        worker_for(names).start()
    message = str(raised.value)
    assert "'rel.dup' is registered twice" in message
    for short in ("first", "second"):
        assert repr(names[short]) in message and repr(f"rel-{names[short]}") in message
    assert "LETSGO_WORKER_DISABLE_PLUGINS" in message


def test_same_plugin_name_in_two_distributions_is_reported(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_distribution(tmp_path, "rel-twin-a", {"relplug_twin": "relplug_twin_a"}, {"relplug_twin_a": good("rel.twin")})
    write_distribution(tmp_path, "rel-twin-b", {"relplug_twin": "relplug_twin_b"}, {"relplug_twin_b": good("rel.twin")})
    worker = Worker(Settings.from_env({"LETSGO_WORKER_PLUGINS": "relplug_twin"})).start()
    try:
        assert "rel.twin" in worker.registry
        [problem] = worker.problems
        assert "'relplug_twin' is also used by distribution" in problem.message
    finally:
        worker.stop()


TYPO = """
from host import hookimpl
@hookimpl
def letsgo_register_message(register):
    pass
"""


def test_misspelled_hook_is_reported_naming_the_plugin(install):
    """Not fatal by default (an app's hook for a disabled plugin must not stop the worker)."""
    names = install({"typo": TYPO})
    worker = worker_for(names).start()
    try:
        [problem] = worker.problems
        assert problem.plugin == names["typo"] and "unknown hook 'letsgo_register_message'" in problem.message
    finally:
        worker.stop()


def test_misspelled_hook_stops_a_strict_start_up(install):
    names = install({"typo": TYPO})
    with pytest.raises(StartupError) as raised:
        worker_for(names, LETSGO_WORKER_STRICT_PLUGINS="1").start()
    assert names["typo"] in str(raised.value) and "letsgo_register_message" in str(raised.value)


WRONG_PARAMETER = """
from host import hookimpl
@hookimpl
def letsgo_register_messages(registry):
    pass
"""


def test_hook_with_a_wrong_parameter_is_skipped_like_a_failed_import(install):
    names = install({"badarg": WRONG_PARAMETER, "healthy": good("rel.healthy4")})
    worker = worker_for(names).start()
    try:
        assert "rel.healthy4" in worker.registry
        [problem] = worker.problems
        assert problem.plugin == names["badarg"] and "registry" in problem.message
        assert f"rel-{names['badarg']}" in problem.message
    finally:
        worker.stop()


def test_hook_with_a_wrong_parameter_stops_a_strict_start_up(install):
    names = install({"badarg": WRONG_PARAMETER})
    with pytest.raises(PluginLoadError) as raised:
        worker_for(names, LETSGO_WORKER_STRICT_PLUGINS="1").start()
    assert names["badarg"] in str(raised.value) and "registry" in str(raised.value)


def test_failing_shutdown_hook_does_not_stop_the_others(install, tmp_path):
    marker = tmp_path / "shutdown-ran"
    names = install(
        {
            "badstop": """
            from host import hookimpl
            @hookimpl
            def letsgo_shutdown(worker):
                raise RuntimeError("cannot close")
            """,
            "goodstop": f"""
            from host import hookimpl
            @hookimpl
            def letsgo_shutdown(worker):
                open({str(marker)!r}, "w").close()
            """,
        }
    )
    worker = worker_for(names).start()
    worker.stop()
    assert marker.exists()


RUNTIME_FAULTS = [
    ("handler-wrong-signature", "def handle():\n    pass", Status.FAILED, ["TypeError"]),
    ("handler-raises-value-error", "def handle(message, ctx):\n    raise ValueError('bad order 7')", Status.FAILED, ["ValueError: bad order 7"]),
    ("async-handler-raises", "async def handle(message, ctx):\n    raise LookupError('no customer')", Status.FAILED, ["LookupError: no customer"]),
    ("handler-exits", "import sys\ndef handle(message, ctx):\n    sys.exit(3)", Status.FAILED, ["SystemExit"]),
    ("async-handler-exits", "import sys\nasync def handle(message, ctx):\n    sys.exit(3)", Status.FAILED, ["SystemExit"]),
    ("handler-returns-value", "def handle(message, ctx):\n    return {'ignored': True}", Status.SUCCEEDED, []),
]


@pytest.mark.parametrize("case,handler,status,words", RUNTIME_FAULTS, ids=[c[0] for c in RUNTIME_FAULTS])
def test_faulty_handler_fails_only_its_message(install, case, handler, status, words):
    source = handler + "\n\nfrom host import hookimpl\n@hookimpl\ndef letsgo_register_messages(register):\n    register('rel.faulty', handle)\n"
    names = install({"faulty": source, "healthy": good("rel.fine")})
    worker = worker_for(names).start()
    try:
        records = [record({"type": "rel.fine"}), record({"type": "rel.faulty", "payload": {}}), record({"type": "rel.fine"})]
        outcomes = process_sqs_event(worker, {"Records": records}).outcomes
        assert [o.status for o in outcomes] == [Status.SUCCEEDED, status, Status.SUCCEEDED]
        assert outcomes[1].plugin == names["faulty"]
        for word in words:
            assert word in outcomes[1].reason
    finally:
        worker.stop()


def test_failing_notification_sink_does_not_lose_a_rejection(install):
    names = install(
        {
            "badsink": """
            from host import hookimpl
            @hookimpl
            def letsgo_notify(notification):
                raise ConnectionError("slack is down")
            """
        }
    )
    worker = worker_for(names).start()
    try:
        bad = record("not json")
        [outcome] = process_sqs_event(worker, {"Records": [bad]}).outcomes
        assert outcome.status is Status.REJECTED and "not valid JSON" in outcome.reason
    finally:
        worker.stop()


def test_cli_lists_plugins_and_names_the_broken_one(tmp_path):
    write_distribution(tmp_path, "rel-cli-broken", {"relcli_broken": "relcli_broken"}, {"relcli_broken": "raise ImportError('needs libfoo')\n"})
    write_distribution(tmp_path, "rel-cli-good", {"relcli_good": "relcli_good"}, {"relcli_good": good("rel.cli")})
    env = clean_env(PYTHONPATH=str(tmp_path), LETSGO_WORKER_PLUGINS="relcli_broken,relcli_good")
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "relcli_good" in [row["name"] for row in json.loads(result.stdout)]
    assert "'relcli_broken'" in result.stderr and "rel-cli-broken" in result.stderr and "needs libfoo" in result.stderr

    strict = run_cli("plugins", env=env | {"LETSGO_WORKER_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert "Error importing plugin 'relcli_broken' (distribution 'rel-cli-broken'): ImportError: needs libfoo" in strict.stderr
    assert "Traceback" not in strict.stderr
