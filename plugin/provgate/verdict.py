"""Verdict: combine a file's signals into one kind, keeping every piece of evidence.

The strongest signal wins (any AI signal outranks a human one); conflicts are kept in the
evidence, never hidden; no signal at all is ``unknown``, never a clean bill.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from provgate.probe import Metadata
from provgate.signals import Signal

KINDS = ("ai_generated", "ai_composite", "ai_possible", "algorithmic", "human", "unknown",
         "unreadable")
AI_KINDS = frozenset(KINDS[:3])
_RANK = {kind: rank for rank, kind in enumerate(reversed(KINDS[:5]), start=1)}
C2PA_STATES = ("valid_trusted", "valid_untrusted", "invalid", "stripped", "remote", "absent",
               "not_checked")


@dataclass(frozen=True)
class Verdict:
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


def strongest(signals: list[Signal] | tuple[Signal, ...]) -> str:
    """The kind of the strongest signal, or ``unknown`` when there is none."""
    if not signals:
        return "unknown"
    return max((s.kind for s in signals), key=_RANK.__getitem__)


def c2pa_state_from_metadata(meta: Metadata) -> str:
    """What ExifTool alone can say about Content Credentials (no signature check)."""
    for _full, key, _value in meta.items():
        if key.startswith(("CBOR:", "JUMBF:")):  # a JUMBF store: a manifest to validate
            return "not_checked"
    return pointer_state(meta)


def pointer_state(meta: Metadata) -> str:
    """No manifest in the file: a ``self#jumbf`` provenance pointer means it was stripped, a
    URL that it lives elsewhere (never fetched), nothing that there never was one."""
    pointer = str(meta.tags.get("XMP-dcterms:Provenance") or "")
    if pointer.startswith("self#jumbf"):
        return "stripped"
    if pointer.lower().startswith(("http://", "https://")):
        return "remote"
    return "absent"


def judge(meta: Metadata, signals: list[Signal], c2pa: str,
          credentials: dict[str, Any] | None = None,
          warnings: tuple[str, ...] = ()) -> Verdict:
    """The verdict for one file. A read error with no signal at all makes it ``unreadable``;
    so does damage (ExifTool's truncation or corruption warning, or a structural check that
    finds the file cut short) unless an AI signal outranks it: what a damaged file's missing
    part held is unknown, so a human or algorithmic signal cannot clear it."""
    kind = strongest(signals)
    error = meta.error
    if meta.error and not signals:
        kind = "unreadable"
    elif meta.damage and not meta.error:
        error = f"truncated or corrupt file: {meta.damage}"
        if kind not in AI_KINDS:
            kind = "unreadable"
    return Verdict(kind=kind, c2pa=c2pa, evidence=tuple(signals), error=error,
                   warnings=tuple(meta.warnings) + tuple(warnings),
                   credentials=credentials or {})


# the C2PA state that speaks loudest for a container: a broken manifest anywhere inside it
_STATE_WEIGHT = {s: i for i, s in enumerate(("absent", "valid_trusted", "valid_untrusted",
                                              "not_checked", "remote", "stripped", "invalid"))}


def combine_members(own: Verdict, members: list[tuple[str, Verdict]]) -> Verdict:
    """The verdict of an archive from its own metadata and its members' verdicts.

    Every member's evidence is kept with the member's path in its tag. A generated member
    makes the archive generated; a member that could not be judged makes it ``unreadable``
    unless an AI member already holds it harder, so nothing inside passes unjudged.
    """
    evidence = list(own.evidence)
    unjudged: list[str] = []
    warnings = list(own.warnings)
    for name, v in members:
        evidence += [replace(s, tag=f"archive member {name}: {s.tag}",
                             meaning=f"{s.meaning} (archive member {name})") for s in v.evidence]
        warnings += [f"archive member {name}: {w}" for w in v.warnings]
        if v.kind == "unreadable":
            unjudged.append(f"{name} ({v.error or 'could not be read'})")
    kind = strongest(evidence)
    error = None
    if unjudged:
        error = (f"{len(unjudged)} archive member(s) could not be judged: "
                 + "; ".join(unjudged[:5]) + ("; ..." if len(unjudged) > 5 else ""))
        if kind not in AI_KINDS:
            kind = "unreadable"
    c2pa = max([own.c2pa, *(v.c2pa for _, v in members)], key=lambda s: _STATE_WEIGHT.get(s, 0))
    warnings.append(f"archive of {len(members)} member(s), each judged")
    return Verdict(kind, c2pa, tuple(evidence), error, tuple(warnings), own.credentials)
