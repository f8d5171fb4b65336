"""Units: what a facility delivers, folded from the records of its files.

A shot is delivered as frames; a producer signs off the shot, not 2,160 lines. The session
still reads, judges and decides every frame (one generated frame spliced into a plate must be
caught) and the ledger keeps every frame's decision; this module folds the frames' briefs into
one record per sequence: the strongest kind and the strongest action of its frames, the frames
that carry each kind and each piece of evidence as ranges, the frames that differ from their
neighbours, and the digest over the ordered frame fingerprints that an approval of the
sequence binds to (``sequences.digest``).

A sequence is held when any frame is held, and when a frame was cleared by an approval of the
sequence whose digest is not the sequence's now: changing, adding or removing one frame voids
the approval of the whole.

An IMF package or a DCP (a folder with an ASSETMAP) is one unit too: its track files are
judged like any file, its paperwork (ASSETMAP, PKL, CPL) is not media, and a file that is not
what its PKL declares, or missing, holds the package (``imf.verify``). Actions on a unit as
a whole come from the policy (``Policy.integrity``, ``Policy.void_approval``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provgate import sequences
from provgate.assets import in_package
from provgate.record import Brief, Decision
from provgate.vocabulary import ACTION_STRENGTH, held

if TYPE_CHECKING:
    from provgate import imf
    from provgate.policy import Policy


@dataclass(slots=True)
class Unit:
    """One sequence, folded from its frames' briefs (in frame order)."""

    sequence: sequences.Sequence
    frames: list[Brief]
    summary: sequences.SequenceVerdictParts
    action: str
    zone: str
    reason: str
    digest: str | None
    approval: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.sequence.path_pattern

    @property
    def kind(self) -> str:
        return self.summary.kind

    @property
    def held(self) -> bool:
        return held(self.action)

    def brief(self) -> Brief:
        """The unit as a summary and a gate's verdict count it: one line, not a frame each."""
        return Brief(self.path, self.kind, self.action, self.reason, self.approval,
                     self.digest, None, zone=self.zone)

    def to_json(self) -> dict[str, Any]:
        """The unit's record (``schemas/unit.schema.json``)."""
        seq = self.sequence
        held_frames = [n for n, b in zip(seq.frames, self.frames, strict=True) if b.held]
        return {
            "unit": "sequence", "path": self.path, "pattern": seq.pattern,
            "frames": {"first": seq.first, "last": seq.last, "count": seq.count,
                       "missing": seq.missing,
                       "gaps": sequences.format_ranges(seq.gaps) or None},
            "kind": self.kind, "action": self.action, "zone": self.zone,
            "reason": self.reason, "digest": self.digest, "fingerprint": self.digest,
            "evidence": self.summary.lines(),
            "held_frames": sequences.format_ranges(sequences.ranges(held_frames)) or None,
            "decision_ids": [b.id for b in self.frames if b.id is not None][:1]
            + [b.id for b in self.frames if b.id is not None][-1:],
            "approval": self.approval, "problems": self.problems,
        }


def fold(briefs: list[Brief], policy: Policy,
         approvals: dict[int, dict[str, Any]] | None = None) -> Iterator[Unit | Brief]:
    """The sequences among ``briefs`` as units, every other brief as it is, in input order.
    ``approvals``: approval id -> the approval (``ref``, ``sequence``: the digest it was
    given for), for the approvals of a sequence."""
    by_path = {b.path: b for b in briefs}
    for item in sequences.group([b.path for b in briefs]):
        if isinstance(item, str):
            yield by_path[item]
        else:
            yield unit(item, [by_path[p] for p in item.paths()], policy, approvals or {})


def unit(seq: sequences.Sequence, frames: list[Brief], policy: Policy,
         approvals: dict[int, dict[str, Any]]) -> Unit:
    summary = sequences.summarize((n, b.kind, b.tags) for n, b in zip(seq.frames, frames, strict=True))
    try:
        digest: str | None = sequences.digest(
            (n, b.fingerprint) for n, b in zip(seq.frames, frames, strict=True))
    except ValueError:
        digest = None  # a frame without a fingerprint: nothing to bind an approval to
    strongest = max(frames, key=lambda b: ACTION_STRENGTH[b.action])
    u = Unit(seq, frames, summary, strongest.action, strongest.zone,
             _reason(seq, frames, strongest), digest,
             next((b.approval for b in frames if b.approval), None))
    _check_approvals(u, policy, approvals)
    return u


def sequence_at(pattern: str) -> sequences.Sequence | None:
    """The sequence a pattern names on disk (``plate.####.exr``, ``plate.%04d.exr``): the
    frames in its folder with that name, padding and extension; None when there are none."""
    folder, name = os.path.split(os.path.abspath(pattern))
    m = re.fullmatch(r"(.*?)(#+|%0(\d)d)(\.[^.]+)", name)
    if m is None:
        return None
    prefix, width, suffix = m[1], len(m[2]) if m[3] is None else int(m[3]), m[4]
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    frames = [os.path.join(folder, n) for n in names
              if n.startswith(prefix) and n.endswith(suffix)
              and len(n) - len(prefix) - len(suffix) == width
              and re.fullmatch(r"[0-9]+", n[len(prefix):len(n) - len(suffix)])]
    found = [g for g in sequences.group(frames, min_frames=2)
             if isinstance(g, sequences.Sequence)]
    return found[0] if len(found) == 1 else None


def _reason(seq: sequences.Sequence, frames: list[Brief], strongest: Brief) -> str:
    which = [n for n, b in zip(seq.frames, frames, strict=True) if b.action == strongest.action]
    where = sequences.format_ranges(sequences.ranges(which), limit=10)
    head = (f"{seq.count} frames {seq.first}-{seq.last}"
            + (f", {seq.missing} missing" if seq.missing else ""))
    return f"{head}; {strongest.action} on frame(s) {where}: {strongest.reason}"


def _check_approvals(u: Unit, policy: Policy, approvals: dict[int, dict[str, Any]]) -> None:
    """A frame cleared by an approval of a sequence counts only while the sequence is the
    one approved: its digest then and now must be equal."""
    for b in u.frames:
        ident = (b.approval or {}).get("id")
        wanted = approvals.get(ident) if ident is not None else None
        if wanted is None or wanted.get("sequence") == u.digest:
            continue
        why = (f"approval #{ident} ({wanted.get('ref')}) was given for other frames: the "
               "sequence changed since (a frame changed, was added or removed)")
        _raise(u, policy.void_approval(u.zone, u.kind, why), why)
        u.approval = None
        return


def _raise(u: Unit | PackageUnit, d: Decision, why: str) -> None:
    """Take the policy's decision over the unit's when it is stronger; the problem stays."""
    u.problems.append(why)
    if ACTION_STRENGTH[d.action] > ACTION_STRENGTH[u.action]:
        u.action = d.action
        u.reason = f"{why}: {d.action} ({d.rule}). {u.reason}"


@dataclass(slots=True)
class PackageUnit:
    """An IMF package or a DCP: its files' briefs, its compositions and its integrity."""

    package: imf.Package
    files: list[Brief]
    kind: str
    action: str
    zone: str
    reason: str
    approval: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.package.folder

    @property
    def held(self) -> bool:
        return held(self.action)

    @property
    def frames(self) -> list[Brief]:  # the members, as ``members`` reads a unit's
        return self.files

    def brief(self) -> Brief:
        # no fingerprint: a package is approved file by file; its integrity is re-delivered
        return Brief(self.path, self.kind, self.action, self.reason, None, None,
                     "; ".join(self.problems) or None, zone=self.zone)

    def to_json(self) -> dict[str, Any]:
        """The unit's record (``schemas/unit.schema.json``)."""
        pkg = self.package
        media = set(pkg.media())
        return {
            "unit": pkg.kind if pkg.kind != "unknown" else "package", "path": self.path,
            "compositions": [{"title": c.title, "edit_rate": str(c.edit_rate),
                              "segments": c.segments, "duration": c.duration}
                             for c in pkg.compositions],
            "kind": self.kind, "action": self.action, "zone": self.zone,
            "reason": self.reason, "fingerprint": None, "files": len(self.files),
            "evidence": [_placed(pkg, b) for b in self.files if b.path in media and b.held],
            "approval": None, "problems": self.problems,
        }


def _placed(pkg: imf.Package, b: Brief) -> str:
    where = [p.describe() for p in pkg.placements(pkg.id_of(b.path) or "")]
    return (f"{os.path.basename(b.path)}: {b.kind}, {b.action}"
            + (f"; used in {'; '.join(where[:3])}" if where else "; in no composition"))


def _digests(files: list[Brief]) -> dict[str, dict[str, bytes]]:
    """What the session's read already hashed, so that no file is read again for its PKL
    hash: every fingerprint (sha256), and the SHA-1 taken beside it in a package folder."""
    out: dict[str, dict[str, bytes]] = {}
    for b in files:
        if b.fingerprint and b.fingerprint.startswith("sha256:"):
            out[b.path] = {"sha256": bytes.fromhex(b.fingerprint[7:]), **(b.digests or {})}
    return out


def package_unit(folder: str, files: list[Brief], policy: Policy) -> PackageUnit | None:
    """The package at ``folder`` from its files' briefs, checked against its PKLs with the
    digests taken when the files were fingerprinted (a file read from the cache, without its
    SHA-1, is hashed again); None when the folder is not a package."""
    from provgate import imf  # a delivery with a package only: its XML reading is heavy

    try:
        pkg = imf.read(folder)
    except imf.PackageError:
        return None
    media = set(pkg.media())
    judged = [b for b in files if b.path in media] or files
    kind = max((b.kind for b in judged), key=sequences.SEQUENCE_RANK.__getitem__)
    strongest = max(judged, key=lambda b: ACTION_STRENGTH[b.action])
    u = PackageUnit(pkg, files, kind, strongest.action, strongest.zone,
                    f"{len(files)} files, {len(pkg.compositions)} composition(s); "
                    f"{strongest.action}: {os.path.basename(strongest.path)}: "
                    f"{strongest.reason}")
    for problem in imf.verify(pkg, digests=_digests(files)):
        _raise(u, policy.integrity(u.zone, problem.message), problem.message)
    return u


class Folder:
    """Records held back while the walk is in one folder, folded when it moves on: records
    arrive folder by folder, so a sequence is complete when its folder is. In a package
    folder every record waits (the package is one unit); elsewhere only frames do.

    Memory: a brief per frame; a frame's printable record is kept only while it is the only
    frame of its sequence so far (frames with the same folder, name, extension and padding
    always fold into one sequence, so from the second frame on none is printed alone)."""

    def __init__(self, policy: Policy, approvals: dict[int, dict[str, Any]] | None = None
                 ) -> None:
        self.policy = policy
        self.approvals = approvals or {}
        self.folder: str | None = None
        self.package = False
        self.pending: list[Brief] = []
        self.docs: dict[str, dict[str, Any]] = {}
        self._alone: dict[tuple[str, str, str, int], str | None] = {}

    def add(self, brief: Brief, doc: dict[str, Any]) -> list[Shown]:
        """Take one record; what is ready to print comes back (frames of a finished folder,
        folded; any record that is not a frame at once)."""
        folder = os.path.dirname(brief.path)
        out: list[Shown] = []
        if folder != self.folder:
            out += self.flush()
            self.folder, self.package = folder, in_package(folder)
        key = sequences.sequence_key(brief.path)
        if self.package:
            self.pending.append(brief)
            self.docs[brief.path] = doc
        elif key is not None:
            self.pending.append(brief)
            self._keep(key, brief.path, doc)
        else:
            out.append((brief, doc))
        return out

    def _keep(self, key: tuple[str, str, str, int], path: str, doc: dict[str, Any]) -> None:
        if key not in self._alone:
            self._alone[key] = path
            self.docs[path] = doc
        elif self._alone[key] is not None:  # a second frame: the sequence will fold
            self.docs.pop(self._alone[key] or "", None)
            self._alone[key] = None

    def flush(self) -> list[Shown]:
        pending, docs = self.pending, self.docs
        self.pending, self.docs, self._alone = [], {}, {}
        if self.package and pending and self.folder is not None:
            found = package_unit(self.folder, pending, self.policy)
            if found is not None:
                return [found]
        return [(item, docs[item.path]) if isinstance(item, Brief) else item
                for item in fold(pending, self.policy, self.approvals)]


Shown = Unit | PackageUnit | tuple[Brief, dict[str, Any]]


def members(items: Iterable[Unit | PackageUnit | Brief]) -> Iterator[Brief]:
    """Every file's brief, a unit's members included (the ledger's and a delivery's view)."""
    for item in items:
        if isinstance(item, (Unit, PackageUnit)):
            yield from item.frames
        else:
            yield item
