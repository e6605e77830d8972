"""Calling the app's API: the worker's access token and an HTTP client that sends it.

The token is an RS256 JWT that LetsGo's trust package accepts from a built-in
PKI issuer: header ``kid`` = the first 16 hex characters of the SHA-256 of the
public key's SPKI PEM, ``iss`` = ``letsgo:<kid>``, ``sub`` = ``letsgo:worker``,
``aud`` = ``LETSGO_API_AUDIENCE`` (default ``letsgo:service``), valid one hour.
The private key comes from ``LETSGO_PKI_PRIVATE_KEY`` (PEM text) or
``LETSGO_PKI_PRIVATE_KEY_FILE``.

cryptography, PyJWT and httpx are imported only when a token or client is
first needed: a Lambda cold start that never calls the API pays nothing.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from host.config import Settings, load_dotenv_file
from host.errors import ConfigError, StartupError, WorkerError

if TYPE_CHECKING:
    import argparse

    import httpx

#: The prefix LetsGo gives its built-in issuers and well-known subjects.
VENDOR_PREFIX = "letsgo"
#: The ``sub`` claim of every token the worker mints, as in LetsGo's worker.
WORKER_SUBJECT = f"{VENDOR_PREFIX}:worker"
#: How long a token is valid, in seconds.
TOKEN_LIFETIME_SECONDS = 3600
#: A cached token is replaced this many seconds before it expires.
RENEW_BEFORE_EXPIRY_SECONDS = 60
#: Size of the RSA keys ``keygen`` writes (LetsGo's issuers use the same).
KEY_BITS = 4096
#: Most characters of a response body an :class:`ApiError` message quotes.
ERROR_BODY_EXCERPT = 500


class AccessTokenError(StartupError):
    """The worker cannot mint an access token: its private key is missing or unusable."""


class ApiError(WorkerError):
    """The app's API answered with an HTTP error status.

    :ivar method: the request method
    :ivar path: the URL path (without the query string, which may hold secrets)
    :ivar status: the HTTP status code
    :ivar body: an excerpt of the response body, at most ``ERROR_BODY_EXCERPT`` characters
    :ivar response: the ``httpx.Response``
    """

    def __init__(self, method: str, path: str, status: int, reason: str, body: str, response: Any = None):
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.response = response
        detail = f": {body}" if body else ""
        super().__init__(f"API call {method} {path} failed: HTTP {status} {reason}".rstrip() + detail)

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Build the error from a response whose body has been read."""
        text = " ".join(response.text.split())
        if len(text) > ERROR_BODY_EXCERPT:
            text = text[:ERROR_BODY_EXCERPT] + f"... ({len(text) - ERROR_BODY_EXCERPT} more characters)"
        return cls(
            response.request.method, response.request.url.path, response.status_code,
            response.reason_phrase, text, response,
        )


# -- keys -------------------------------------------------------------------


def public_key_pem(public_key: Any) -> bytes:
    """The SPKI PEM of a public key, byte for byte as Node.js writes it (64-column base64)."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(public_key: Any) -> str:
    """LetsGo's key id: the first 16 hex characters of the SHA-256 of the SPKI PEM."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()[:16]


#: Where ``letsgo-worker keygen`` writes the private key, relative to the working directory; read when
#: neither LETSGO_PKI_PRIVATE_KEY nor LETSGO_PKI_PRIVATE_KEY_FILE is set.
DEFAULT_KEY_FILE = os.path.join(".letsgo", "worker-key.pem")


def _read_private_key_text(settings: Settings) -> tuple[str, bytes]:
    """The PEM text of the private key and the name of the variable (or file) it came from.

    ``LETSGO_PKI_PRIVATE_KEY``, else ``LETSGO_PKI_PRIVATE_KEY_FILE``, else
    :data:`DEFAULT_KEY_FILE` when it exists.
    """
    if settings.pki_private_key and settings.pki_private_key_file:
        raise AccessTokenError(
            "both LETSGO_PKI_PRIVATE_KEY and LETSGO_PKI_PRIVATE_KEY_FILE are set: set only one of them"
        )
    if settings.pki_private_key:
        text = settings.pki_private_key.strip()
        # A PEM pasted into a one-line .env value or a console field often carries "\n" escapes.
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return "LETSGO_PKI_PRIVATE_KEY", text.encode()
    if settings.pki_private_key_file:
        path = settings.pki_private_key_file
        try:
            with open(path, "rb") as file:
                return f"LETSGO_PKI_PRIVATE_KEY_FILE={path!r}", file.read()
        except OSError as error:
            raise AccessTokenError(
                f"LETSGO_PKI_PRIVATE_KEY_FILE={path!r} cannot be read: {error.strerror or error}"
            ) from None
    if os.path.isfile(DEFAULT_KEY_FILE):
        # Where `letsgo-worker keygen` writes the key by default: it works at once, with no variable to set.
        with open(DEFAULT_KEY_FILE, "rb") as file:
            return f"{DEFAULT_KEY_FILE} (keygen's default path)", file.read()
    raise AccessTokenError(
        "no private key for the worker's access tokens: set LETSGO_PKI_PRIVATE_KEY to a PEM private key "
        f"or LETSGO_PKI_PRIVATE_KEY_FILE to a file holding one (`letsgo-worker keygen` writes a new key pair "
        f"to {DEFAULT_KEY_FILE}, which is then read without either)"
    )


def load_private_key(settings: Settings) -> Any:
    """Load the worker's RSA private key from the settings; raise :class:`AccessTokenError`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    source, data = _read_private_key_text(settings)
    try:
        # Validating a 4096-bit key's mathematics costs about 0.3 s, paid on every cold start; the
        # key is the operator's own, and a corrupt one still fails loudly: the API refuses its tokens.
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise AccessTokenError(f"{source} holds an encrypted private key: give an unencrypted PEM key") from None
    except ValueError as error:
        raise AccessTokenError(
            f"{source} is not a PEM private key ({error}); expected '-----BEGIN PRIVATE KEY-----' "
            "or '-----BEGIN RSA PRIVATE KEY-----'"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AccessTokenError(f"{source} holds a {type(key).__name__}: RS256 tokens need an RSA key")
    return key


def generate_key_pair(bits: int = KEY_BITS) -> tuple[bytes, bytes, str]:
    """A new RSA key pair: (PKCS#8 private key PEM, SPKI public key PEM, kid)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem, public_key_pem(key.public_key()), key_id(key.public_key())


# -- tokens -----------------------------------------------------------------


def create_access_token(
    private_key: Any,
    *,
    audience: str,
    subject: str = WORKER_SUBJECT,
    lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
    now: float | None = None,
) -> str:
    """Sign one RS256 access token with ``private_key`` (an RSA key object)."""
    import jwt

    if not audience:
        raise AccessTokenError("LETSGO_API_AUDIENCE is empty: set it to the audience your API expects")
    kid = key_id(private_key.public_key())
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": f"{VENDOR_PREFIX}:{kid}",
        "sub": subject,
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + lifetime_seconds,
    }
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})


class AccessTokens:
    """The worker's access token, minted on first use and renewed before it expires.

    One instance is safe to share between threads and asyncio tasks: renewal
    happens under a lock that is never held across an ``await``.

    :param settings: where the key and audience come from (default: the environment)
    :param clock: a function returning the current Unix time; tests pass a controlled one
    """

    def __init__(self, settings: Settings | None = None, *, clock: Callable[[], float] = time.time):
        self.settings = settings if settings is not None else Settings.from_env()
        self.clock = clock
        self._lock = threading.Lock()
        self._key: Any = None
        # (token, renew at): one tuple, so a reader never pairs a token with another's deadline.
        self._current: tuple[str, float] | None = None
        self.minted = 0  # how many tokens this instance has signed

    def get(self) -> str:
        """A valid token: the cached one, or a new one when it expires within a minute."""
        current = self._current
        if current is not None and self.clock() < current[1]:
            return current[0]
        with self._lock:
            current = self._current
            if current is None or self.clock() >= current[1]:
                current = self._mint()
            return current[0]

    def renew(self) -> str:
        """Mint a new token now, whatever the age of the cached one."""
        with self._lock:
            return self._mint()[0]

    def _mint(self) -> tuple[str, float]:
        if self._key is None:
            self._key = load_private_key(self.settings)
        now = self.clock()
        token = create_access_token(self._key, audience=self.settings.api_audience, now=now)
        self._current = (token, int(now) + TOKEN_LIFETIME_SECONDS - RENEW_BEFORE_EXPIRY_SECONDS)
        self.minted += 1
        return self._current


_default_tokens: AccessTokens | None = None
_default_lock = threading.Lock()


def default_access_tokens() -> AccessTokens:
    """The process's shared :class:`AccessTokens`, configured from the environment (and ``.env``)."""
    global _default_tokens
    if _default_tokens is None:
        with _default_lock:
            if _default_tokens is None:
                load_dotenv_file()
                _default_tokens = AccessTokens(Settings.from_env())
    return _default_tokens


def reset_access_tokens() -> None:
    """Forget the shared token and key (after changing the environment, or in tests)."""
    global _default_tokens
    with _default_lock:
        _default_tokens = None


def get_access_token() -> str:
    """An access token for the app's API: ``Authorization: Bearer <token>``.

    Cached for the hour it is valid and renewed a minute before it expires.
    Raises :class:`AccessTokenError` when no usable private key is configured.
    """
    return default_access_tokens().get()


# -- HTTP clients -------------------------------------------------------------

_auth_class: type | None = None


def bearer_auth(tokens: AccessTokens) -> httpx.Auth:
    """An ``httpx.Auth`` that puts a current token from ``tokens`` on every request."""
    global _auth_class
    if _auth_class is None:
        import httpx

        class BearerTokenAuth(httpx.Auth):
            """Adds ``Authorization: Bearer <worker access token>``; renews the token when due."""

            def __init__(self, tokens: AccessTokens):
                self.tokens = tokens

            def auth_flow(self, request):
                request.headers["Authorization"] = f"Bearer {self.tokens.get()}"
                yield request

        _auth_class = BearerTokenAuth
    return _auth_class(tokens)


def _base_url(settings: Settings, base_url: str | None) -> str:
    url = base_url or settings.api_url
    if not url:
        raise ConfigError(
            "LETSGO_API_URL is not set: set it to the base URL of your app's API "
            "(for LetsGo running locally, http://localhost:3001)"
        )
    return url


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        response.read()
        raise ApiError.from_response(response)


async def _araise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        await response.aread()
        raise ApiError.from_response(response)


def api_client(
    *, base_url: str | None = None, tokens: AccessTokens | None = None, timeout: float = 30.0, **options: Any
) -> httpx.Client:
    """An ``httpx.Client`` for the app's API (``LETSGO_API_URL``), authenticated as the worker.

    Relative URLs resolve against the base URL; every request carries a current
    bearer token; an HTTP error status raises :class:`ApiError`. Use it as a
    context manager::

        with api_client() as api:
            orders = api.get("/v1/orders").json()

    Extra keyword ``options`` go to ``httpx.Client``.
    """
    import httpx

    tokens = tokens or default_access_tokens()
    return httpx.Client(
        base_url=_base_url(tokens.settings, base_url), auth=bearer_auth(tokens), timeout=timeout,
        follow_redirects=True, event_hooks={"response": [_raise_for_status]}, **options,
    )


def async_api_client(
    *, base_url: str | None = None, tokens: AccessTokens | None = None, timeout: float = 30.0, **options: Any
) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of :func:`api_client`, for ``async def`` handlers::

        async with async_api_client() as api:
            response = await api.post("/v1/orders", json=order)
    """
    import httpx

    tokens = tokens or default_access_tokens()
    return httpx.AsyncClient(
        base_url=_base_url(tokens.settings, base_url), auth=bearer_auth(tokens), timeout=timeout,
        follow_redirects=True, event_hooks={"response": [_araise_for_status]}, **options,
    )


# -- command line -------------------------------------------------------------


def public_key_path(private_key_path: str) -> str:
    """Where ``keygen`` writes the public key: ``worker-key.pem`` -> ``worker-key.pub.pem``."""
    stem = private_key_path[:-4] if private_key_path.endswith(".pem") else private_key_path
    return stem + ".pub.pem"


def _write_file(path: str, data: bytes, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    descriptor = os.open(path, flags, mode)
    try:
        os.fchmod(descriptor, mode)  # an overwritten file keeps its old mode otherwise
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


def cli_keygen(args: argparse.Namespace) -> int:
    """``letsgo-worker keygen [--out FILE] [--force]``: write a new key pair and print its kid."""
    private_path = args.out
    public_path = public_key_path(private_path)
    if not args.force:
        existing = [path for path in (private_path, public_path) if os.path.exists(path)]
        if existing:
            print(
                f"letsgo-worker: error: {existing[0]} already exists; use --force to overwrite it",
                file=sys.stderr,
            )
            return 2
    private_pem, public_pem, kid = generate_key_pair()
    try:
        directory = os.path.dirname(private_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        _write_file(private_path, private_pem, 0o600, args.force)
        _write_file(public_path, public_pem, 0o644, args.force)
    except OSError as error:
        print(f"letsgo-worker: error: cannot write the key pair to {private_path}: {error.strerror}", file=sys.stderr)
        return 2
    print(kid)
    print(
        f"wrote {private_path} (private, mode 0600) and {public_path} (public).\n"
        f"Tokens will be issued by {VENDOR_PREFIX}:{kid}; set LETSGO_PKI_PRIVATE_KEY_FILE={private_path} "
        "and trust this public key in your API.",
        file=sys.stderr,
    )
    return 0


def cli_token(args: argparse.Namespace) -> int:
    """``letsgo-worker token``: print an access token alone on stdout, e.g. for curl."""
    print(get_access_token())
    return 0
