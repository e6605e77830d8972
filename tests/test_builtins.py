"""LetsGo's built-in types: payloads as @letsgo/types defines them, and the exact texts posted to Slack.

The texts are those of LetsGo's worker (apps/worker/src/handlers/*.ts), checked
here as they arrive at a real HTTP server standing in for Slack. Sample data
comes from LetsGo's documentation (the /v1/me response of its Auth0 tutorial),
including an identity id LetsGo itself produced.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess

import pytest

from host.builtins import ContactPayload, TenantDeletedPayload, TenantNewPayload
from host.services.mrkdwn import escape, escape_line, serialize_identity
from host.testing import run_batch

AUTH0 = {"iss": "https://goletsgo.us.auth0.com/", "sub": "BPRZ8kbjmj1S2xrS0i2dj3oEb6bkeaxn@clients"}
#: The identityId LetsGo's API returned for AUTH0 (docs/tutorials/setting-up-authentication-with-auth0.md).
AUTH0_ID = (
    "idn-6874747073253341253246253246676f6c657473676f2e75732e61757468302e636f6d2532463a4250525a386b626a6d6a31"
    "5332787253306932646a336f456236626b6561786e253430636c69656e7473"
)
GOOGLE = {"iss": "https://goletsgo.us.auth0.com/", "sub": "google-oauth2|108241591236782345678"}
#: serializeIdentity(GOOGLE) computed by Node.js (encodeURIComponent, Buffer hex).
GOOGLE_ID = (
    "idn-6874747073253341253246253246676f6c657473676f2e75732e61757468302e636f6d2532463a676f6f676c652d6f61757468"
    "32253743313038323431353931323336373832333435363738"
)

TENANT = {
    "category": "letsgo-tenant",
    "key": "/ten-d54feabe077948e1af2d97f2e8668b0e",
    "tenantId": "ten-d54feabe077948e1af2d97f2e8668b0e",
    "displayName": "Pink Swallow",
    "createdAt": "2023-11-07T22:14:18.446Z",
    "createdBy": AUTH0,
    "updatedAt": "2023-11-07T22:14:18.446Z",
    "updatedBy": AUTH0,
    "plan": {
        "planId": "free",
        "changes": [{"timestamp": "2023-11-07T22:14:18.446Z", "updatedBy": AUTH0, "newPlanId": "free"}],
    },
}
DELETED_TENANT = {
    **TENANT,
    "plan": {
        **TENANT["plan"],
        "planId": "starter",
        "stripeCustomerId": "cus_P1a2b3",
        "stripeSubscription": {
            "subscriptionId": "sub_1OAbc",
            "status": "active",
            "currentPeriodEnd": "2023-12-07T22:14:18.000Z",
            "card": {"last4": "4242", "brand": "visa"},
        },
    },
    "deletedAt": "2023-11-09T08:00:00.000Z",
    "deletedBy": GOOGLE,
    "ttl": 1707465600,
}
CONTACT = {
    "email": "jane@example.com",
    "name": "Jane Doe",
    "message": "Do you offer annual billing?\nWe are a team of 40.",
    "timestamp": "2023-11-08T10:11:12.131Z",
    "query": {"from": "pricing", "plan": "custom"},
    "tenantId": "ten-d54feabe077948e1af2d97f2e8668b0e",
    "identityId": AUTH0_ID,
}


@pytest.fixture
def worker(make_worker, slack):
    """Every installed plugin (the built-ins and letsgo-slack by entry-point discovery), posting to ``slack``."""
    return make_worker(env={"LETSGO_SLACK_URL": slack.url})


def post(worker, slack, type_, payload):
    result = run_batch(worker, {"type": type_, "payload": payload})
    assert result.response() == {"batchItemFailures": []}, [o.reason for o in result.outcomes]
    (text,) = slack.texts
    return text


# -------------------------------------------------------------------------
# Exact texts
# -------------------------------------------------------------------------


def test_contact_text(worker, slack):
    assert post(worker, slack, "letsgo:contact", CONTACT) == (
        ":wave: New contact form submission\n"
        "*Name:* Jane Doe\n"
        "*Email:* jane@example.com\n"
        "*Timestamp:* 2023-11-08T10:11:12.131Z\n"
        "*Tenant Id:* ten-d54feabe077948e1af2d97f2e8668b0e\n"
        f"*Identity Id:* {AUTH0_ID}\n"
        "*from:* pricing\n"
        "*plan:* custom\n"
        "*Message:*\n"
        "Do you offer annual billing?\n"
        "We are a team of 40."
    )


def test_contact_text_of_an_anonymous_visitor(worker, slack):
    payload = {key: CONTACT[key] for key in ("email", "name", "message", "timestamp")} | {"query": {}}
    assert post(worker, slack, "letsgo:contact", payload) == (
        ":wave: New contact form submission\n"
        "*Name:* Jane Doe\n"
        "*Email:* jane@example.com\n"
        "*Timestamp:* 2023-11-08T10:11:12.131Z\n"
        "*Message:*\n"
        "Do you offer annual billing?\n"
        "We are a team of 40."
    )


def test_tenant_new_text(worker, slack):
    assert post(worker, slack, "letsgo:tenant:new", {"tenant": TENANT}) == (
        ":rocket: Tenant created\n"
        "*Tenant Id:* ten-d54feabe077948e1af2d97f2e8668b0e\n"
        "*Name:* Pink Swallow\n"
        "*Plan Id:* free\n"
        f"*Created by:* {AUTH0_ID}\n"
        "*Timestamp:* 2023-11-07T22:14:18.446Z"
    )


def test_tenant_new_accepts_a_tenant_as_the_api_returns_it(worker, slack):
    pruned = {k: v for k, v in TENANT.items() if k not in ("category", "key")}
    assert post(worker, slack, "letsgo:tenant:new", {"tenant": pruned}).startswith(":rocket: Tenant created\n")


def test_tenant_deleted_text(worker, slack):
    assert post(worker, slack, "letsgo:tenant:deleted", {"tenant": DELETED_TENANT, "cancelledPlanId": "pro"}) == (
        ":cry: Tenant deleted\n"
        "*Tenant Id:* ten-d54feabe077948e1af2d97f2e8668b0e\n"
        "*Name:* Pink Swallow\n"
        "*Plan Id:* pro\n"
        f"*Created by:* {AUTH0_ID}\n"
        f"*Deleted by:* {GOOGLE_ID}\n"
        "*Timestamp:* 2023-11-09T08:00:00.000Z"
    )


def test_tenant_deleted_without_a_cancelled_plan_shows_the_tenants_plan(worker, slack):
    text = post(worker, slack, "letsgo:tenant:deleted", {"tenant": DELETED_TENANT, "cancelledPlanId": ""})
    assert "\n*Plan Id:* starter\n" in text


# -------------------------------------------------------------------------
# Hostile input
# -------------------------------------------------------------------------


def test_a_contact_form_cannot_ping_the_channel_forge_links_or_fields(worker, slack):
    hostile = {
        "email": "<mailto:ceo@victim.example|ceo@victim.example>",
        "name": "<!channel> Eve\n*Tenant Id:* ten-forged",
        "message": "Click <https://evil.example/login|your invoice> & <!here> <@U024BE7LH>\n<!subteam^S012>",
        "timestamp": "<!date^1392734382^{date}|now>",
        "query": {"<!everyone>": "<https://evil.example>", "ref": "a\r\n*Identity Id:* forged"},
        "tenantId": "ten-1 <!channel>",
    }
    text = post(worker, slack, "letsgo:contact", hostile)
    assert text == (
        ":wave: New contact form submission\n"
        "*Name:* &lt;!channel&gt; Eve *Tenant Id:* ten-forged\n"
        "*Email:* &lt;mailto:ceo@victim.example|ceo@victim.example&gt;\n"
        "*Timestamp:* &lt;!date^1392734382^{date}|now&gt;\n"
        "*Tenant Id:* ten-1 &lt;!channel&gt;\n"
        "*&lt;!everyone&gt;:* &lt;https://evil.example&gt;\n"
        "*ref:* a *Identity Id:* forged\n"
        "*Message:*\n"
        "Click &lt;https://evil.example/login|your invoice&gt; &amp; &lt;!here&gt; &lt;@U024BE7LH&gt;\n"
        "&lt;!subteam^S012&gt;"
    )
    # Slack's control sequences all start with "<": none survives.
    assert "<" not in text and ">" not in text


def test_hostile_tenant_names_are_escaped(worker, slack):
    tenant = copy.deepcopy(TENANT) | {"displayName": "Acme <!channel> & <https://evil.example|Co>"}
    text = post(worker, slack, "letsgo:tenant:new", {"tenant": tenant})
    assert "*Name:* Acme &lt;!channel&gt; &amp; &lt;https://evil.example|Co&gt;\n" in text


def test_escape_and_escape_line():
    assert escape("a & b <c> d\ne") == "a &amp; b &lt;c&gt; d\ne"
    assert escape("&amp;") == "&amp;amp;"  # escaped text shows literally, as typed
    assert escape_line("one\ntwo\r\nthree\u2028four") == "one two three four"


# -------------------------------------------------------------------------
# Payload validation: invalid payloads are rejected with the field at fault
# -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "payload", "reason"),
    [
        ("letsgo:contact", {k: v for k, v in CONTACT.items() if k != "email"}, "email: Field required"),
        ("letsgo:contact", CONTACT | {"query": {"from": 1}}, "query.from: Input should be a valid string"),
        ("letsgo:tenant:new", {"tenant": {**TENANT, "createdBy": {"iss": "x"}}}, "tenant.createdBy.sub: Field required"),
        ("letsgo:tenant:new", {}, "tenant: Field required"),
        (
            "letsgo:tenant:deleted",
            {"tenant": TENANT, "cancelledPlanId": "pro"},
            "tenant.deletedAt: Field required; tenant.deletedBy: Field required",
        ),
        ("letsgo:tenant:deleted", {"tenant": DELETED_TENANT}, "cancelledPlanId: Field required"),
    ],
)
def test_invalid_payloads_are_rejected_naming_the_field(worker, slack, type_, payload, reason):
    result = run_batch(worker, {"type": type_, "payload": payload})
    (outcome,) = result.outcomes
    assert outcome.status.value == "rejected"
    assert outcome.reason == f"payload of {type_!r} is invalid: {reason}"
    assert len(slack.texts) == 1 and slack.texts[0].startswith(":warning: Worker rejected a message")


def test_payload_models_keep_letsgos_extra_item_attributes():
    payload = TenantDeletedPayload.model_validate({"tenant": DELETED_TENANT, "cancelledPlanId": "pro"})
    assert payload.tenant.ttl == 1707465600
    assert payload.tenant.plan.stripeSubscription.card.brand == "visa"
    assert TenantNewPayload.model_validate({"tenant": TENANT}).tenant.createdBy.identity_id == AUTH0_ID
    assert ContactPayload.model_validate(CONTACT).query == {"from": "pricing", "plan": "custom"}


def test_the_builtin_types_are_listed_with_their_plugin(worker):
    entries = {entry.type: entry for entry in worker.registry if entry.plugin == "letsgo_builtins"}
    assert sorted(entries) == ["letsgo:contact", "letsgo:tenant:deleted", "letsgo:tenant:new"]
    assert all(entry.distribution == "letsgo-worker" and entry.is_async for entry in entries.values())


# -------------------------------------------------------------------------
# Identity ids, as @letsgo/trust serialises them
# -------------------------------------------------------------------------


def test_serialize_identity_matches_letsgo():
    assert serialize_identity(AUTH0["iss"], AUTH0["sub"]) == AUTH0_ID
    assert serialize_identity(GOOGLE["iss"], GOOGLE["sub"]) == GOOGLE_ID


TRICKY = [
    ("https://issuer.example/ü ñ", "a b!*()~'&=+/?#"),
    ("https://login.example.com", "user:with:colons@example.com"),
    ("iss-😀", "sub%41;,$[]{}|\\^`\"<>"),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_serialize_identity_matches_javascript_encode_uri_component():
    script = (
        "const ids = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(ids.map(([iss, sub]) => "
        "`idn-${Buffer.from(`${encodeURIComponent(iss)}:${encodeURIComponent(sub)}`).toString('hex')}`)));"
    )
    done = subprocess.run(
        ["node", "-e", script, json.dumps(TRICKY)], capture_output=True, text=True, timeout=30, check=True
    )
    assert [serialize_identity(iss, sub) for iss, sub in TRICKY] == json.loads(done.stdout)


# -------------------------------------------------------------------------
# Without a sink, no text is built
# -------------------------------------------------------------------------

TEXTS = {"letsgo:contact": "contact_text", "letsgo:tenant:new": "tenant_new_text",
         "letsgo:tenant:deleted": "tenant_deleted_text"}
PAYLOADS = {"letsgo:contact": CONTACT, "letsgo:tenant:new": {"tenant": TENANT},
            "letsgo:tenant:deleted": {"tenant": DELETED_TENANT, "cancelledPlanId": "starter"}}


@pytest.mark.parametrize("type_", sorted(TEXTS))
def test_without_a_sink_the_notification_text_is_not_built(make_worker, monkeypatch, caplog, type_):
    import host.builtins

    def unwanted(*args):
        raise AssertionError("a notification text was built with nobody to send it to")

    monkeypatch.setattr(host.builtins, TEXTS[type_], unwanted)
    caplog.set_level(logging.INFO, "letsgo")
    worker = make_worker(env={})  # letsgo-slack installed, LETSGO_SLACK_URL unset: no sink
    assert not worker.notifies
    result = run_batch(worker, {"type": type_, "payload": PAYLOADS[type_]})
    assert result.response() == {"batchItemFailures": []}, [o.reason for o in result.outcomes]
    assert [r.name for r in caplog.records if r.name.startswith("letsgo.plugin.")] == []  # a success: DEBUG only


@pytest.mark.parametrize("type_", sorted(TEXTS))
def test_a_handled_builtin_message_logs_its_line_at_debug_only(make_worker, caplog, type_):
    worker = make_worker(env={})
    caplog.set_level(logging.INFO, "letsgo")
    run_batch(worker, {"type": type_, "payload": PAYLOADS[type_]})
    assert [r for r in caplog.records if r.name == "letsgo.plugin.letsgo_builtins"] == []
    assert [r.getMessage()[:12] for r in caplog.records if r.name == "letsgo.batch"] == ["batch of 1: "]
    caplog.clear()
    caplog.set_level(logging.DEBUG, "letsgo")
    run_batch(worker, {"type": type_, "payload": PAYLOADS[type_]})
    (line,) = [r for r in caplog.records if r.name == "letsgo.plugin.letsgo_builtins"]
    assert line.levelno == logging.DEBUG and line.message_type == type_


def test_without_a_sink_the_debug_log_still_shows_the_text(make_worker, caplog):
    caplog.set_level(logging.DEBUG, "letsgo.notify")
    worker = make_worker(env={})
    assert worker.notifies
    run_batch(worker, {"type": "letsgo:contact", "payload": CONTACT})
    (record,) = [r for r in caplog.records if r.name == "letsgo.notify"]
    assert record.getMessage().startswith("no notification sink installed; not sent: :wave: New contact form submission\n")


def test_notifies_is_true_once_a_sink_is_installed(make_worker, slack):
    assert not make_worker(env={}).notifies
    assert make_worker(env={"LETSGO_SLACK_URL": slack.url}).notifies
