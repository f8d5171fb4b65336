"""Notifiers: tell people about flags and escalations. A failing notifier is reported, never fatal.

A log line is always written; webhooks (JSON POST), commands (JSON on stdin) and apprise (chat,
e-mail: a readable message) run when the policy configures them, and plugins can add other
types through ``provgate_notify``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import pluggy

from provgate import hookspecs
from provgate.hookspecs import hookimpl

log = logging.getLogger("provgate")
_ORDER = ("allow", "flag", "escalate", "block")


class BuiltinNotifiers:
    """The webhook, command and log notifiers, written as a plugin like any other."""

    @hookimpl
    def provgate_notify(self, record: dict[str, Any], notifier: dict[str, Any]) -> bool | None:
        kind = notifier["type"]
        timeout = notifier.get("timeout", 10)
        body = json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")
        if kind == "webhook":
            import urllib.request  # 10 ms of start-up that only a webhook needs

            req = urllib.request.Request(notifier["url"], data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured
                resp.read()
            return True
        if kind == "command":
            subprocess.run(notifier["command"], input=body, timeout=timeout, check=True,
                           capture_output=True)
            return True
        if kind == "log":
            return True
        if kind == "apprise":
            return _apprise(record, notifier)
        return None


def _apprise(record: dict[str, Any], notifier: dict[str, Any]) -> bool:
    """Chat and e-mail through apprise (one library, 100+ services), an optional extra."""
    try:
        import apprise
    except ImportError as exc:
        raise RuntimeError("the apprise notifier needs apprise: pip install 'provgate[notify]'") \
            from exc
    app = apprise.Apprise()
    for url in notifier["urls"]:
        if not app.add(url):
            raise RuntimeError(f"apprise does not understand the URL {url.split(':', 1)[0]}://...")
    title = f"{notifier.get('title', 'provgate')}: {record['action'].upper()} " \
            f"{os.path.basename(record['path'])}"
    if not app.notify(body=message(record), title=title):
        raise RuntimeError("apprise could not deliver to any of its URLs")
    return True


def message(record: dict[str, Any]) -> str:
    """What a producer needs to act: the file, why, and the command that approves it."""
    lines = [f"{record['action'].upper()}: {record['path']}",
             f"Kind: {record['kind']} (C2PA {record['c2pa']}), zone {record['zone']}",
             f"Why: {record['reason']}"]
    if record.get("approve_command"):
        lines.append(f"Approve with: {record['approve_command']}")
    if record.get("id"):
        lines.append(f"Ledger decision #{record['id']} ({record.get('user') or 'unknown user'})")
    return "\n".join(lines)


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("provgate")
    pm.add_hookspecs(hookspecs)
    pm.register(BuiltinNotifiers(), name="provgate.builtin_notifiers")
    pm.load_setuptools_entrypoints("provgate")
    return pm


class Notifier:
    """Sends each decision at or above a notifier's ``min_action`` to it."""

    def __init__(self, notifiers: list[dict[str, Any]], pm: pluggy.PluginManager | None = None):
        self.notifiers = notifiers
        self.pm = pm or plugin_manager()

    def send(self, record: dict[str, Any]) -> list[str]:
        """Notify; returns the problems met (each also logged), for the record's warnings."""
        action = record["action"]
        if action in ("flag", "escalate", "block"):
            log.info("%s %s: %s", action.upper(), record["path"], record["reason"])
        problems = []
        for n in self.notifiers:
            if _ORDER.index(action) < _ORDER.index(n.get("min_action", "flag")):
                continue
            payload = {**record, "approve_command": approve_command(record)}
            try:
                if not any(self.pm.hook.provgate_notify(record=payload, notifier=n)):
                    problems.append(f"notifier type {n['type']!r}: no plugin handles it")
            except Exception as exc:  # noqa: BLE001 - a notifier never stops the gate
                problems.append(f"notifier {n['type']} failed: {exc}")
        for p in problems:
            log.error("%s", p)
        return problems


def approve_command(record: dict[str, Any]) -> str | None:
    if record["action"] not in ("escalate", "block"):
        return None
    path = record["path"].replace("'", "'\\''")
    return f"provgate approve '{path}' --ref STUDIO-REF --by 'NAME'"


def setup_logging(verbose: bool = False, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("provgate: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname.lower(),
                           "message": record.getMessage()})
