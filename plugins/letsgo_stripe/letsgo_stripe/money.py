"""Stripe amounts: integers in a currency's smallest unit, shown with the currency's real exponent.

Stripe's API counts most currencies in hundredths, but zero-decimal currencies
(JPY, KRW...) in whole units and three-decimal ones (KWD, BHD...) in
thousandths (https://stripe.com/docs/currencies). ISK, HUF and TWD stay
two-decimal in the API even where only whole units can be charged, so they
follow the default.
"""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def currency_exponent(currency: str) -> int:
    """How many decimal places Stripe's smallest unit of ``currency`` has (0, 2 or 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def major_units(amount: int, currency: str) -> Decimal:
    """``amount`` in the smallest unit of ``currency`` as an exact decimal of whole units."""
    exponent = currency_exponent(currency)
    return Decimal(int(amount)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def format_amount(amount: int, currency: str) -> str:
    """``"USD 19.99"``, ``"JPY 1999"``, ``"KWD 19.990"``: code and exact amount, never rounded."""
    return f"{currency.upper()} {major_units(amount, currency)}"
