"""The retry back-off: one formula for the local queue, ``serve --sqs`` and Lambda.

It lives in the core so that each runtime imports it without importing another's:
the local queue (:mod:`host.local.settlement`) takes the delay in seconds as a
float, and SQS (:mod:`host.aws.sqs_source`, :mod:`host.aws.lambda_settle`) takes
it in whole seconds through :func:`visibility_seconds`.
"""

from __future__ import annotations

import math
import random

#: The longest visibility timeout SQS accepts, in seconds (12 hours).
SQS_MAX_VISIBILITY_SECONDS = 43200


def backoff_seconds(receive_count: int, base: float, maximum: float, rng: random.Random | None = None) -> float:
    """The wait before a failed message is visible again, after its ``receive_count``-th receive.

    ``min(maximum, base * 2**(receive_count - 1))``, of which the upper half is
    random ("equal jitter"): the wait is never below half the nominal delay, and
    grows with each receive until it reaches ``maximum``.
    """
    exponent = min(max(receive_count, 1) - 1, 60)  # 2**60 seconds is far beyond any maximum
    nominal = min(maximum, base * (2**exponent))
    return nominal / 2 + (rng or random).uniform(0, nominal / 2)


def visibility_seconds(receive_count: int, base: float, maximum: float, rng: random.Random | None = None) -> int:
    """:func:`backoff_seconds` in whole seconds, rounded up (never earlier), at most SQS's 12 hours.

    The ``VisibilityTimeout`` that ``ChangeMessageVisibility`` gives a failed message.
    """
    return min(SQS_MAX_VISIBILITY_SECONDS, math.ceil(backoff_seconds(receive_count, base, maximum, rng)))
