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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provgate import sequences
from provgate.assets import in_package, mhl_root
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
    if u.digest is not None and any(a.get("sequence") == u.digest for a in approvals.values()):
        return  # an approval was given for the sequence as it is (a newer one, once it grew)
    for b in u.frames:
        ident = (b.approval or {}).get("id")
        wanted = approvals.get(ident) if ident is not None else None
        if wanted is None:
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


def package_unit(folder: str, files: list[Brief], policy: Policy,
                 hasher: imf.Hasher | None = None) -> PackageUnit | None:
    """The package at ``folder`` from its files' briefs, checked against its PKLs with the
    digests taken when the files were fingerprinted (a file read from the cache, without its
    SHA-1, is hashed again); None when the folder is not a package."""
    from provgate import imf  # a delivery with a package only: its XML reading is heavy

    try:
        pkg = imf.read(folder)
    except imf.PackageError:
        return None
    # over every file of the folder, paperwork included: a name is not proof of what a file
    # is (an image named checksum.md5 is judged, and held, as what it is)
    kind = max((b.kind for b in files), key=sequences.SEQUENCE_RANK.__getitem__)
    strongest = max(files, key=lambda b: ACTION_STRENGTH[b.action])
    u = PackageUnit(pkg, files, kind, strongest.action, strongest.zone,
                    f"{len(files)} files, {len(pkg.compositions)} composition(s); "
                    f"{strongest.action}: {os.path.basename(strongest.path)}: "
                    f"{strongest.reason}")
    for problem in imf.verify(pkg, digests=_digests(files), hasher=hasher):
        _raise(u, policy.integrity(u.zone, problem.message), problem.message)
    return u


class Gather:
    """What the run's records fold into, held back until the run ends: frames grouped by
    folder over the whole run (a ``--from`` list in any order, a walk that comes back to a
    folder), every file of a package folder (the package is one unit). Any other record
    passes through at once. A path given twice is taken once.

    Memory and time: a brief per frame; a frame's printable record is made and kept only
    while it is the only frame of its sequence so far (frames with the same folder, name,
    extension and padding always fold into one sequence, so from the second frame on none
    is printed alone)."""

    def __init__(self, policy: Policy, approvals: dict[int, dict[str, Any]] | None = None
                 ) -> None:
        self.policy = policy
        self.approvals = approvals or {}
        self.folders: dict[str, list[Brief]] = {}
        self.docs: dict[str, dict[str, Any] | None] = {}
        self._alone: dict[tuple[str, str, str, int], str | None] = {}
        self._seen: set[str] = set()

    def add(self, brief: Brief, record: Callable[[], dict[str, Any]] | None) -> list[Shown]:
        """Take one file; what is ready to print comes back (a record that is neither a frame
        nor in a package, at once; the rest at ``finish``). ``record`` makes its printable
        record, called only for a record that may be printed (None: printed already)."""
        if brief.path in self._seen:
            return []
        self._seen.add(brief.path)
        folder = os.path.dirname(brief.path)
        key = sequences.sequence_key(brief.path)
        if in_package(folder):
            self.folders.setdefault(folder, []).append(brief)
            self.docs[brief.path] = record() if record else None
        elif key is not None:
            self.folders.setdefault(folder, []).append(brief)
            self._keep(key, brief.path, record)
        else:
            return [(brief, record() if record else None)]
        return []

    def _keep(self, key: tuple[str, str, str, int], path: str,
              record: Callable[[], dict[str, Any]] | None) -> None:
        if key not in self._alone:
            self._alone[key] = path
            self.docs[path] = record() if record else None
        elif self._alone[key] is not None:  # a second frame: the sequence will fold
            self.docs.pop(self._alone[key] or "", None)
            self._alone[key] = None

    def finish(self) -> list[Shown]:
        """Every folder held back, folded: its package, or its sequences and lone files."""
        out: list[Shown] = []
        for folder, briefs in self.folders.items():
            found = package_unit(folder, briefs, self.policy) if in_package(folder) else None
            if found is not None:
                out.append(found)
                continue
            out += [(item, self.docs.get(item.path)) if isinstance(item, Brief) else item
                    for item in fold(briefs, self.policy, self.approvals)]
        self.folders, self.docs, self._alone = {}, {}, {}
        return out


Shown = Unit | PackageUnit | tuple[Brief, dict[str, Any] | None]



def whole_units(root: str, briefs: list[Brief], policy: Policy,
                hasher: imf.Hasher | None = None) -> list[Brief]:
    """What only the whole can show about a watched root's files, as the daemon's delivery
    records keep it: each package checked against its PKL (``hasher`` spares re-reading
    unchanged files), each ASC MHL history that covers them. The units' briefs."""
    from provgate import imf

    by_folder: dict[str, list[Brief]] = {}
    for b in briefs:
        by_folder.setdefault(os.path.dirname(b.path), []).append(b)
    out = [u.brief() for folder, files in by_folder.items() if imf.is_package(folder)
           and (u := package_unit(folder, files, policy, hasher)) is not None]
    return out + [item.brief() if isinstance(item, (Unit, PackageUnit)) else item[0]
                  for item in mhl_check([root], briefs, policy)]


def mhl_check(given: Iterable[str], briefs: Iterable[Brief], policy: Policy) -> list[Shown]:
    """One record per ASC MHL history that covers files of the run (unit ``mhl``,
    ``schemas/unit.schema.json``): each such file is checked against the history (with the
    hash its fingerprinting read took; a file whose verdict came from the cache is read
    again), and one altered, missing or not in it holds the record with the
    policy's ``unreadable`` action for its zone (rule ``integrity``; the history's own
    problems in the strictest zone of its files). A history at or under a folder in
    ``given`` was walked whole: a file it lists that is not there is missing."""
    briefs = list(briefs)
    known: dict[str, str | None] = {}  # this call's: a history may have arrived since
    if all(mhl_root(f, known) is None for f in {os.path.dirname(b.path) for b in briefs}):
        return []
    from provgate import mhl  # a delivery with an ASC MHL history only: its reading is heavy

    histories = mhl.covering(b.path for b in briefs)
    if not histories:
        return []
    folders = [os.path.abspath(p) for p in given if os.path.isdir(p)]
    zone_of = {b.path: b.zone for b in briefs}
    out: list[Shown] = []
    taken = {b.path: b.digests for b in briefs if b.digests}

    def hasher(path: str, fmt: str) -> str:  # what the fingerprinting read took, else read
        return (taken.get(path) or {}).get(f"mhl:{fmt}") or mhl.hash_file(path, fmt)

    for root, paths in histories.items():
        found = mhl.check(root, paths, complete=any(
            os.path.commonpath([root, f]) == f for f in folders), hasher=hasher)
        strictest = max(dict.fromkeys(zone_of[p] for p in paths),
                        key=lambda z: ACTION_STRENGTH[policy.integrity(z, "").action])
        action, zone = "allow", strictest
        for p in found.problems:
            d = policy.integrity(zone_of.get(p.path or "", strictest), f"ASC MHL: {p.message}")
            if ACTION_STRENGTH[d.action] > ACTION_STRENGTH[action]:
                action, zone = d.action, d.zone
        history, messages = found.history, [p.message for p in found.problems]
        head = (f"ASC MHL: {found.verified} of {found.files} file(s) verified against "
                f"{len(history.generations)} generation(s) "
                f"({', '.join(history.formats) or 'no hash'})")
        kinds: dict[str, int] = {}
        for p in found.problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        reason = head if not messages else (
            f"{head}; {', '.join(f'{n} {k}' for k, n in kinds.items())}: {action} "
            f"(integrity). {messages[0]}")
        kind = "unreadable" if messages else "unknown"
        out.append((Brief(root, kind, action, reason, None, None,
                          "; ".join(messages[:3]) or None, zone=zone), {
            "unit": "mhl", "path": root, "kind": kind, "action": action, "zone": zone,
            "reason": reason, "fingerprint": None, "files": found.files,
            "generations": len(history.generations), "hash_formats": history.formats,
            "evidence": [head, *messages[:10]], "approval": None, "problems": messages}))
    return out
