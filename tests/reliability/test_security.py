"""Security: loopback by default, secrets kept out of every log and error, tokens and signatures checked.

The secret-leak test runs a real server with every secret set and every log
turned up (DEBUG, plugin tracing), makes each secret's code path fail in the
ways that produce error messages (a Slack webhook that answers errors echoing
its URL, refused Stripe signatures, notifications that fail a message into the
dead-letter queue), then searches everything a person could read: the server's
output, every HTTP answer, and ``dlq list``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from base64 import urlsafe_b64decode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .reliability_kit import (
    Server,
    clean_env,
    drained,
    install_ledger_plugin,
    post,
    read_ledger,
    run_cli,
    server_env,
    stored_count,
    wait_until,
)

STRIPE_EVENT = Path(__file__).parents[2] / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe" / "invoice.paid.json"


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, read from ``/proc/net/tcp{,6}``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_server_binds_loopback_by_default_and_says_so(tmp_path):
    with Server(tmp_path / "queue.db", tmp_path / "server.log", server_env()) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert f"listening on http://127.0.0.1:{server.port}" in server.log()
        assert listening_addresses(server.port) == {"0100007F"}, "the server listens beyond 127.0.0.1"


# -- secrets --------------------------------------------------------------------------

SLACK_PATH = "/services/T0RELSECRET/B0RELSECRET/XXslackTOKENxx0123456789"
WEBHOOK_SECRET = "whsec_RELsecretSIGNINGkey0123456789abcdef"


class EchoingSlack(BaseHTTPRequestHandler):
    """A Slack webhook that fails and, worst case, echoes the URL it was called on."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"invalid_token: no webhook at {self.path} (http://{self.headers.get('Host')}{self.path})".encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echoing_slack():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoingSlack)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}{SLACK_PATH}"
    httpd.shutdown()
    httpd.server_close()


def stripe_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's scheme, computed here with hmac: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def secret_fragments(secret: str, size: int = 12) -> list[str]:
    """The secret and every ``size``-character slice of it: a partial leak counts too."""
    return [secret] + [secret[i:i + size] for i in range(0, max(1, len(secret) - size + 1), 4)]


def pem_fragments(pem: str) -> list[str]:
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [line[i:i + 24] for line in lines for i in range(0, len(line) - 23, 20)]


@pytest.fixture(scope="module")
def private_key_pem(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("key") / "worker-key.pem"
    result = run_cli("keygen", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out.read_text()


def test_secrets_never_appear_in_logs_answers_or_the_dlq(tmp_path, echoing_slack, private_key_pem):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        LETSGO_WORKER_PLUGINS="relledger,letsgo_stripe,letsgo_slack",
        LETSGO_SLACK_URL=echoing_slack,
        LETSGO_STRIPE_TEST_WEBHOOK_KEY=WEBHOOK_SECRET,
        LETSGO_PKI_PRIVATE_KEY=private_key_pem,
        LETSGO_WORKER_LOG_LEVEL="DEBUG",
        LETSGO_WORKER_TRACE_PLUGINS="1",
        LETSGO_WORKER_MAX_RECEIVE_COUNT="2",
        LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.01",
        LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.05",
    )
    answers = []
    with Server(tmp_path / "queue.db", tmp_path / "server.log", env) as server:
        def send(body, headers=None, path="/"):
            status, reply, _ = post(server.url + path, body, headers=headers)
            answers.append(json.dumps(reply) if not isinstance(reply, str) else reply)
            return status, reply

        assert send({"type": "rel.token", "payload": {"n": 1}})[0] == 201  # signs a token with the key
        assert send({"type": "rel.notify", "payload": {"n": 2}})[0] == 201  # Slack fails: retried, dead-lettered
        assert send({"type": "toString"})[0] == 201  # rejected: its notification fails too

        event = STRIPE_EVENT.read_bytes()
        hook = "/stripe/webhook"
        assert send(event, path=hook)[0] == 400  # no signature
        assert send(event, {"Stripe-Signature": "garbage"}, hook)[0] == 400
        assert send(event, {"Stripe-Signature": stripe_signature(event, "whsec_wrong")}, hook)[0] == 400
        assert send(event, {"Stripe-Signature": stripe_signature(event, WEBHOOK_SECRET, 1_000_000_000)}, hook)[0] == 400
        assert send(event + b" ", {"Stripe-Signature": stripe_signature(event, WEBHOOK_SECRET)}, hook)[0] == 400
        status, reply = send(event, {"Stripe-Signature": stripe_signature(event, WEBHOOK_SECRET)}, hook)
        assert status == 200 and reply["stripeMode"] == "TEST", reply

        wait_until(lambda: drained(server.url), 120, message="every message to settle")
        assert {n for kind, n, *_ in read_ledger(ledger) if kind == "ok"} == {1}
        dlq = run_cli("dlq", "list", "--json", "--db", server.db)
        letters = json.loads(dlq.stdout)
        # The Stripe event's handler notifies too, so with Slack failing it is dead-lettered as well.
        assert {json.loads(d["body"])["type"] for d in letters} == {"rel.notify", "toString", "letsgo:stripe"}
        notify_letter = next(d for d in letters if json.loads(d["body"])["type"] == "rel.notify")
        assert "403" in notify_letter["last_error"], "the reason should still say what Slack answered"
    log = server.log()
    haystack = "\n".join([log, dlq.stdout, dlq.stderr, *answers])

    assert "Slack" in log or "slack" in log, "the Slack failure should be logged"
    leaks = [f for f in secret_fragments(SLACK_PATH) + ["T0RELSECRET", "B0RELSECRET", "XXslackTOKEN"] if f in haystack]
    assert leaks == [], f"the Slack URL leaked: {leaks[:3]}"
    leaks = [f for f in secret_fragments(WEBHOOK_SECRET) if f in haystack]
    assert leaks == [], f"the Stripe webhook secret leaked: {leaks[:3]}"
    leaks = [f for f in pem_fragments(private_key_pem) if f in haystack]
    assert leaks == [], f"the private key leaked: {leaks[:3]}"


@pytest.mark.parametrize(
    "variable,value",
    [
        ("LETSGO_PKI_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDRELsecretBODY\n-----END PRIVATE KEY-----\n"),
        ("LETSGO_PKI_PRIVATE_KEY", "RELsecretNOTaPEMatAllButSecret0123456789"),
    ],
    ids=["corrupt-pem", "not-pem"],
)
def test_unusable_private_key_is_named_but_never_shown(variable, value):
    result = run_cli("token", env=clean_env(**{variable: value}))
    assert result.returncode == 2, result
    assert variable in result.stderr and "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    body = "".join(line for line in value.splitlines() if not line.startswith("-----"))
    assert [f for f in secret_fragments(body, 10) if f in output] == [], output


def test_unusable_private_key_file_is_named_but_its_content_never_shown(tmp_path):
    key_file = tmp_path / "key.pem"
    key_file.write_text("-----BEGIN RSA PRIVATE KEY-----\nRELsecretFILEcontent0123456789abcdefXYZ\n-----END RSA PRIVATE KEY-----\n")
    result = run_cli("token", env=clean_env(LETSGO_PKI_PRIVATE_KEY_FILE=str(key_file)))
    assert result.returncode == 2 and "LETSGO_PKI_PRIVATE_KEY_FILE" in result.stderr
    assert "RELsecretFILE" not in result.stdout + result.stderr


def test_invalid_slack_url_is_named_but_never_shown(tmp_path):
    secret_url = "htps:/hooks.slack.com/services/T0RELSECRET/B0RELSECRET/XXslackTOKENxx"
    env = server_env(LETSGO_WORKER_PLUGINS="letsgo_slack", LETSGO_SLACK_URL=secret_url)
    result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "queue.db"), env=env, timeout=120)
    assert result.returncode == 2, result
    assert "LETSGO_SLACK_URL" in result.stderr
    assert "RELSECRET" not in result.stdout + result.stderr and "XXslackTOKEN" not in result.stdout + result.stderr


def test_settings_repr_hides_every_secret(private_key_pem):
    from host.config import Settings

    settings = Settings.from_env(
        {"LETSGO_SLACK_URL": "https://hooks.slack.com" + SLACK_PATH, "LETSGO_STRIPE_TEST_WEBHOOK_KEY": WEBHOOK_SECRET,
         "LETSGO_STRIPE_LIVE_WEBHOOK_KEY": WEBHOOK_SECRET + "live", "LETSGO_PKI_PRIVATE_KEY": private_key_pem}
    )
    text = repr(settings) + str(settings)
    assert "RELSECRET" not in text and "RELsecret" not in text and "PRIVATE KEY" not in text


def test_webhook_signature_is_required_and_nothing_unsigned_is_stored(tmp_path):
    env = server_env(LETSGO_WORKER_PLUGINS="letsgo_stripe", LETSGO_STRIPE_TEST_WEBHOOK_KEY=WEBHOOK_SECRET)
    with Server(tmp_path / "queue.db", tmp_path / "server.log", env) as server:
        event = STRIPE_EVENT.read_bytes()
        for headers in ({}, {"Stripe-Signature": ""}, {"Stripe-Signature": "t=1,v1=00"},
                        {"Stripe-Signature": stripe_signature(event, WEBHOOK_SECRET).replace("v1=", "v0=")}):
            status, reply, _ = post(server.url + "/stripe/webhook", event, headers=headers)
            assert status == 400 and "Stripe-Signature" in reply["error"], (headers, reply)
        assert stored_count(server.db) == 0


# -- the worker's access token, checked by verifiers that share no code with PyJWT ---------


def b64(segment: str) -> bytes:
    return urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def textbook_rs256_verify(token: str, public_pem: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2.2), by hand: ``s^e mod n`` against the expected encoding."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    numbers = load_pem_public_key(public_pem).public_numbers()  # only to read n and e
    header, payload, signature = token.split(".")
    size = (numbers.n.bit_length() + 7) // 8
    encoded = pow(int.from_bytes(b64(signature), "big"), numbers.e, numbers.n).to_bytes(size, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(f"{header}.{payload}".encode()).digest()
    expected = b"\x00\x01" + b"\xff" * (size - 3 - len(digest_info) - len(digest)) + b"\x00" + digest_info + digest
    return hmac.compare_digest(encoded, expected)


def test_access_token_is_verified_by_independent_verifiers(tmp_path):
    key_file = tmp_path / "worker-key.pem"
    assert run_cli("keygen", "--out", str(key_file)).returncode == 0
    public_pem = (tmp_path / "worker-key.pub.pem").read_bytes()
    result = run_cli("token", env=clean_env(LETSGO_PKI_PRIVATE_KEY_FILE=str(key_file)))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    kid = hashlib.sha256(public_pem).hexdigest()[:16]

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    decoded = jwt.decode(token, RSAKey.import_key(public_pem), algorithms=["RS256"])
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": kid}
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": f"letsgo:{kid}"},
        sub={"essential": True, "value": "letsgo:worker"},
        aud={"essential": True, "value": "letsgo:service"},
        exp={"essential": True},
        iat={"essential": True},
    )
    registry.validate(decoded.claims)
    assert decoded.claims["exp"] - decoded.claims["iat"] == 3600

    assert textbook_rs256_verify(token, public_pem)
    header, payload, signature = token.split(".")
    forged = json.loads(b64(payload)) | {"sub": "letsgo:admin"}
    from base64 import urlsafe_b64encode

    forged_payload = urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert not textbook_rs256_verify(f"{header}.{forged_payload}.{signature}", public_pem)
    with pytest.raises(Exception):
        jwt.decode(f"{header}.{forged_payload}.{signature}", RSAKey.import_key(public_pem), algorithms=["RS256"])

    other = tmp_path / "other-key.pem"
    assert run_cli("keygen", "--out", str(other)).returncode == 0
    assert not textbook_rs256_verify(token, (tmp_path / "other-key.pub.pem").read_bytes())
