"""Plugin discovery reads a distribution's name and version without the email parser; same answers."""

from __future__ import annotations

import email
from importlib.metadata import distributions

import pytest

from host.core.plugins import name_and_version as _name_and_version


def test_every_installed_distribution_gets_the_name_and_version_importlib_metadata_gives():
    checked = 0
    for dist in distributions():
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
        found = _name_and_version(text)
        if found is not None:
            assert found == (dist.metadata["Name"], dist.version), dist
            checked += 1
    assert checked >= 10, "the fast path should cover ordinary distributions"


@pytest.mark.parametrize(
    "text",
    [
        "Metadata-Version: 2.1\nName: acme-invoices\nVersion: 1.0.0\n\nA description: with a colon\n",
        "NAME: Acme\nversion:   2.0  \nSummary: x\n",
        "Metadata-Version: 2.1\nSummary: a: b\nName: z\nVersion: 1a1\n",
        "Name: first\nName: second\nVersion: 9",
        "Metadata-Version: 2.1\nName: folded\n  on two lines\nVersion: 1\n",
        "Metadata-Version: 2.1\r\nName: crlf\r\nVersion: 1\r\n",
        "Name: caf\u00e9\nVersion: 1\n",
        "Name:\nVersion: 1\n",
        "Metadata-Version: 2.1\n\nName: in-the-body\nVersion: 1\n",
        "",
    ],
)
def test_unusual_metadata_is_left_to_the_full_parser_or_read_the_same(text):
    found = _name_and_version(text)
    parsed = email.message_from_string(text)
    assert found is None or found == (parsed["Name"], parsed["Version"])
