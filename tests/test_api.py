"""The worker's access token and API client, against a real HTTP server that verifies every token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from host.services.api import (
    ERROR_BODY_EXCERPT,
    RENEW_BEFORE_EXPIRY_SECONDS,
    TOKEN_LIFETIME_SECONDS,
    AccessTokenError,
    AccessTokens,
    ApiError,
    api_client,
    async_api_client,
    key_id,
    load_private_key,
    public_key_path,
    reset_access_tokens,
)
from host.config import Settings
from host.errors import ConfigError

AUDIENCE = "letsgo:service"
CLI = [sys.executable, "-m", "host.cli"]


def spki_pem_by_hand(public_key) -> bytes:
    """The SPKI PEM as Node.js writes it, built from the DER without cryptography's PEM writer."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = base64.b64encode(der).decode()
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN PUBLIC KEY-----\n{lines}\n-----END PUBLIC KEY-----\n".encode()


@pytest.fixture(scope="module")
def key():
    """A test RSA key (2048 bits keeps the suite fast; keygen's 4096 is tested through the CLI)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = spki_pem_by_hand(private.public_key())
    kid = hashlib.sha256(public_pem).hexdigest()[:16]
    return {"private": private, "pem": pem, "public_pem": public_pem, "kid": kid}


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # 20 concurrent connections must not overflow the listen backlog
    daemon_threads = True


class VerifyingApi:
    """A real HTTP API on 127.0.0.1 that checks each bearer token with PyJWT, as LetsGo's API would."""

    def __init__(self, public_pem: bytes, kid: str, audience: str = AUDIENCE):
        self.public_pem = public_pem
        self.kid = kid
        self.audience = audience
        self.accepted: list[dict] = []
        self.rejected: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self)

            do_POST = do_DELETE = do_GET

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def verify(self, header: str | None) -> dict:
        if not header or not header.startswith("Bearer "):
            raise jwt.InvalidTokenError("no bearer token")
        token = header[len("Bearer "):]
        if jwt.get_unverified_header(token).get("kid") != self.kid:
            raise jwt.InvalidTokenError("unknown kid")
        return jwt.decode(
            token, self.public_pem, algorithms=["RS256"], audience=self.audience, issuer=f"letsgo:{self.kid}",
            options={"require": ["exp", "iat", "iss", "sub", "aud"]},
        )

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        try:
            claims = self.verify(request.headers.get("Authorization"))
        except jwt.InvalidTokenError as error:
            self.rejected.append(str(error))
            self.reply(request, 401, {"error": f"invalid token: {error}"})
            return
        self.accepted.append(claims)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        path = request.path.split("?")[0]
        if path == "/v1/fail":
            self.reply(request, 500, {"error": "database exploded " + "x" * 5000})
        elif path == "/v1/missing":
            self.reply(request, 404, {"error": "no such order"})
        else:
            self.reply(request, 200, {"path": path, "sub": claims["sub"], "body": body.decode()})

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def api(key):
    with VerifyingApi(key["public_pem"], key["kid"]) as server:
        yield server


def settings_for(key, api_url: str | None = None, **environ) -> Settings:
    values = {"LETSGO_PKI_PRIVATE_KEY": key["pem"]}
    if api_url:
        values["LETSGO_API_URL"] = api_url
    values.update(environ)
    return Settings.from_env(values)


# -- the token ------------------------------------------------------------------


def test_token_has_letsgo_claims_and_kid(key):
    tokens = AccessTokens(settings_for(key))
    token = tokens.get()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": key["kid"]}
    assert key_id(key["private"].public_key()) == key["kid"]
    claims = jwt.decode(token, key["public_pem"], algorithms=["RS256"], audience=AUDIENCE)
    assert claims["iss"] == f"letsgo:{key['kid']}"
    assert claims["sub"] == "letsgo:worker"
    assert claims["aud"] == "letsgo:service"
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_SECONDS == 3600


def test_audience_comes_from_letsgo_api_audience(key):
    token = AccessTokens(settings_for(key, LETSGO_API_AUDIENCE="https://api.example.com")).get()
    claims = jwt.decode(token, key["public_pem"], algorithms=["RS256"], audience="https://api.example.com")
    assert claims["aud"] == "https://api.example.com"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_kid_and_signature_agree_with_node_crypto(key):
    """Node computes the kid as LetsGo's trust package does and verifies the RS256 signature."""
    token = AccessTokens(settings_for(key)).get()
    script = textwrap.dedent(
        """
        const crypto = require("crypto");
        const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
        const publicKey = crypto.createPublicKey(input.privateKey).export({ type: "spki", format: "pem" });
        const kid = crypto.createHash("sha256").update(publicKey).digest("hex").substring(0, 16);
        const [header, payload, signature] = input.token.split(".");
        const valid = crypto.createVerify("RSA-SHA256").update(`${header}.${payload}`)
          .verify(publicKey, Buffer.from(signature, "base64url"));
        console.log(JSON.stringify({ kid, valid }));
        """
    )
    result = subprocess.run(
        ["node", "-e", script], input=json.dumps({"privateKey": key["pem"], "token": token}),
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert json.loads(result.stdout) == {"kid": key["kid"], "valid": True}


def test_renewed_a_minute_before_expiry_with_a_controlled_clock(key, api):
    # Start the clock so that the first token expires 50 s from real time: the API,
    # which checks expiry against its own real clock, accepts both tokens.
    now = [time.time() - (TOKEN_LIFETIME_SECONDS - 50)]
    tokens = AccessTokens(settings_for(key, api.url), clock=lambda: now[0])
    first = tokens.get()
    issued = jwt.decode(first, options={"verify_signature": False})["iat"]

    now[0] = issued + TOKEN_LIFETIME_SECONDS - RENEW_BEFORE_EXPIRY_SECONDS - 1
    assert tokens.get() == first
    with api_client(tokens=tokens) as client:
        client.get("/v1/orders")
    assert tokens.minted == 1

    now[0] = issued + TOKEN_LIFETIME_SECONDS - RENEW_BEFORE_EXPIRY_SECONDS
    second = tokens.get()
    assert second != first and tokens.minted == 2
    assert jwt.decode(second, options={"verify_signature": False})["iat"] == int(now[0])
    with api_client(tokens=tokens) as client:
        client.get("/v1/orders")
    assert [claims["iat"] for claims in api.accepted] == [issued, int(now[0])]


def test_one_token_minted_for_many_threads_and_tasks(key, api):
    tokens = AccessTokens(settings_for(key, api.url))
    barrier = threading.Barrier(16)
    seen: list[str] = []

    def take():
        barrier.wait()
        seen.append(tokens.get())

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(seen) == 16 and len(set(seen)) == 1 and tokens.minted == 1

    async def calls():
        async with async_api_client(tokens=tokens) as client:
            responses = await asyncio.gather(*(client.get(f"/v1/orders/{n}") for n in range(20)))
        return [response.json()["path"] for response in responses]

    assert asyncio.run(calls()) == [f"/v1/orders/{n}" for n in range(20)]
    assert tokens.minted == 1 and len(api.accepted) == 20


# -- key configuration errors -----------------------------------------------------


def test_missing_key_names_both_variables():
    with pytest.raises(AccessTokenError, match="LETSGO_PKI_PRIVATE_KEY.*LETSGO_PKI_PRIVATE_KEY_FILE.*keygen"):
        AccessTokens(Settings.from_env({})).get()


def test_malformed_key_names_the_variable():
    with pytest.raises(AccessTokenError, match="LETSGO_PKI_PRIVATE_KEY is not a PEM private key"):
        load_private_key(Settings.from_env({"LETSGO_PKI_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnope\n"}))


def test_unreadable_key_file_names_the_variable_and_path(tmp_path):
    missing = tmp_path / "absent.pem"
    with pytest.raises(AccessTokenError, match=f"LETSGO_PKI_PRIVATE_KEY_FILE='{missing}' cannot be read"):
        load_private_key(Settings.from_env({"LETSGO_PKI_PRIVATE_KEY_FILE": str(missing)}))


def test_garbage_key_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.pem"
    path.write_text("not a key")
    with pytest.raises(AccessTokenError, match=f"LETSGO_PKI_PRIVATE_KEY_FILE='{path}' is not a PEM private key"):
        load_private_key(Settings.from_env({"LETSGO_PKI_PRIVATE_KEY_FILE": str(path)}))


def test_non_rsa_key_is_refused():
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(AccessTokenError, match="RS256 tokens need an RSA key"):
        load_private_key(Settings.from_env({"LETSGO_PKI_PRIVATE_KEY": pem.decode()}))


def test_both_key_variables_set_is_an_error(key, tmp_path):
    settings = Settings.from_env({"LETSGO_PKI_PRIVATE_KEY": key["pem"], "LETSGO_PKI_PRIVATE_KEY_FILE": "k.pem"})
    with pytest.raises(AccessTokenError, match="set only one"):
        load_private_key(settings)


def test_pem_with_escaped_newlines_is_accepted(key):
    one_line = key["pem"].strip().replace("\n", "\\n")
    loaded = load_private_key(Settings.from_env({"LETSGO_PKI_PRIVATE_KEY": one_line}))
    assert key_id(loaded.public_key()) == key["kid"]


# -- the API client ----------------------------------------------------------------


def test_sync_client_sends_a_token_the_api_accepts(key, api):
    tokens = AccessTokens(settings_for(key, api.url))
    with api_client(tokens=tokens) as client:
        response = client.post("/v1/orders", json={"orderId": "123"})
    assert response.json() == {"path": "/v1/orders", "sub": "letsgo:worker", "body": '{"orderId":"123"}'}
    assert api.rejected == []


def test_async_client_sends_a_token_the_api_accepts(key, api):
    tokens = AccessTokens(settings_for(key, api.url))

    async def call():
        async with async_api_client(tokens=tokens) as client:
            return (await client.get("/v1/me")).json()

    assert asyncio.run(call())["sub"] == "letsgo:worker"


def test_api_rejects_a_tampered_token(key, api):
    token = AccessTokens(settings_for(key, api.url)).get()
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "letsgo:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"})
    assert response.status_code == 401
    assert "Signature verification failed" in api.rejected[-1]


def test_api_rejects_a_token_for_another_audience(key, api):
    tokens = AccessTokens(settings_for(key, api.url, LETSGO_API_AUDIENCE="someone-else"))
    with api_client(tokens=tokens) as client, pytest.raises(ApiError) as caught:
        client.get("/v1/me")
    assert caught.value.status == 401
    assert "Audience doesn't match" in api.rejected[-1]


def test_http_error_names_method_path_status_and_a_bounded_body(key, api):
    tokens = AccessTokens(settings_for(key, api.url))
    with api_client(tokens=tokens) as client, pytest.raises(ApiError) as caught:
        client.get("/v1/fail", params={"api_key": "secret-value"})
    error = caught.value
    assert (error.method, error.path, error.status) == ("GET", "/v1/fail", 500)
    assert str(error).startswith("API call GET /v1/fail failed: HTTP 500 Internal Server Error: ")
    assert "database exploded" in str(error)
    assert len(error.body) < ERROR_BODY_EXCERPT + 50 and "more characters" in error.body
    assert "secret-value" not in str(error)


def test_async_http_error_raises_api_error(key, api):
    tokens = AccessTokens(settings_for(key, api.url))

    async def call():
        async with async_api_client(tokens=tokens) as client:
            await client.delete("/v1/missing")

    with pytest.raises(ApiError, match=r'DELETE /v1/missing failed: HTTP 404 Not Found: \{"error": "no such order"\}'):
        asyncio.run(call())


def test_client_without_api_url_names_the_variable(key):
    with pytest.raises(ConfigError, match="LETSGO_API_URL is not set"):
        api_client(tokens=AccessTokens(settings_for(key)))


def test_base_url_with_a_path_prefix(key, api):
    tokens = AccessTokens(settings_for(key, f"{api.url}/prefix"))
    with api_client(tokens=tokens) as client:
        assert client.get("/v1/orders").json()["path"] == "/prefix/v1/orders"


def readme_examples() -> list[str]:
    """The Python code blocks of the README's section on calling the API."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Calling the app's API and enqueueing work", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("index", [0, 1])
def test_readme_examples_call_the_api(key, api, monkeypatch, index):
    monkeypatch.setenv("LETSGO_API_URL", api.url)
    monkeypatch.setenv("LETSGO_PKI_PRIVATE_KEY", key["pem"])
    monkeypatch.delenv("LETSGO_PKI_PRIVATE_KEY_FILE", raising=False)
    monkeypatch.delenv("LETSGO_API_AUDIENCE", raising=False)
    reset_access_tokens()
    namespace: dict = {}
    exec(compile(readme_examples()[index], f"README.md example {index + 1}", "exec"), namespace)
    logged = []
    ctx = SimpleNamespace(logger=SimpleNamespace(info=lambda text, *args: logged.append(text % args)))
    try:
        asyncio.run(namespace["my_message_handler"](None, ctx))
    finally:
        reset_access_tokens()
    assert api.accepted[-1]["sub"] == "letsgo:worker"
    assert logged == ["API call succeeded: {'path': '/v1/my/endpoint', 'sub': 'letsgo:worker', 'body': ''}"]


# -- keygen and token commands -------------------------------------------------------


def run_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LETSGO_")}
    environ.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=environ, cwd=cwd)


def test_keygen_writes_a_4096_bit_pair_and_token_prints_a_verifiable_token(tmp_path, api):
    out = tmp_path / "keys" / "worker-key.pem"
    result = run_cli("keygen", "--out", str(out))
    assert result.returncode == 0, result.stderr
    kid = result.stdout.strip()
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    public_file = tmp_path / "keys" / "worker-key.pub.pem"
    assert public_key_path(str(out)) == str(public_file)
    assert hashlib.sha256(public_file.read_bytes()).hexdigest()[:16] == kid
    private = serialization.load_pem_private_key(out.read_bytes(), password=None)
    assert private.key_size == 4096
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as LetsGo

    again = run_cli("keygen", "--out", str(out))
    assert again.returncode == 2 and "already exists; use --force" in again.stderr
    assert out.read_bytes() == private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    token = run_cli("token", env={"LETSGO_PKI_PRIVATE_KEY_FILE": str(out)}, cwd=tmp_path)
    assert token.returncode == 0, token.stderr
    lines = token.stdout.splitlines()
    assert len(lines) == 1
    api.public_pem, api.kid = public_file.read_bytes(), kid
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {lines[0]}"})
    assert response.status_code == 200 and response.json()["sub"] == "letsgo:worker"


def test_keygen_force_overwrites(tmp_path):
    out = tmp_path / "worker-key.pem"
    out.write_text("old")
    os.chmod(out, 0o644)
    result = run_cli("keygen", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_token_without_a_key_exits_2(tmp_path):
    result = run_cli("token", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "LETSGO_PKI_PRIVATE_KEY" in result.stderr


def test_importing_host_api_loads_no_heavy_library():
    code = "import sys, host.services.api; print([m for m in ('jwt', 'cryptography', 'httpx') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
