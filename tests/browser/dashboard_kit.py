"""What the dashboard's tests share: a plugin whose handler fails until its fault is fixed, a ``serve``
subprocess with it installed, and HTTP helpers that speak to the dashboard as a browser or a script would.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from host.testing import write_distribution
from reliability.reliability_kit import Server, clean_env

#: The fault plugin: ``dash.fragile`` fails until the file named by ``DASH_FIX_FILE`` exists.
FAULT_PLUGIN = '''
import os

from pydantic import BaseModel

from host import hookimpl


class Order(BaseModel):
    order: int


class InventoryOffline(Exception):
    """The fault the dashboard's tests fix by creating a file."""


def reserve_stock(message, ctx):
    if not os.path.exists(os.environ["DASH_FIX_FILE"]):
        raise InventoryOffline(f"inventory service offline while reserving order {message.payload.order}")
    with open(os.environ["DASH_FIX_FILE"] + ".handled", "a") as handled:
        handled.write(f"{ctx.message_id}\\n")


def confirm(message, ctx):
    pass


@hookimpl
def letsgo_register_messages(register):
    register("dash.fragile", reserve_stock, payload=Order, description="Reserves stock for an order (fails until fixed)")
    register("dash.ok", confirm, payload=Order, description="Always succeeds")
'''

PLUGIN = "dashfault"


def install_fault_plugin(root: Path) -> Path:
    """Install the fault plugin as distribution ``dash-fault`` under ``root``; return ``root``."""
    write_distribution(root, "dash-fault", PLUGIN, FAULT_PLUGIN, version="2.3.0")
    return root


#: A plugin that cannot be imported: the dashboard lists it among the plugins that failed to load.
BROKEN_PLUGIN = 'raise ImportError("dashbroken needs the libinventory client, which is not installed")\n'


def serve(tmp: Path, **variables: str) -> Server:
    """A ``serve`` (to start, or use in a with block) with the fault plugin (and the built-ins), quick retries, 2 receives before the DLQ."""
    site = install_fault_plugin(tmp / "site")
    write_distribution(site, "dash-broken", "dashbroken", BROKEN_PLUGIN, version="0.9.0")
    env = clean_env(**{
        "PYTHONPATH": str(site), "LETSGO_WORKER_PLUGINS": PLUGIN, "LETSGO_WORKER_MAX_RECEIVE_COUNT": "2",
        "LETSGO_WORKER_BACKOFF_BASE_SECONDS": "0", "LETSGO_WORKER_BACKOFF_MAX_SECONDS": "0",
        "DASH_FIX_FILE": str(tmp / "fixed"), **variables,
    })
    return Server(tmp / "queue.db", tmp / "serve.log", env)


def request(url: str, *, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
            timeout: float = 60) -> tuple[int, str, Any]:
    """One HTTP request; return (status, body text, headers)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), response.headers
    finally:
        connection.close()


def get(url: str, **headers: str) -> tuple[int, str, Any]:
    """GET ``url`` with ``headers`` (underscores in names become dashes)."""
    return request(url, headers={name.replace("_", "-"): value for name, value in headers.items()})


def post_form(url: str, fields: dict[str, Any] | list[tuple[str, str]], headers: dict[str, str] | None = None):
    """POST a form, as a browser does; return (status, body text, headers)."""
    body = urlencode(fields, doseq=True).encode()
    return request(url, method="POST", body=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})


def enqueue(url: str, message: dict[str, Any]) -> str:
    """Store one message through ``POST /``; return its id."""
    status, text, _ = request(url + "/", method="POST", body=json.dumps(message).encode(),
                              headers={"Content-Type": "application/json"})
    assert status == 201, (status, text)
    return json.loads(text)["messageId"]


def csrf_token(html: str) -> str:
    """The CSRF token a dashboard page's forms carry."""
    found = re.search(r'name="csrf" (?:value|content)="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def stats(url: str, **headers: str) -> dict[str, Any]:
    """The overview's counts, as its script reads them."""
    status, text, _ = get(url + "/dashboard/api/overview", **headers)
    assert status == 200, (status, text)
    return json.loads(text)["stats"]


def wait_for(condition, timeout: float = 60.0, what: str = "the condition"):
    """Poll ``condition()`` until it returns something true; fail after ``timeout`` seconds (generous: shared CI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")
