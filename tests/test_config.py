"""Configuration: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from host.config import SETTINGS, Settings
from host.errors import ConfigError


def test_defaults_match_letsgo():
    settings = Settings.from_env({})
    assert settings.port == 3002
    assert settings.host == "127.0.0.1"
    assert settings.api_audience == "letsgo:service"
    assert settings.batch_size == 10
    assert settings.visibility_timeout == 360
    assert settings.schedule is None
    assert settings.plugins is None and settings.disable_plugins == frozenset()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "http", "PORT='http' is invalid: not a number"),
        ("PORT", "70000", "PORT='70000' is invalid: expected an integer from 0 to 65535"),
        ("LETSGO_WORKER_BATCH_SIZE", "0", "LETSGO_WORKER_BATCH_SIZE='0' is invalid: expected an integer from 1 to 10000"),
        ("LETSGO_WORKER_BATCH_SIZE", "2.5", "LETSGO_WORKER_BATCH_SIZE='2.5' is invalid: not a number"),
        ("LETSGO_WORKER_VISIBILITY_TIMEOUT", "-1", "LETSGO_WORKER_VISIBILITY_TIMEOUT='-1' is invalid: expected a number of seconds from 0 to 43200"),
        ("LETSGO_WORKER_VISIBILITY_TIMEOUT", "nan", "LETSGO_WORKER_VISIBILITY_TIMEOUT='nan' is invalid"),
        ("LETSGO_WORKER_STRICT_PLUGINS", "maybe", "LETSGO_WORKER_STRICT_PLUGINS='maybe' is invalid: expected 1/0"),
        ("LETSGO_WORKER_LOG_LEVEL", "LOUD", "LETSGO_WORKER_LOG_LEVEL='LOUD' is invalid"),
    ],
)
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value).startswith(message)


def test_fractional_seconds_and_lists_are_parsed():
    settings = Settings.from_env(
        {
            "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0.05",
            "LETSGO_WORKER_PLUGINS": " a, b ,,",
            "LETSGO_WORKER_STRICT_PLUGINS": "yes",
        }
    )
    assert settings.backoff_base == 0.05
    assert settings.plugins == frozenset({"a", "b"})
    assert settings.strict_plugins is True


def test_empty_plugin_list_means_none():
    assert Settings.from_env({"LETSGO_WORKER_PLUGINS": ""}).plugins == frozenset()


def test_overrides_win_over_the_environment():
    assert Settings.from_env({"PORT": "1"}, port=2).port == 2


def test_flags_go_through_the_same_parsers_and_win_over_the_environment():
    settings = Settings.from_env({"PORT": "1", "LETSGO_WORKER_DB": "env.db"}, flags={"port": ("--port", "8080"), "db_path": ("--db", None)})
    assert settings.port == 8080
    assert settings.db_path == "env.db"  # a flag that was not given leaves the environment's value


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": ("--port", "70000")}, "--port '70000' is invalid: expected an integer from 0 to 65535"),
        ({"port": ("--port", "eighty")}, "--port 'eighty' is invalid: not a number"),
        ({"batch_window": ("--window", "nan")}, "--window 'nan' is invalid: expected a number of seconds from 0 to 300"),
    ],
)
def test_a_bad_flag_is_named_with_its_value(flags, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({}, flags=flags)
    assert str(raised.value) == message


def test_a_bad_flag_is_reported_even_when_the_environment_is_fine():
    with pytest.raises(ConfigError, match="^--port '-1' is invalid"):
        Settings.from_env({"PORT": "3002"}, flags={"port": ("--port", "-1")})


def test_an_unknown_flag_or_override_is_a_programming_error():
    with pytest.raises(TypeError, match="no such setting: colour"):
        Settings.from_env({}, flags={"colour": ("--colour", "red")})
    with pytest.raises(TypeError, match="no such setting: colour"):
        Settings.from_env({}, colour="red")


def test_a_secret_with_a_bad_value_is_named_but_not_shown():
    from host.config import Setting, int_between

    pin = Setting("MY_PIN", None, int_between(0, 9999), "A secret number.", secret=True)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"MY_PIN": "SECRET-12345"}).with_plugin_settings([pin])
    assert str(raised.value) == "MY_PIN is invalid: not a number (the value is not shown because it is a secret)"


def test_the_environment_read_is_kept_but_never_shown_or_compared():
    read = Settings.from_env({"SOME_PLUGIN_TOKEN": "tok_SECRET"})
    assert "tok_SECRET" not in repr(read)
    assert read == Settings.from_env({})


def test_secrets_never_appear_in_the_repr():
    from host.config import Setting

    settings = Settings.from_env(
        {
            "LETSGO_SLACK_URL": "https://hooks.slack.com/services/T000/B000/SECRETSECRET",
            "LETSGO_PKI_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----SECRETKEY",
            "LETSGO_STRIPE_TEST_WEBHOOK_KEY": "whsec_testsecret",
            "LETSGO_STRIPE_LIVE_WEBHOOK_KEY": "whsec_livesecret",
        }
    ).with_plugin_settings([Setting("LETSGO_STRIPE_TEST_WEBHOOK_KEY", secret=True)])
    text = repr(settings)
    for secret in ("SECRETSECRET", "SECRETKEY", "whsec_"):
        assert secret not in text


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [s.variable for s in SETTINGS if f"`{s.variable}`" not in readme]
    assert missing == []


# -------------------------------------------------------------------------
# Nobody else reads the environment: the command line, invoke and the AWS clients go through Settings
# -------------------------------------------------------------------------


def test_cli_refuses_a_bad_log_level_like_any_bad_variable(monkeypatch, tmp_path, capsys):
    from host.cli import EXIT_USAGE, main

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("LETSGO_WORKER_LOG_LEVEL", "LOUD")
    assert main(["plugins"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "letsgo-worker: error: LETSGO_WORKER_LOG_LEVEL='LOUD' is invalid: "
        "expected DEBUG, INFO, WARNING, ERROR or CRITICAL\n"
    )


def test_cli_help_works_with_bad_configuration(monkeypatch, capsys):
    from host.cli import main

    monkeypatch.setenv("LETSGO_WORKER_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "usage: letsgo-worker" in capsys.readouterr().out


def test_invoke_context_takes_lambda_names_from_settings():
    from host.aws.invoke import LambdaContext

    settings = Settings.from_env(
        {"AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "7",
         "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_REGION": "eu-west-3"}
    )
    context = LambdaContext(1000, settings=settings)
    assert (context.function_name, context.function_version, context.memory_limit_in_mb) == ("orders", "7", "512")
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-3:000000000000:function:orders"
    default = LambdaContext(1000, settings=Settings.from_env({}))
    assert (default.function_name, default.function_version, default.memory_limit_in_mb) == ("letsgo-worker", "$LATEST", "128")


def test_aws_clients_are_shared_per_endpoint(monkeypatch):
    pytest.importorskip("boto3")
    from host.aws.clients import aws_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    first = aws_client("sqs", "us-east-1")
    assert aws_client("sqs", "us-east-1") is first
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    second = aws_client("sqs", "us-east-1")
    assert second is not first and second.meta.endpoint_url == "http://127.0.0.1:2"
