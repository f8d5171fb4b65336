"""Plugins: the pluggy manager, detectors and notifiers.

Built-in notifiers and the pixel detector register through the same hooks as third-party plugins,
which declare an entry point in the ``provgate`` group (datasette's way). A plugin that
fails is reported in the record, never fatal.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pluggy

from provgate import hookspecs
from provgate.hookspecs import hookimpl
from provgate.signals import Signal
from provgate.vocabulary import KINDS, at_least

if TYPE_CHECKING:
    from provgate.policy import Policy
    from provgate.record import Record
    from provgate.probe import Metadata

log = logging.getLogger("provgate")


def manager() -> pluggy.PluginManager:
    """The built-in plugins and every installed ``provgate`` entry point."""
    from provgate import notify

    pm = pluggy.PluginManager("provgate")
    pm.add_hookspecs(hookspecs)
    pm.register(notify.BuiltinNotifiers(), name="provgate.builtin_notifiers")
    pm.register(PixelDetector(), name="provgate.pixels")
    pm.load_setuptools_entrypoints("provgate")
    return pm


def check_settings(policy: Policy) -> None:
    """Refuse, at start, detector settings the built-in detectors do not understand."""
    if policy.config.detectors.get("pixels"):
        from provgate import pixels

        pixels.PixelLimits.from_settings(policy.config.detectors["pixels"])


class PixelDetector:
    """The built-in pixel detector (``pixels.py``), registered through ``provgate_detect``
    like any plugin. Off unless the policy turns it on (``[detectors.pixels] enabled =
    true``): it decodes pixels, which costs tens of milliseconds per megapixel."""

    @hookimpl
    def provgate_detect(self, path: str, metadata: dict[str, Any],
                        settings: dict[str, Any]) -> list[Signal] | None:
        conf = settings.get("pixels") or {}
        if not conf.get("enabled"):
            return None
        from provgate import pixels

        # a PixelError (a refused or undecodable image) is a check not done, not a file
        # unread: detect() puts it in the record's warnings, with what was found before
        return pixels.detect(path, pixels.PixelLimits.from_settings(conf))


def detect(pm: pluggy.PluginManager, path: str, meta: Metadata, policy: Policy
           ) -> tuple[list[Signal], list[str]]:
    """Signals from every detector plugin for one file, and the problems met. Each detector
    runs on its own: one that raises (a pixel check refused, a third-party bug) or returns
    something that is not evidence is reported in the record's warnings, keeps what it
    found before (``partial``), and never stops the gate or the other detectors."""
    out: list[Signal] = []
    problems: list[str] = []
    given = {"path": path, "metadata": meta.tags, "settings": policy.config.detectors}
    for impl in pm.hook.provgate_detect.get_hookimpls():
        try:
            found = impl.function(**{k: given[k] for k in impl.argnames})
        except Exception as exc:  # noqa: BLE001 - a detector must not stop the gate
            problems.append(f"detector {impl.plugin_name} failed: {exc}")
            found = getattr(exc, "partial", ())
        for item in found or ():
            signal = _signal(item)
            if signal is None:
                problems.append(f"detector {impl.plugin_name} returned something that is not "
                                f"evidence: {str(item)[:200]}")
            else:
                out.append(signal)
    for p in problems:
        log.error("%s: %s", path, p)
    return out, problems


def _signal(item: Any) -> Signal | None:
    if isinstance(item, Signal):
        return item if item.kind in KINDS else None
    if not isinstance(item, dict) or item.get("kind") not in KINDS:
        return None
    return Signal(kind=item["kind"], meaning=str(item.get("meaning", ""))[:500],
                  source=str(item.get("source", "plugin"))[:100],
                  tag=str(item.get("tag", ""))[:200], value=str(item.get("value", ""))[:2000],
                  marker=str(item.get("marker", "plugin"))[:100])


class Notifier:
    """Sends each decision at or above a notifier's ``min_action`` to it."""

    def __init__(self, notifiers: list[dict[str, Any]], pm: pluggy.PluginManager | None = None):
        self.notifiers = notifiers
        self.pm = pm or manager()

    def send(self, rec: Record) -> list[str]:
        """Notify; returns the problems met (each also logged), for the record's warnings.
        The record's JSON form is made only for a notifier that takes it."""
        from provgate.notify import approve_command

        action = rec.action
        if action != "allow":
            log.info("%s %s: %s", action.upper(), rec.path, rec.decision.reason)
        problems = []
        record: dict[str, Any] | None = None
        for n in self.notifiers:
            if not at_least(action, n.get("min_action", "flag")):
                continue
            record = record or rec.to_json()
            payload = {**record, "approve_command": approve_command(record)}
            try:
                if not any(self.pm.hook.provgate_notify(record=payload, notifier=n)):
                    problems.append(f"notifier type {n['type']!r}: no plugin handles it")
            except Exception as exc:  # noqa: BLE001 - a notifier never stops the gate
                problems.append(f"notifier {n['type']} failed: {exc}")
        for p in problems:
            log.error("%s", p)
        return problems
