"""The stages a batch of files goes through, one function each, over typed values:

    known  which cached verdicts still hold (stat, sidecars, judging code; content for check)
    read   fingerprints and ExifTool metadata (the file's and its XMP sidecars')
    judge  a Verdict from signals, Content Credentials, detector plugins and archive members
    decide a Record: the policy stage, the only one that assigns an action
    record the ledger rows (decisions, file cache, planned moves), committed before any move
    act    quarantine, verdict sidecars, notifications; the outcome of each record

The session (``session.py``) owns the resources they use and overlaps them over a stream of
batches. Nothing here keeps state between calls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provgate import actions
from provgate.assets import (Asset, describe_os_error, folder_listing, sidecar_stamp,
                             sidecars_of)
from provgate.credentials import c2pa_state_from_metadata
from provgate.errors import ActionError, ProvgateError
from provgate.ledger import SAME_DECISION, now_iso
from provgate.policy import Approval
from provgate.probe import Metadata
from provgate.record import Reading, Record, Verdict, text_path, unreadable
from provgate.signals import MatchDeadline, Signal
from provgate.verdict import combine_members, judge as judge_signals
from provgate.vocabulary import ACTION_STRENGTH, AI_KINDS

if TYPE_CHECKING:
    from provgate.session import Session
    from provgate import archives

log = logging.getLogger("provgate")
_BIG_FILE = 64 << 20  # hashed in a task of its own


@dataclass(frozen=True, slots=True)
class Judged:
    """A file with its verdict; ``cached`` when the verdict came from the file cache."""

    asset: Asset
    verdict: Verdict
    cached: bool = False


# -- known ------------------------------------------------------------------------------------

def known(s: Session, assets: list[Asset], cached: dict[str, dict[str, Any]]
          ) -> tuple[dict[str, Judged], list[Asset], dict[str, dict[str, Any]]]:
    """Verdicts known without reading (errors, unchanged files), the files to read, and among
    those the ones whose cached verdict holds if their content is unchanged (``check``)."""
    ready: dict[str, Judged] = {}
    todo: list[Asset] = []
    confirm: dict[str, dict[str, Any]] = {}
    listing = folder_listing()
    for a in assets:
        if a.error:
            ready[a.path] = Judged(a, unreadable(a.error))
            continue
        ctx = context(s, a.path, listing)
        row = cached.get(text_path(a.path))
        if row and (row["size"], row["mtime_ns"], row["ctime_ns"], row["inode"],
                    row["catalogue"]) == (a.size, a.mtime_ns, a.ctime_ns, a.inode, ctx):
            if not s.opts.confirm_content:
                ready[a.path] = Judged(replace(a, context=ctx, fingerprint=row["fingerprint"]),
                                       Verdict.from_json(row["verdict"]), True)
                continue
            confirm[a.path] = row
        todo.append(replace(a, context=ctx))
    return ready, todo, confirm


def context(s: Session, path: str, listing: Any) -> str:
    """What a cached verdict was judged with: the catalogue, trust and judging code, and the
    file's sidecars (one arriving or changing beside it changes its evidence)."""
    stamp = sidecar_stamp(path, listing)
    if not stamp:
        return s.cache_key
    return hashlib.sha256(os.fsencode(f"{s.cache_key}|{stamp}")).hexdigest()[:16]


# -- read -------------------------------------------------------------------------------------

def read(s: Session, todo: list[Asset], confirm: dict[str, dict[str, Any]]
         ) -> tuple[list[Reading], dict[str, Judged]]:
    """Fingerprints and metadata for one batch. Files in ``confirm`` are hashed first: the
    same content keeps its cached verdict without ExifTool, other content is read anew."""
    same: dict[str, Judged] = {}
    if confirm:
        hashed_first = {a.path: a for a in _fingerprint_all([a for a in todo
                                                             if a.path in confirm])}
        for a in hashed_first.values():
            if a.fingerprint and a.fingerprint == confirm[a.path]["fingerprint"]:
                same[a.path] = Judged(a, Verdict.from_json(confirm[a.path]["verdict"]), True)
        # changed content keeps its fingerprint: with_fingerprint does not hash it again
        todo = [hashed_first.get(a.path, a) for a in todo if a.path not in same]
    if not todo:
        return [], same
    # hashing beside the ExifTool call: small files in one task (a future per file costs
    # more than hashing one), each large file in its own, so two hash at once
    big = [a for a in todo if a.size > _BIG_FILE]
    tasks = [s.hasher.submit(_fingerprint_all, [a for a in todo if a.size <= _BIG_FILE]),
             *(s.hasher.submit(_fingerprint_all, [a]) for a in big)]
    readings = _probe(s, todo)
    hashed = {a.path: a for t in tasks for a in t.result()}
    return [_same_file(replace(r, asset=hashed[r.asset.path])) for r in readings], same


def _same_file(r: Reading) -> Reading:
    """What was read belongs to the file that was found: the same inode, size and times
    after the read as at the walk, and still inside its tree. A link flipped to a file
    outside the tree during the read, or a writer, leaves nothing of what was read in the
    record (no evidence, no fingerprint): the file is unreadable, and judged again when it
    next changes or is checked."""
    a = r.asset
    if a.error:  # the hashing read found it changed (a link in its place, a writer)
        return _discarded(r, a.error)
    try:
        # a file the walk saw as no link: lstat, so a link put in its place shows as another
        # inode below, and one call does
        st = os.lstat(a.path) if a.link is False else os.stat(a.path)
    except OSError as exc:
        return _discarded(r, describe_os_error(exc))
    if (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != (
            a.inode, a.size, a.mtime_ns, a.ctime_ns):
        return _discarded(r, "changed while being read (a writer, or a link that moved): "
                             "nothing of that read is kept")
    # a folder on the way swapped for a link changes the inode above; a link itself is
    # checked to still lead inside the tree
    if a.link is not False and os.path.islink(a.path):
        real, top = os.path.realpath(a.path), os.path.realpath(a.root)
        if os.path.commonpath([real, top]) != top:
            return _discarded(r, "a link inside the tree now points outside it: not followed")
    return r


def _discarded(r: Reading, why: str) -> Reading:
    return Reading(replace(r.asset, fingerprint=None, error=why), Metadata(r.meta.path, {}, why))


def _probe(s: Session, assets: list[Asset]) -> list[Reading]:
    listing = folder_listing()
    found = {a.path: sidecars_of(a.path, listing=listing) for a in assets}
    xmp = {p: [x for x in v if x.lower().endswith(".xmp")] for p, v in found.items()}
    metas = s.pool.probe([a.path for a in assets] + [x for v in xmp.values() for x in v])
    return [Reading(a, metas[a.path], tuple(metas[x] for x in xmp[a.path]),
                    next((x for x in found[a.path] if x.lower().endswith(".c2pa")), None))
            for a in assets]


def _fingerprint_all(assets: list[Asset]) -> list[Asset]:
    return [a.with_fingerprint() for a in assets]


# -- judge ------------------------------------------------------------------------------------

def judge(s: Session, reading: Reading, nested: bool = False) -> Verdict:
    """The verdict for one file, within the ``--timeout`` deadline (a crafted field must not
    stall the rest: past it, the file is unreadable). An archive's members are judged too, and
    so are those of a zip appended to any file (a polyglot)."""
    meta = reading.meta
    if reading.asset.error:  # the OS's reason (permission, vanished) says more than ExifTool's
        meta = Metadata(meta.path, meta.tags, reading.asset.error, meta.warnings, meta.damage)
    try:
        own = _judge_file(s, reading.asset, meta, reading.sidecars, reading.c2pa_sidecar)
    except MatchDeadline as exc:
        return unreadable(str(exc))
    if nested:  # the expansion laid out its nested archives and appended zips already
        return own
    found = _maybe_archive(reading.asset)
    verdict = own
    if found.kind:
        verdict = _judge_archive(s, reading.asset, verdict)
    if found.appended:
        verdict = _judge_archive(s, reading.asset, verdict, appended=True)
    return verdict


def _judge_file(s: Session, asset: Asset, meta: Metadata, sidecars: tuple[Metadata, ...],
                c2pa_sidecar: str | None) -> Verdict:
    deadline = time.monotonic() + s.opts.timeout
    signals = s.catalogue.match(meta, deadline=deadline)
    for side in sidecars:  # clip.mov.xmp and clip.xmp: both are evidence
        if not _written_by_provgate(side):
            signals += s.catalogue.match(side, "sidecar", deadline)
    found, warnings = s.detect(asset.path, meta)
    signals += found
    state = c2pa_state_from_metadata(meta)
    details: dict[str, Any] = {}
    if not meta.error:
        cred = s.checker.check(asset.path, meta, state, asset.c2pa_marker, c2pa_sidecar)
        if cred.warning and s.checker.available:
            warnings.append(cred.warning)
        state, details = cred.state, cred.details
        if cred.manifest_read:  # c2pa-python's structured view replaces ExifTool's CBOR
            signals = [x for x in signals if ":CBOR:" not in f":{x.tag}"]
            signals += list(cred.signals)
    return judge_signals(meta, _unique(signals), state, details, tuple(warnings))


def _judge_archive(s: Session, asset: Asset, own: Verdict, appended: bool = False) -> Verdict:
    """An archive (or the zip ``appended`` to a file) is opened read-only (bounded: size,
    count, depth, ratio, time) and every member judged like a file of the delivery; one that
    cannot be opened, or whose judging fails in any way, is unreadable, never a crash."""
    from provgate import archives

    what = "appended zip" if appended else "archive"
    try:
        with archives.expanded(asset.path, appended=appended) as members:
            return combine_members(own, _judge_members(s, members), appended=appended)
    except archives.ArchiveError as exc:
        reason = f"{what} not judged: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a crafted archive provokes
        log.warning("%s of %s not judged", what, text_path(asset.path), exc_info=True)
        reason = f"{what} not judged: {type(exc).__name__}: {exc}"
    # what could not be judged holds the file, unless a generated signal already holds it harder
    # (an archive's own error is ExifTool's about the container; a polyglot host's is its own)
    return replace(own, kind=own.kind if own.kind in AI_KINDS else "unreadable",
                   error="; ".join(e for e in (own.error if appended else None, reason) if e))


def _judge_members(s: Session, members: list[archives.Member]) -> list[tuple[str, Verdict]]:
    files = [m for m in members if m.path and not m.archive]
    readings = {r.asset.path: r for r in _probe(
        s, [Asset(m.path, os.path.dirname(m.path), m.size) for m in files if m.path])}
    out = []
    for m in members:
        if m.archive:
            continue  # its members follow it, expanded
        if m.error or not m.path:
            out.append((m.name, unreadable(m.error or "not extracted")))
        else:
            out.append((m.name, judge(s, readings[m.path], nested=True)))
    return out


def _maybe_archive(asset: Asset) -> archives.Layout:
    """What the file's own bytes hold (whatever ExifTool's file type says: a zip whose first
    member is ``mimetype`` is ODT or EPUB to it, a tar whose first name starts ``GIF89a`` a
    GIF): an archive by its first bytes, a zip appended at its end. Looked at while the file
    was hashed (its first 512 and last 64 KiB + 22 bytes); read now only if it was not."""
    from provgate import archives

    if asset.error:
        return archives.Layout()
    return asset.layout if asset.layout is not None else archives.layout(asset.path)


def _written_by_provgate(meta: Metadata) -> bool:
    """provgate's own verdict sidecar is output, never evidence: a stale one must not outlive
    the file it was written for."""
    return any("XMP-provgate:" in key for key in meta.tags)


def _unique(signals: list[Signal]) -> list[Signal]:
    return list(dict.fromkeys(signals))


# -- decide -----------------------------------------------------------------------------------

def decide(s: Session, judged: Judged, approvals: list[Approval]) -> Record:
    """The policy's decision for one judged file, as a record. With the vendor's GenAI
    register, what it declares joins the evidence (a declared use the metadata cannot see
    gets the declared kind) and its findings go to the policy."""
    verdict, declared = judged.verdict, None
    found = s.register_for(judged.asset.path)
    reg = found[0] if found else None
    policy = s.policy_for(judged.asset.path)
    if found is not None and not judged.asset.error:
        from provgate import register  # only deliveries with a register

        # an approval reference counts where the approval may clear files: in its scope
        declared = register.reconcile(
            verdict.kind, [e.kind for e in verdict.evidence],
            found[0].entries_for(judged.asset.path, found[1]),
            approvals={a.ref for a in approvals if a.within(policy.scope)})
        verdict = replace(verdict, kind=declared.kind,
                          evidence=verdict.evidence + declared.signals())
    decision = policy.decide(judged.asset, verdict, approvals, s.opts.zone, declared=declared)
    broken = s.register_problem(judged.asset.path)
    if broken is not None:  # as check stops on it: the delivery's declaration is unreadable
        held = policy.integrity(decision.zone, f"the delivery's GenAI register does not "
                                               f"validate: {broken}")
        if ACTION_STRENGTH[held.action] > ACTION_STRENGTH[decision.action]:
            decision = held
    return Record(judged.asset, verdict, decision, s.run_info, now_iso(), s.tools(),
                  cached=judged.cached, own=judged.verdict if declared else None,
                  register=None if declared is None else {
                      **declared.to_dict(), "source": str(reg.source), "digest": reg.digest})


# -- record -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Planned:
    """What the record stage wrote for a batch: the new records and the moves to make."""

    fresh: list[Record]
    moves: list[dict[str, Any]]


def record(s: Session, records: list[Record], cached: dict[str, dict[str, Any]]) -> Planned:
    """Append what is new (a decision unlike the cached one for the same content), refresh
    the file cache, and commit the quarantine moves before any of them is made. A decision
    another process (the daemon, a CLI) recorded while this run lasted, the same about the
    same content, is not recorded again: its id stands, its move is that process's."""
    fresh: list[Record] = []
    file_rows: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    for rec in records:
        key = rec.key()
        prev = cached.get(rec.path)
        index = None
        if prev and prev["decision_key"] == key and prev["decision_id"]:
            rec.id = prev["decision_id"]
        elif not rec.asset.fingerprint and (same := _same_as_last(s, rec)) is not None:
            rec.id = same  # a file that cannot be judged, heard again: nothing new to record
        else:
            index = len(fresh)
            fresh.append(rec)
            if rec.action == "block" and s.mode == "enforce" and rec.asset.fingerprint:
                moves.append(_plan_move(s, rec.asset, index))
        if rec.asset.fingerprint and not (rec.cached and index is None):
            file_rows.append(_file_row(rec, key, index))
    if s.opts.record:
        ids, theirs = s.ledger.append_new([r.ledger_row() for r in fresh], file_rows, moves,
                                          since=s.ledger.opened_at)
        for rec, ident in zip(fresh, ids, strict=True):
            rec.id = ident
        if theirs:
            keep = [i for i in range(len(fresh)) if i not in theirs]
            renumber = {old: new for new, old in enumerate(keep)}
            fresh = [fresh[i] for i in keep]
            moves = [{**m, "row_index": renumber[m["row_index"]]} for m in moves
                     if m["row_index"] in renumber]
    return Planned(fresh, moves if s.opts.record else [])


def _same_as_last(s: Session, rec: Record) -> int | None:
    """A file with no content to cache (not judged, unreadable) has no file-cache row: its
    last decision says whether this one is new (the daemon hears such a file once per event)."""
    last = s.ledger.last_decision(rec.path)
    row = rec.ledger_row()
    return last["id"] if last and all(last[k] == row[k] for k in SAME_DECISION) else None


def _file_row(rec: Record, key: str, index: int | None) -> dict[str, Any]:
    a = rec.asset
    return {"path": rec.path, "size": a.size, "mtime_ns": a.mtime_ns, "ctime_ns": a.ctime_ns,
            "inode": a.inode, "fingerprint": a.fingerprint, "catalogue": a.context,
            "trust": rec.run.trust_digest, "verdict": (rec.own or rec.verdict).to_json(),
            "decision_key": key, "seen": rec.time, "decision_id": rec.id, "row_index": index}


def _plan_move(s: Session, asset: Asset, row_index: int) -> dict[str, Any]:
    # the quarantine name as text the ledger can hold (a name that is not UTF-8 keeps its
    # undecodable bytes as \xNN there, as in the record; the original is moved exactly)
    target = actions.plan_target(s.quarantine_dir, text_path(asset.relpath), s.planned)
    s.planned.add(target)
    # its sidecars go with it, planned (and committed with the decision) before any move;
    # their paths are kept exact (JSON escapes undecodable bytes), the receipt shows text
    sidecars = actions.plan_sidecars(asset.path, target, s.planned)
    s.planned.update(Path(e["quarantined_path"]) for e in sidecars)
    return {"row_index": row_index, "original_path": text_path(asset.path),
            "_exact_path": asset.path, "quarantined_path": str(target),
            "receipt_path": str(target) + actions.RECEIPT_SUFFIX,
            "fingerprint": asset.fingerprint, "size": asset.size, "state": "pending",
            "created": now_iso(), "updated": now_iso(), "user": s.user,
            "sidecars": json.dumps(sidecars) if sidecars else None}


# -- act --------------------------------------------------------------------------------------

def act(s: Session, records: list[Record], planned: Planned) -> None:
    """Carry out the planned moves, write verdict sidecars where a zone asks for them, notify
    about what is new, and give every record its outcome."""
    _carry_out(s, planned)
    _tag(s, planned.fresh)
    for rec in planned.fresh:
        rec.problems.extend(s.notifier.send(rec))
    for rec in records:
        rec.outcome = rec.outcome or _outcome(rec, s.mode)


def _carry_out(s: Session, planned: Planned) -> None:
    if not planned.moves:
        return
    exact = {planned.fresh[m["row_index"]].id: m["_exact_path"] for m in planned.moves}
    by_decision = {r.id: r for r in planned.fresh}
    for move in s.ledger.moves("pending"):
        rec = by_decision.get(move["decision_id"])
        if rec is None:
            continue  # another run's move: recovery's business
        # the in-memory path is exact even where the text form is not
        move = {**move, "original_path": exact[move["decision_id"]]}
        rec.outcome = finish_move(s, move, rec.to_json(), rec.problems)
        if move.get("sidecar_problems"):  # the media moved; a sidecar stayed behind
            s.ledger.update_move(move["id"], error="; ".join(move["sidecar_problems"]))


def finish_move(s: Session, move: dict[str, Any], decision: dict[str, Any],
                problems: list[str] | None = None) -> str:
    """Make one committed move; the ledger says how it ended."""
    try:
        actions.quarantine(move, decision, roots=s.policy.config.roots)
    except ActionError as exc:
        s.ledger.update_move(move["id"], state="failed", error=str(exc))
        log.error("%s", exc)
        if problems is not None:
            problems.append(str(exc))
        return f"left in place: {exc}"
    s.ledger.update_move(move["id"], state="done")
    return f"quarantined to {move['quarantined_path']}"


def _tag(s: Session, records: list[Record]) -> None:
    """Sidecars with the verdict, in zones whose policy asks for them (never in audit)."""
    if s.mode == "audit":
        return
    for rec in records:
        raw = rec.asset.path
        if not s.policy.zones.get(rec.decision.zone, {}).get("tag") or not os.path.exists(raw):
            continue
        try:
            problem = actions.write_sidecar(rec.to_json(), raw)
        except ProvgateError as exc:
            problem = f"sidecar not written: {exc}"
        if problem:
            rec.problems.append(problem)


def _outcome(rec: Record, mode: str) -> str:
    if rec.action != "block":
        return {"allow": "allowed", "flag": "recorded and socialized",
                "escalate": "held for written approval"}[rec.action]
    if mode == "audit":
        return "would quarantine (audit mode)"
    if mode == "warn":
        return "left in place (warn mode)"
    return "left in place" if not rec.asset.fingerprint else "quarantine pending"
