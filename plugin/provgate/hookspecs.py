"""Extension points (pluggy). Built-in plugins register through the same hooks as others.

Third-party plugins declare an entry point in the ``provgate`` group.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("provgate")
hookimpl = pluggy.HookimplMarker("provgate")


@hookspec
def provgate_detect(path: str, metadata: dict[str, Any], settings: dict[str, Any]
                    ) -> list[dict[str, Any]] | None:
    """Evidence about one file (a watermark decoder, a studio's own rules): signals as dicts
    with ``kind`` (one of the vocabulary's kinds), ``meaning``, ``tag``, ``value``; ``settings``
    is the policy's ``[detectors]`` table. Called for every file that is read."""


@hookspec
def provgate_notify(record: dict[str, Any], notifier: dict[str, Any]) -> bool | None:
    """Deliver one decision to a configured notifier; return True if this plugin handled it."""
