"""The built-in notifiers: webhooks (JSON POST), commands (JSON on stdin), apprise (chat,
e-mail: a readable message) and the log, registered through ``provgate_notify`` like any
plugin (``plugins.py`` sends; plugins can add other types). Also the log's set-up.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

from provgate.hookspecs import hookimpl
from provgate.vocabulary import held

log = logging.getLogger("provgate")


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


def approve_command(record: dict[str, Any]) -> str | None:
    if not held(record["action"]):
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
