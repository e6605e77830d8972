"""Stripe's API, for what a webhook does not carry: thin events' objects and fresh copies of objects.

Calls use the secret key of the event's mode (``LETSGO_STRIPE_TEST_API_KEY``
or ``LETSGO_STRIPE_LIVE_API_KEY``; a restricted key with read access to
events and the objects you handle is enough) and go to ``stripe.api_base``
or ``LETSGO_STRIPE_API_BASE``, so a test can point the SDK at a stand-in for
Stripe's API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from host import WorkerError
from letsgo_stripe.settings import API_BASE, LIVE_API_KEY, TEST_API_KEY

if TYPE_CHECKING:
    import stripe

    from host import Worker


class StripeApiError(WorkerError):
    """Stripe's API could not be called for an event (no key, or the call failed); the message is retried."""


def api_key(worker: Worker, mode: str) -> str:
    """The API key of ``mode`` (``"TEST"`` or ``"LIVE"``); raise :class:`StripeApiError` naming the setting if unset."""
    setting = LIVE_API_KEY if mode == "LIVE" else TEST_API_KEY
    key = worker.settings.get(setting)
    if not key:
        raise StripeApiError(
            f"{setting.variable} is not set, so a {mode.lower()}-mode object cannot be fetched from Stripe's API: "
            "set it to a secret or restricted key of that mode"
        )
    return key


def client(worker: Worker, mode: str) -> stripe.StripeClient:
    """A ``StripeClient`` with the key of ``mode``, talking to ``LETSGO_STRIPE_API_BASE`` or ``stripe.api_base``."""
    import stripe

    # StripeClient defaults to Stripe's own address, not to the module setting that tests and apps may change.
    base = worker.settings.get(API_BASE) or stripe.api_base
    return stripe.StripeClient(api_key(worker, mode), base_addresses={"api": base})


def retrieve(worker: Worker, mode: str, url: str, *, context: str | None = None) -> Any:
    """GET ``url`` (``/v1/invoices/in_...``) with the key of ``mode``; the response as a Stripe SDK object."""
    from stripe._util import get_api_mode

    sdk = client(worker, mode)
    try:
        response = sdk.raw_request("get", url, stripe_context=context)
        return sdk.deserialize(response, api_mode=get_api_mode(url))
    except Exception as error:
        raise StripeApiError(
            f"could not fetch {url} from Stripe's API ({mode} mode): {type(error).__name__}: {error}"
        ) from error


def object_url(obj: Any) -> str:
    """The API path of a Stripe object: ``{"object": "invoice", "id": "in_1"}`` -> ``/v1/invoices/in_1``."""
    from urllib.parse import quote

    from stripe._object_classes import get_object_class

    kind, object_id = obj.get("object"), obj.get("id")
    resource = get_object_class("V1", kind) if isinstance(kind, str) else None
    class_url = getattr(resource, "class_url", None)
    if not isinstance(object_id, str) or not object_id or class_url is None:
        raise StripeApiError(f"a {kind!r} object with id {object_id!r} cannot be fetched from Stripe's API")
    return f"{class_url()}/{quote(object_id, safe='')}"


def fresh_sync(event: Any, ctx: Any) -> Any:
    """The current version of ``event``'s object, fetched with the API key of the event's mode.

    For ``def`` handlers; ``async def`` ones ``await`` :func:`fresh`. A thin
    event's object is fetched from its ``related_object``'s URL, a snapshot
    event's from the URL of ``event.data.object``'s type.
    """
    values = event.to_dict() if hasattr(event, "to_dict") else dict(event)
    related = values.get("related_object") or {}
    url = related.get("url") or object_url((values.get("data") or {}).get("object") or {})
    return retrieve(ctx.worker, values.get("stripeMode") or "TEST", url, context=values.get("context"))


async def fresh(event: Any, ctx: Any) -> Any:
    """``await fresh(event, ctx)``: :func:`fresh_sync` off the event loop, in the worker's thread pool."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(ctx.worker.executor, fresh_sync, event, ctx)
