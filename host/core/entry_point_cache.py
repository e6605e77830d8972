"""The entry-point cache of an immutable image: the plugins' entry points, frozen at build time.

``letsgo-worker plugins --freeze FILE`` writes FILE (the Dockerfile writes it
beside ``lambda_entry.py``); a Lambda cold start then reads the ``letsgo_worker``
entry points from it instead of scanning the metadata of every installed
distribution with :mod:`importlib.metadata`.

The file is used only while it still describes what is installed: every
distribution it names must have the same name and version in the same metadata
file, and the directories those distributions live in must hold the same
distributions (the same ``*.dist-info`` and ``*.egg-info`` folders: installing,
upgrading or removing one there changes them). The file itself may live in one
of those directories, as it does in the image.
Otherwise :func:`read` gives None and the worker scans as usual: the cache can
make a start faster, never different.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from host.core.plugins import ENTRY_POINT_GROUP, PluginEntryPoint, name_and_version

#: The file's format; a file of another format is not read.
FORMAT = 1

logger = logging.getLogger("letsgo.plugins")


def freeze(path: str) -> list[PluginEntryPoint]:
    """Write the installed ``letsgo_worker`` entry points to ``path``; return them.

    Raises ValueError when a plugin's distribution has no metadata file on disk
    (a zipped egg, say): a cold start could not check that the file is current.
    """
    from importlib.metadata import entry_points

    from host.core.plugins import distribution_name_and_version

    frozen, distributions, directories = [], {}, {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        name, version = distribution_name_and_version(dist) if dist is not None else (None, None)
        metadata = _metadata_file(dist)
        if metadata is None:
            raise ValueError(
                f"entry point {ep.name!r} comes from {name or 'no distribution'}, whose metadata is not a file "
                "on disk: a start could not check the frozen file against it; install it as a regular distribution"
            )
        distributions[metadata] = {"name": name, "version": version, "metadata": metadata}
        directory = os.path.dirname(os.path.dirname(metadata))  # the folder holding the *.dist-info
        directories[directory] = _distribution_folders(directory)
        frozen.append(PluginEntryPoint(ep.name, ep.value, name, version))
    document = {
        "format": FORMAT,
        "group": ENTRY_POINT_GROUP,
        "entry_points": [ep._asdict() for ep in frozen],
        "distributions": list(distributions.values()),
        "directories": directories,
    }
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)  # a start never reads half a file
    return frozen


def _distribution_folders(directory: str) -> list[str]:
    """The names of the installed distributions' metadata folders in ``directory``, sorted."""
    return sorted(name for name in os.listdir(directory) if name.endswith((".dist-info", ".egg-info")))


def _metadata_file(dist: Any) -> str | None:
    # A PathDistribution keeps its *.dist-info (or *.egg-info) folder as ``_path``; there is no public name for it.
    folder = getattr(dist, "_path", None)
    for name in ("METADATA", "PKG-INFO"):
        if folder is not None and os.path.isfile(os.path.join(folder, name)):
            return os.path.abspath(os.path.join(folder, name))
    return None


def read(path: str) -> list[PluginEntryPoint] | None:
    """The entry points frozen in ``path``, or None when the file is missing, unreadable or stale."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("entry-point cache %s cannot be read (%s); scanning the installed distributions", path, error)
        return None
    stale = _staleness(document)
    if stale:
        logger.warning("entry-point cache %s is stale: %s; scanning the installed distributions", path, stale)
        return None
    return [PluginEntryPoint(**ep) for ep in document["entry_points"]]


def _staleness(document: Any) -> str | None:
    """Why ``document`` no longer describes what is installed, or None when it still does."""
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("group") != ENTRY_POINT_GROUP:
        return f"not a format-{FORMAT} file of the {ENTRY_POINT_GROUP!r} group"
    try:
        for dist in document["distributions"]:
            try:
                with open(dist["metadata"], encoding="utf-8") as file:
                    found = name_and_version(file.read())
            except OSError:
                return f"{dist['name']} {dist['version']} is no longer installed at {dist['metadata']}"
            if found != (dist["name"], dist["version"]):
                now = " ".join(found) if found else "unreadable metadata"
                return f"{dist['name']} {dist['version']} is now {now}"
        for directory, folders in document["directories"].items():
            try:
                changed = _distribution_folders(directory) != folders
            except OSError:
                changed = True
            if changed:
                return f"the distributions in {directory} have changed since the file was written"
        for ep in document["entry_points"]:
            if set(ep) != {"name", "value", "distribution", "version"}:
                return "an entry point of an unknown shape"
    except (KeyError, TypeError, AttributeError):
        return "not the shape letsgo-worker plugins --freeze writes"
    return None
