"""Text for notifications: Slack mrkdwn escaping and LetsGo's identity ids.

Notification texts are Slack mrkdwn, as in LetsGo. Slack reads ``<...>`` as a
link (``<https://evil.example|your invoice>``), a mention (``<@U0123>``) or a
broadcast (``<!channel>``), so every value that came from outside the worker is
escaped before it is put into a text.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_MRKDWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")

#: Characters ``encodeURIComponent`` leaves alone besides letters, digits and ``_.-~``.
_URI_COMPONENT_SAFE = "!*'()"

IDENTITY_ID_PREFIX = "idn"


def escape(value: object) -> str:
    """``value`` as mrkdwn that Slack shows literally: ``&``, ``<`` and ``>`` escaped.

    Use it for multi-line text from users, such as a contact form's message.
    """
    return str(value).translate(_MRKDWN_ESCAPES)


def escape_line(value: object) -> str:
    """Like :func:`escape`, with line breaks turned into spaces.

    Use it for one-line fields (a name, an e-mail address, a query value), so
    that a value cannot start a line of its own and pass for another field.
    """
    return _LINE_BREAKS.sub(" ", escape(value))


def serialize_identity(iss: str, sub: str) -> str:
    """LetsGo's identity id of a user: ``idn-`` + hex of ``uriencode(iss):uriencode(sub)``.

    The same value as ``serializeIdentity`` of ``@letsgo/trust`` (UTF-8 bytes,
    ``encodeURIComponent`` escaping), so ids in notifications match the app's.
    """
    core = f"{quote(iss, safe=_URI_COMPONENT_SAFE)}:{quote(sub, safe=_URI_COMPONENT_SAFE)}"
    return f"{IDENTITY_ID_PREFIX}-{core.encode('utf-8').hex()}"
