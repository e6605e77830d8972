"""Every variable letsgo-stripe reads, declared to the host in ``letsgo_register_settings``.

They live apart from the modules that read them (the local server's webhook
route, the calls to Stripe's API, dispatch), so that declaring them when a
worker starts imports none of those: a Lambda cold start whose first message
is not a Stripe event pays for none of them.
"""

from __future__ import annotations

from host import Setting, optional, seconds

#: The signing secret of the test-mode webhook endpoint (or of ``stripe listen``).
TEST_WEBHOOK_KEY = Setting(
    "LETSGO_STRIPE_TEST_WEBHOOK_KEY", None, optional, "Stripe webhook signing secret, test mode.", secret=True
)
#: The signing secret of the live-mode webhook endpoint.
LIVE_WEBHOOK_KEY = Setting(
    "LETSGO_STRIPE_LIVE_WEBHOOK_KEY", None, optional, "Stripe webhook signing secret, live mode.", secret=True
)

#: The secret (or restricted) API key of test mode, to fetch thin events and fresh objects.
TEST_API_KEY = Setting(
    "LETSGO_STRIPE_TEST_API_KEY", None, optional,
    "Stripe API key, test mode: fetches thin events' objects and fresh objects.", secret=True,
)
#: The secret (or restricted) API key of live mode.
LIVE_API_KEY = Setting(
    "LETSGO_STRIPE_LIVE_API_KEY", None, optional,
    "Stripe API key, live mode: fetches thin events' objects and fresh objects.", secret=True,
)
#: Where Stripe's API is: a stand-in such as stripe-mock in development and tests.
API_BASE = Setting(
    "LETSGO_STRIPE_API_BASE", None, optional,
    "Base URL of Stripe's API for those fetches (stripe-mock, a test stand-in); unset: the stripe SDK's.",
)


def _optional_seconds(value: str) -> float | None:
    return seconds(1, 43200)(value) if value else None


#: Overrides how long a running handler's record holds off duplicates (see :mod:`letsgo_stripe.dispatch`).
IN_PROGRESS_SECONDS = Setting(
    "LETSGO_STRIPE_IN_PROGRESS_SECONDS", None, _optional_seconds,
    "Seconds a running Stripe handler holds off duplicates; unset: the remaining Lambda time, else the visibility timeout.",
)

#: Every setting of the plugin, in the order ``letsgo-worker plugins`` lists them.
SETTINGS = (TEST_WEBHOOK_KEY, LIVE_WEBHOOK_KEY, TEST_API_KEY, LIVE_API_KEY, API_BASE, IN_PROGRESS_SECONDS)
