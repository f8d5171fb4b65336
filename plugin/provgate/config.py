"""Configuration: where provgate keeps its state and whom it trusts, apart from decisions.

The policy file holds both what decides a file (zones, actions, register rules: ``policy.py``)
and how this installation runs: the roots it gates, the ledger, quarantine and seal key
paths, the trust bundle, the service user and group, detector and notifier settings. This
module owns the second half; ``Policy.config`` is it for the policy file it came from. Paths
in the file are relative to the file's folder; an option or environment value to the working
folder; the default is the user data folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from provgate.credentials import TrustBundle
from provgate.errors import ConfigError


@dataclass(frozen=True)
class Config:
    doc: dict[str, Any]
    source: str
    base_dir: Path

    @property
    def roots(self) -> list[str]:
        """The delivery trees this installation gates (zones see a root's own name, approval
        globs stay inside them, the daemon watches them)."""
        return [str(self.path(r)) for r in self.doc.get("roots", [])]

    def ledger_path(self, override: str | None = None) -> Path:
        return self._state_path(override, "PROVGATE_LEDGER", "ledger", "ledger.db")

    def quarantine_path(self, override: str | None = None) -> Path:
        return self._state_path(override, "PROVGATE_QUARANTINE", "quarantine", "quarantine")

    def seal_key_path(self) -> Path | None:
        """The ledger's seal key when the file names one (``seal_key``); else the ledger
        finds it (``PROVGATE_SEAL_KEY``, or beside the ledger)."""
        return self.path(self.doc["seal_key"]) if self.doc.get("seal_key") else None

    @property
    def service(self) -> dict[str, int | str]:
        """The service's ``group`` (producers who run approve and report: provgate's files and
        folders are made of that group) and ``user`` (whose files a producer's CLI trusts), as
        given in ``[service]``; empty when not set."""
        return {k: v for k, v in self.doc.get("service", {}).items() if k in ("group", "user")}

    @property
    def detectors(self) -> dict[str, Any]:
        """Settings of detector plugins (``[detectors.NAME]``), e.g. turning pixel reading on."""
        return self.doc.get("detectors", {})

    @property
    def notifiers(self) -> list[dict[str, Any]]:
        return self.doc.get("notifiers", [])

    def trust_bundle(self) -> TrustBundle:
        """The C2PA trust anchors, allowed signers and trust configuration the file names."""
        t = self.doc.get("trust", {})
        files = [self.path(p) for p in [*t.get("anchors", []), *t.get("allowed", []),
                                        *([t["config"]] if t.get("config") else [])]]
        for f in files:
            if not f.is_file():
                raise ConfigError(f"{self.source}: trust: file not found: {f}")
        return TrustBundle(tuple(self.path(p) for p in t.get("anchors", [])),
                           tuple(self.path(p) for p in t.get("allowed", [])),
                           self.path(t["config"]) if t.get("config") else None)

    def path(self, p: str | os.PathLike[str]) -> Path:
        """A path from the file: relative to the file's folder, ``~`` expanded."""
        path = Path(os.path.expanduser(p))
        return Path(os.path.normpath(path if path.is_absolute() else (self.base_dir / path)))

    def _state_path(self, override: str | None, env: str, key: str, default: str) -> Path:
        given = override or os.environ.get(env)
        if given:
            return Path(os.path.abspath(os.path.expanduser(given)))
        if self.doc.get(key):
            return self.path(self.doc[key])
        return Path(platformdirs.user_data_dir("provgate")) / default
