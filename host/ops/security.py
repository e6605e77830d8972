"""What keeps the dashboard safe by default: the token, the same-origin check, CSRF and read-only mode.

- **Token.** Bound beyond loopback, every page and ``/metrics`` require
  ``LETSGO_WORKER_DASHBOARD_TOKEN``: an ``Authorization: Bearer`` header (for
  scrapers and scripts) or the cookie the login form sets (for people). With no
  token configured there, the dashboard refuses every request and says which
  variable to set, rather than showing the queue to the network. On loopback a
  configured token is required too; none configured means open to this machine,
  under a loopback name only (a ``Host`` such as ``evil.example`` is refused, so
  that DNS rebinding cannot make another site's page same-origin with it).
- **Same origin.** An action (any POST) carrying another site's ``Origin`` or a
  ``Sec-Fetch-Site`` of ``cross-site``/``same-site`` is refused with 403, so a
  page a user visits cannot drive the dashboard through the user's browser.
- **CSRF.** Every form carries a token, an HMAC of a per-process secret, that
  only a page of the dashboard itself can read; an action without it is refused.
- **Read-only.** ``--read-only`` (``LETSGO_WORKER_DASHBOARD_READ_ONLY``) shows
  everything and refuses every action.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from host.local.routes import Headers

#: The cookie the login form sets; its value is derived from the token, never the token itself.
SESSION_COOKIE = "letsgo_dashboard"
#: The form field (and ``X-CSRF-Token`` header) that carries the CSRF token.
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: its status, and a sentence saying what to do."""

    status: int
    message: str


class Guard:
    """The dashboard's checks, made once per process.

    :param token: the configured dashboard token, or None.
    :param loopback: whether the server is bound to loopback only.
    :param read_only: whether actions are refused.
    """

    def __init__(self, *, token: str | None, loopback: bool, read_only: bool) -> None:
        self.token = token or None
        self.loopback = loopback
        self.read_only = read_only
        # Per process: a restart makes old pages' forms stale, which is harmless (reload the page).
        self._secret = secrets.token_bytes(32)
        self.csrf_token = hmac.new(self._secret, b"dashboard actions", hashlib.sha256).hexdigest()

    @property
    def needs_login(self) -> bool:
        """Whether a person must log in with the token (a token is configured)."""
        return self.token is not None

    def session_value(self) -> str:
        """The login cookie's value: a digest of the token, so the cookie never holds the token itself."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"letsgo dashboard session", hashlib.sha256).hexdigest()

    def token_matches(self, candidate: str) -> bool:
        """Whether ``candidate`` is the configured token (compared in constant time)."""
        return self.token is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def authenticate(self, headers: Headers) -> Refusal | None:
        """None when the request may see the dashboard; else why not (401, or 403 with nothing configured)."""
        if self.token is None:
            if self.loopback:
                # A page of another site whose name is made to resolve to 127.0.0.1 (DNS rebinding) would
                # otherwise be same-origin with the dashboard: on loopback, only loopback names are served.
                host = headers.get("Host", "")
                if not is_loopback_name(host):
                    return Refusal(403, f"refused: Host {host[:100]!r} is not a name of this machine; open the "
                                        "dashboard at http://127.0.0.1:PORT/dashboard (or set LETSGO_WORKER_DASHBOARD_TOKEN)")
                return None
            return Refusal(403, "the dashboard and /metrics are bound beyond this machine and need a token: "
                                "set LETSGO_WORKER_DASHBOARD_TOKEN and restart")
        authorization = headers.get("Authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return None
        cookie = cookies(headers).get(SESSION_COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.session_value().encode()):
            return None
        return Refusal(401, "this dashboard needs its token (LETSGO_WORKER_DASHBOARD_TOKEN): "
                            "log in at /dashboard/login or send Authorization: Bearer TOKEN")

    def same_origin(self, headers: Headers) -> Refusal | None:
        """None when a POST comes from the dashboard's own origin (or from no browser page at all)."""
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return Refusal(403, f"refused: this action came from another site (Sec-Fetch-Site: {site[:40]}); "
                                "actions are taken from the dashboard's own pages")
        origin = headers.get("Origin")
        if origin is not None:
            # The scheme is not compared: behind a TLS proxy the page is https while this server speaks http.
            if origin == "null" or urlsplit(origin).netloc.lower() != headers.get("Host", "").lower():
                return Refusal(403, f"refused: this action came from another origin ({origin[:100]}); "
                                    "actions are taken from the dashboard's own pages")
        return None

    def check_action(self, headers: Headers, form: dict[str, list[str]]) -> Refusal | None:
        """None when an action may run: same origin, the CSRF token, and not read-only."""
        refusal = self.same_origin(headers)
        if refusal is not None:
            return refusal
        sent = (form.get(CSRF_FIELD) or [headers.get("X-CSRF-Token", "")])[0]
        if not hmac.compare_digest(sent.encode(), self.csrf_token.encode()):
            return Refusal(403, "refused: the form's CSRF token is missing or stale; reload the page and try again")
        if self.read_only:
            return Refusal(403, "this dashboard is read-only (--read-only or LETSGO_WORKER_DASHBOARD_READ_ONLY): "
                                "actions are refused")
        return None


def is_loopback_name(host: str) -> bool:
    """Whether a Host header value names this machine: localhost, 127.0.0.0/8 or [::1], with any port."""
    import ipaddress

    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookies(headers: Headers) -> dict[str, str]:
    """The request's cookies by name (the first of each)."""
    found: dict[str, str] = {}
    for part in headers.get("Cookie", "").replace(",", ";").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in found:
            found[name] = value
    return found


#: Headers on every dashboard answer: no script, style or frame from anywhere else, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
