"""The values that pass between stages: what was read, judged, decided and done to a file.

``Record`` is the unit every entry point gets back (scan, check, watch, the timeline gate, the
pyblish validator): one file, typed. Its JSON form is the decision schema's
(``schemas/decision.schema.json``), its ledger row the chained fields, and its key what says
whether a new decision differs from the cached one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from provgate.assets import Asset
from provgate.probe import Metadata
from provgate.signals import Signal
from provgate.vocabulary import held


# made once: json.dumps builds an encoder per call (the file cache keeps a verdict a file)
_JSON = json.JSONEncoder(default=str)


def text_path(path: str) -> str:
    """A path as text SQLite and JSON can hold: undecodable bytes become ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Reading:
    """What the read stage got for one file: its fingerprint (in ``asset``), ExifTool's
    metadata, the metadata of its XMP sidecars and where its C2PA sidecar is."""

    asset: Asset
    meta: Metadata
    sidecars: tuple[Metadata, ...] = ()
    c2pa_sidecar: str | None = None  # its real C2PA sidecar, the manifest store beside it


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a file is (``kind``), its Content Credentials state, and every signal that says so."""

    kind: str
    c2pa: str
    evidence: tuple[Signal, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    credentials: dict[str, Any] = field(default_factory=dict)

    @property
    def deciding(self) -> Signal | None:
        """The first signal of the winning kind: the one a reason should cite."""
        return next((s for s in self.evidence if s.kind == self.kind), None)

    def to_json(self) -> str:
        """The form the file cache keeps."""
        return _JSON.encode({"kind": self.kind, "c2pa": self.c2pa,
                             "evidence": [s.to_dict() for s in self.evidence],
                             "error": self.error, "warnings": list(self.warnings),
                             "credentials": self.credentials})

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        d = json.loads(text)
        return cls(d["kind"], d["c2pa"], tuple(Signal(**s) for s in d["evidence"]), d["error"],
                   tuple(d["warnings"]), d["credentials"])


def unreadable(error: str) -> Verdict:
    """The verdict of a file that could not be judged, with the reason."""
    return Verdict("unreadable", "not_checked", error=error)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy does with a file (the only stage that assigns an action), the policy
    line that chose it and why; ``approval`` when a written approval cleared a hold."""

    action: str
    zone: str
    rule: str
    reason: str
    approval: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """What every record of one run shares."""

    mode: str
    policy_digest: str
    trust_digest: str | None
    actor: str
    user: str


@dataclass(slots=True)
class Record:
    """One file's decision, from its asset to what was done about it."""

    asset: Asset
    verdict: Verdict
    decision: Decision
    run: Run
    time: str
    tools: dict[str, Any]
    cached: bool = False
    id: int | None = None
    outcome: str | None = None
    # problems met after judging (a quarantine that failed, a notifier that did not answer)
    problems: list[str] = field(default_factory=list)
    # the clips of an editorial cut that use this file (the timeline gate)
    clips: list[dict[str, Any]] | None = None
    # what the vendor's GenAI register says of the file (status, entries, findings)
    register: dict[str, Any] | None = None
    # the verdict of the file alone, before a register joined it: what the file cache keeps
    # (else each re-check would fold the declaration into the evidence once more)
    own: Verdict | None = None

    @property
    def path(self) -> str:
        return text_path(self.asset.path)

    @property
    def action(self) -> str:
        return self.decision.action

    @property
    def kind(self) -> str:
        return self.verdict.kind

    @property
    def held(self) -> bool:
        return held(self.decision.action)

    @property
    def approval(self) -> dict[str, Any] | None:
        return self.decision.approval

    def brief(self) -> Brief:
        return Brief(self.path, self.kind, self.action, self.decision.reason, self.approval,
                     self.asset.fingerprint, self.verdict.error, self.clips, self.id,
                     self.decision.zone, tuple(dict.fromkeys(s.tag for s in self.verdict.evidence)),
                     self.asset.digests)

    def key(self) -> str:
        """Equal keys: the same decision about the same content, nothing new to record."""
        d, v = self.decision, self.verdict
        parts = (self.asset.fingerprint, v.kind, v.c2pa, d.zone, d.rule, d.action,
                 (d.approval or {}).get("id"), self.run.mode, self.run.policy_digest, v.error,
                 repr(sorted((self.register or {}).items())))
        # plain str/int/None values: their repr is canonical, and cheaper than JSON per file
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def ledger_row(self) -> dict[str, Any]:
        """The chained fields of a ``decisions`` row (the ledger adds id and hashes)."""
        a, v, d, r = self.asset, self.verdict, self.decision, self.run
        return {
            "time": self.time, "path": self.path, "root": text_path(a.root),
            "fingerprint": a.fingerprint, "size": a.size if not a.error else None,
            "kind": v.kind, "c2pa": v.c2pa, "evidence": [s.to_dict() for s in v.evidence],
            "error": v.error, "zone": d.zone, "rule": d.rule, "action": d.action,
            "reason": d.reason, "mode": r.mode,
            "approval_id": (d.approval or {}).get("id"),
            "approval_ref": (d.approval or {}).get("ref"),
            "policy_digest": r.policy_digest, "trust_digest": r.trust_digest,
            "tools": self.tools, "actor": r.actor, "user": r.user,
        }

    def to_json(self) -> dict[str, Any]:
        """The record as ``schemas/decision.schema.json`` describes it."""
        doc = {"id": self.id, **self.ledger_row()}
        doc.update(credentials=self.verdict.credentials,
                   warnings=[*self.verdict.warnings, *self.problems],
                   approval=self.decision.approval, cached=self.cached,
                   outcome=self.outcome)
        if self.clips is not None:
            doc["clips"] = self.clips
        if self.register is not None:
            doc["register"] = self.register
        return doc


@dataclass(frozen=True, slots=True)
class Brief:
    """The few fields of a record a summary and a gate's verdict need: what a run keeps of
    each file once its record is printed (memory stays flat over 20,000 files)."""

    path: str
    kind: str
    action: str
    reason: str
    approval: dict[str, Any] | None
    fingerprint: str | None
    error: str | None
    clips: list[dict[str, Any]] | None = None
    id: int | None = None  # the decision's row in the ledger (None: not recorded)
    zone: str = ""
    tags: tuple[str, ...] = ()  # the evidence's tags: a sequence says which frames carry which
    digests: dict[str, bytes] | None = None  # taken with the fingerprint (a PKL's SHA-1)

    @property
    def held(self) -> bool:
        return held(self.action)
