"""What the dashboard, the metrics and the ``queue``/``dlq`` commands see of a queue: one interface.

Two implementations: :mod:`host.ops.local_inspector` reads the local queue's
SQLite file, :mod:`host.ops.sqs_inspector` asks SQS. Everything that shows a
queue (``GET /dashboard``, ``GET /metrics``, ``letsgo-worker queue``, ``dlq``)
goes through an :class:`Inspector`, so the CLI and the dashboard share one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, get_args

from host.local.schema import iso_time

#: Where a message is: waiting and visible, waiting out a delay or a back-off, received and not
#: yet settled, or in the dead-letter queue.
State = Literal["visible", "delayed", "in_flight", "dead_letter"]

#: Every :data:`State`, in the order the dashboard and ``queue stats`` show them.
STATES: tuple[State, ...] = get_args(State)


@dataclass(frozen=True)
class QueueStats:
    """How many messages are in each state, and how long the oldest waiting one has waited."""

    visible: int
    in_flight: int
    delayed: int
    dead_letter: int
    #: Age in seconds of the oldest waiting (visible or delayed) message; None when none waits or unknown.
    oldest_age_seconds: float | None
    #: True for SQS, whose counts are its ``ApproximateNumberOf...`` attributes.
    approximate: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class MessageView:
    """One message as an operator sees it, in any state."""

    id: str
    state: State
    #: The body's ``type`` when it is a JSON object with a string type, else None.
    type: str | None
    body: str
    receive_count: int
    sent_at: float | None
    first_received_at: float | None
    last_received_at: float | None
    #: Why it was dead-lettered (dead letters only).
    reason: str | None
    #: The one line of its last failure.
    last_error: str | None
    #: The traceback of its last failure, without the host's own frames.
    last_traceback: str | None
    #: Its FIFO message group, if any.
    group_id: str | None
    #: When it was moved to the dead-letter queue (local dead letters only; None where unknown).
    dead_lettered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with times as ISO-8601 UTC instants."""
        data = asdict(self)
        for key in ("sent_at", "first_received_at", "last_received_at", "dead_lettered_at"):
            data[key] = iso_time(data[key])
        return data


@dataclass(frozen=True)
class TickView:
    """The last tick of one schedule (the unnamed ``LETSGO_WORKER_SCHEDULE`` is ``""``)."""

    name: str
    fired_at: float
    outcome: str
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the time as an ISO-8601 UTC instant."""
        return {"name": self.name, "fired_at": iso_time(self.fired_at), "outcome": self.outcome, "detail": self.detail}


class Inspector(Protocol):
    """A look into one queue and its dead-letter queue, with the operator's actions on them."""

    #: What is inspected, for a title: the queue file, or the SQS queue URL.
    name: str
    #: False for SQS: a look at a message there is a receive.
    can_peek: bool
    #: For SQS: says plainly that SQS has no true peek and that a look counts as a receive.
    peek_note: str | None

    def stats(self) -> QueueStats:
        """How many messages are in each state, and the age of the oldest waiting one."""

    def messages(self, state: State, *, type: str | None = None, text: str | None = None,
                 limit: int = 50, offset: int = 0) -> list[MessageView]:
        """Messages in ``state``, oldest first, of ``type`` and whose body contains ``text`` when given."""

    def message(self, state: State, message_id: str) -> MessageView | None:
        """The message ``message_id`` in ``state``, or None when it is not there."""

    def redrive(self, ids: Sequence[str] | None) -> int:
        """Move dead letters back to the queue (every one when ``ids`` is None); return how many moved.

        An id that is not in the dead-letter queue raises :class:`host.errors.QueueError` naming it.
        """

    def delete(self, state: State, ids: Sequence[str]) -> int:
        """Delete the messages ``ids`` in ``state``; return how many were deleted."""

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; return how many (SQS: how many there were, approximately)."""

    def outcome_minutes(self, minutes: int = 30) -> list[tuple[int, str, str, int]]:
        """``(minute start epoch, type, outcome, count)`` for the last ``minutes``; [] where unknown."""

    def last_ticks(self) -> list[TickView]:
        """Each schedule's last tick; [] where unknown."""


def message_type(body: str) -> str | None:
    """The ``type`` of a message body, or None when the body is not a JSON object with a string type."""
    import json

    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def check_state(state: str) -> State:
    """``state`` when it is a :data:`State`; else a :class:`ValueError` naming the states there are."""
    if state not in STATES:
        raise ValueError(f"unknown message state {state!r}; one of {', '.join(STATES)}")
    return state  # type: ignore[return-value]
