"""Pipeline: one batch flow that scan, check and watch all feed.

file -> Asset (assets) -> Metadata (probe) -> Signals (signals, credentials) -> Verdict
(verdict) -> Decision (policy) -> ledger row, committed before any move -> action (actions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from provgate import __version__, actions, archives, credentials
from provgate.assets import Asset, discover, folder_listing, sidecar_stamp, sidecars_of
from provgate.credentials import CredentialChecker
from provgate.errors import ActionError, ConfigError, ProvgateError
from provgate.ledger import Ledger, now_iso
from provgate.notify import Notifier
from provgate.policy import MODES, Decision, Policy
from provgate.probe import ExifToolPool, Integrity, Metadata, find_exiftool
from provgate.signals import Catalogue, MatchDeadline, Signal
from provgate.verdict import Verdict, c2pa_state_from_metadata, combine_members, judge

log = logging.getLogger("provgate")
_BIG_FILE = 64 << 20  # hashed in a task of its own
# bumped when judging changes in code (not in the catalogue): cached verdicts are read again
JUDGE_VERSION = 2


@dataclass
class Options:
    """Everything one run needs; the CLI fills it from options, a library user directly."""

    policy: Policy = field(default_factory=Policy.load)
    ledger: str | None = None
    quarantine: str | None = None
    mode: str | None = None
    zone: str | None = None
    actor: str = "cli"
    rescan: bool = False
    record: bool = True
    processes: int | None = None
    timeout: float = 30.0
    batch_size: int = 64
    exiftool: str | None = None
    catalogue: Path | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # re-hash files the cache knows before trusting their cached verdict (the gate: a file
    # rewritten with its size and times restored must not keep an old "allow")
    confirm_content: bool = False

    def __post_init__(self) -> None:
        if self.mode and self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.zone and self.zone not in self.policy.zones and self.zone != self.policy.default_zone:
            raise ConfigError(f"unknown zone {self.zone!r}: the policy defines "
                              f"{', '.join(self.policy.zones) or 'no zones'}")


class Gate:
    """A session: catalogue, ExifTool pool, credential checker and ledger, opened once."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.policy = opts.policy
        self.mode = opts.mode or self.policy.mode
        self.catalogue = Catalogue.load(opts.catalogue)
        self.exiftool = find_exiftool(opts.exiftool)
        trust = self.policy.trust_bundle()
        self.trust_digest = trust.digest
        self.checker = CredentialChecker(self.catalogue, trust)
        self.ledger = Ledger(self.policy.ledger_path(opts.ledger), scratch=not opts.record)
        self.quarantine_dir = self.policy.quarantine_path(opts.quarantine)
        self.notifier = Notifier(self.policy.notifiers)
        self._pool: ExifToolPool | None = None
        self._pool_lock = threading.Lock()
        self._hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="provgate-hash")
        self.user = actions.current_user()
        installed = credentials.installed()
        self._c2pa_version = f"c2pa-python {installed}" if installed else "not installed"
        self.cache_key = hashlib.sha256(
            f"{JUDGE_VERSION}|{self.catalogue.digest}|{self.trust_digest}|{installed}".encode()
        ).hexdigest()[:16]
        self._planned: set[Path] = set()  # quarantine names given out in this session

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool:
            self._pool.close()
        self._hasher.shutdown(wait=True)
        self.ledger.close()

    @property
    def pool(self) -> ExifToolPool:
        """Started on first need: a rescan of unchanged files never starts ExifTool."""
        with self._pool_lock:
            if self._pool is None:
                # all tags: ExifTool 12.57 filters named tags slowly (the catalogue's 73 cost
                # 1.4-1.6x reading all of them; bench_scan.py, B2)
                self._pool = ExifToolPool(None, self.opts.processes, self.opts.timeout,
                                          self.opts.batch_size, self.exiftool,
                                          integrity=Integrity.from_doc(self.catalogue.doc))
            return self._pool

    def tools(self) -> dict[str, Any]:
        return {"provgate": __version__, "exiftool": self._pool.version if self._pool else None,
                "catalogue": self.catalogue.version, "c2pa": self._c2pa_version}

    # -- running ---------------------------------------------------------------------------

    def run(self, paths: Iterable[str], progress: Callable[[int], None] | None = None,
            root: str | None = None) -> Iterator[dict[str, Any]]:
        """Judge every file under ``paths``; yields one record per file, in walk order.

        Three stages overlap: reader threads keep every ExifTool process busy (one batch each,
        hashing beside it), one thread turns what they read into verdicts (signals, C2PA),
        and this thread decides, records and acts. A bounded window keeps memory flat.
        """
        walk = discover(list(paths), [*self.policy.include, *self.opts.include],
                        [*self.policy.exclude, *self.opts.exclude], self.policy.skip_hidden,
                        root, prune=[str(self.quarantine_dir)])
        yield from self.pipeline(_chunks(walk, self.opts.batch_size), progress)

    def admit(self, assets: list[Asset]) -> list[Asset]:
        """Files the walk marked as left out are dropped, except in a zone that holds what it
        cannot judge (final): there they become records with the reason, so a hidden file or
        a transfer partial in a deliverable holds the delivery instead of slipping by."""
        out = []
        for a in assets:
            if a.skipped is None:
                out.append(a)
                continue
            zone = self.policy.zone_of(a, self.opts.zone)
            if self.policy.holds_unjudged(zone):
                out.append(replace(a, error=f"not judged: {a.skipped}; in zone {zone} every "
                                            "file of a delivery must be judged"))
        return out

    def pipeline(self, batches: Iterable[list[Asset]],
                 progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
        """The three stages over batches of assets. A batch is let out as soon as it is
        done; an empty batch is a tick that only does that (a daemon's stream sends one
        while it waits for files to settle)."""
        workers = self.opts.processes or os.cpu_count() or 1
        window: deque[tuple[list[Asset], Future[Any], dict[str, Any]]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="provgate-read") as readers, \
                ThreadPoolExecutor(1, thread_name_prefix="provgate-judge") as judges:
            for batch in batches:
                batch = self.admit(batch)
                if batch:
                    cached = self._cached(batch)
                    ready, todo, confirm = self._split(batch, {} if self.opts.rescan
                                                      else cached)
                    reading = readers.submit(self._read, todo, confirm) if todo else None
                    window.append((batch, judges.submit(self._judge, ready, reading), cached))
                while window and (len(window) > 2 * workers or window[0][1].done()):
                    yield from self._conclude(*window.popleft(), progress)
            while window:
                yield from self._conclude(*window.popleft(), progress)

    def _conclude(self, batch: list[Asset], future: Future[Any], cached: dict[str, Any],
                  progress: Callable[[int], None] | None) -> list[dict[str, Any]]:
        records = self._decide(batch, future.result(), cached)
        if progress:
            progress(len(batch))
        return records

    def _cached(self, assets: list[Asset]) -> dict[str, dict[str, Any]]:
        return self.ledger.cached_files([text_path(a.path) for a in assets if not a.error])

    def process(self, assets: list[Asset]) -> list[dict[str, Any]]:
        """One batch, without the overlap of ``run``: judge, decide, record, act."""
        assets = self.admit(assets)
        cached = self._cached(assets)
        ready, todo, confirm = self._split(assets, {} if self.opts.rescan else cached)
        reading: Future[Any] | None = None
        if todo:
            reading = Future()
            reading.set_result(self._read(todo, confirm))
        return self._decide(assets, self._judge(ready, reading), cached)

    def _decide(self, assets: list[Asset], verdicts: dict[str, tuple[Asset, Verdict, bool]],
                cached: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        approvals = self.ledger.approvals(include_inactive=False)
        records, new_rows, file_rows, moves = [], [], [], []
        for asset in assets:
            asset, verdict, was_cached = verdicts[asset.path]
            decision = self.policy.decide(asset, verdict, approvals, self.opts.zone)
            rec = self._record(asset, verdict, decision, was_cached)
            key = _decision_key(rec)
            prev = cached.get(text_path(asset.path))
            if prev and prev["decision_key"] == key and prev["decision_id"]:
                rec["id"] = prev["decision_id"]
                index = None
            else:
                index = len(new_rows)
                new_rows.append(rec)
                if decision.action == "block" and self.mode == "enforce" and asset.fingerprint:
                    moves.append(self._plan_move(asset, index))
            if asset.fingerprint and not (was_cached and index is None):
                file_rows.append({"path": text_path(asset.path), "size": asset.size,
                                  "mtime_ns": asset.mtime_ns, "ctime_ns": asset.ctime_ns,
                                  "inode": asset.inode,
                                  "fingerprint": asset.fingerprint, "catalogue": asset.context,
                                  "trust": self.trust_digest, "verdict": _verdict_json(verdict),
                                  "decision_key": key, "seen": rec["time"],
                                  "decision_id": rec["id"], "row_index": index})
            records.append(rec)
        if self.opts.record:
            ids = self.ledger.append(new_rows, file_rows, moves)
            for rec, ident in zip(new_rows, ids, strict=True):
                rec["id"] = ident
            self._carry_out(moves, new_rows)
            self._tag(new_rows)
        fresh = {id(r) for r in new_rows}
        for rec in records:
            if id(rec) in fresh:
                rec["warnings"].extend(self.notifier.send(rec))
            rec["outcome"] = rec.get("outcome") or _outcome(rec, self.mode)
        return records

    def _split(self, assets: list[Asset], cached: dict[str, dict[str, Any]]
               ) -> tuple[dict[str, tuple[Asset, Verdict, bool]], list[Asset],
                          dict[str, dict[str, Any]]]:
        """Verdicts known without reading (errors, unchanged files), the files to read, and
        among those the ones whose cached verdict holds if their content is unchanged."""
        ready: dict[str, tuple[Asset, Verdict, bool]] = {}
        todo: list[Asset] = []
        confirm: dict[str, dict[str, Any]] = {}
        listing = folder_listing()
        for a in assets:
            row = cached.get(text_path(a.path))
            if a.error:
                ready[a.path] = (a, Verdict("unreadable", "not_checked", error=a.error), False)
                continue
            a = replace(a, context=self._context(a.path, listing))
            if row and (row["size"], row["mtime_ns"], row["ctime_ns"], row["inode"],
                        row["catalogue"]) == (a.size, a.mtime_ns, a.ctime_ns, a.inode,
                                              a.context):
                if not self.opts.confirm_content:
                    ready[a.path] = (replace(a, fingerprint=row["fingerprint"]),
                                     _verdict_from_json(row["verdict"]), True)
                    continue
                confirm[a.path] = row
            todo.append(a)
        return ready, todo, confirm

    def _context(self, path: str, listing: Any) -> str:
        """What a cached verdict was judged with: the catalogue, trust and judging code, and
        the file's sidecars (one arriving or changing beside it changes its evidence)."""
        stamp = sidecar_stamp(path, listing)
        if not stamp:
            return self.cache_key
        return hashlib.sha256(os.fsencode(f"{self.cache_key}|{stamp}")).hexdigest()[:16]

    def _read(self, todo: list[Asset], confirm: dict[str, dict[str, Any]]
              ) -> tuple[list[Asset], dict[str, str | None], dict[str, Metadata],
                         dict[str, tuple[Asset, Verdict, bool]]]:
        """Fingerprints and ExifTool metadata (the file's and its sidecar's) for one batch.
        Files in ``confirm`` are hashed first: the same content keeps its cached verdict
        without ExifTool, other content is read like a new file."""
        known: dict[str, tuple[Asset, Verdict, bool]] = {}
        if confirm:
            for a in _fingerprint_all([a for a in todo if a.path in confirm]):
                if a.fingerprint and a.fingerprint == confirm[a.path]["fingerprint"]:
                    known[a.path] = (a, _verdict_from_json(confirm[a.path]["verdict"]), True)
            todo = [a for a in todo if a.path not in known]
        # hashing beside the ExifTool call: small files in one task (a future per file costs
        # more than hashing one), each large file in its own, so two hash at once
        big = [a for a in todo if a.size > _BIG_FILE]
        tasks = [self._hasher.submit(_fingerprint_all, [a for a in todo if a.size <= _BIG_FILE]),
                 *(self._hasher.submit(_fingerprint_all, [a]) for a in big)]
        sidecars = {a.path: _xmp_sidecars(a.path) for a in todo}
        metas = (self.pool.probe([a.path for a in todo] + [s for v in sidecars.values()
                                                           for s in v])
                 if todo else {})
        hashed = {a.path: a for t in tasks for a in t.result()}
        return [hashed[a.path] for a in todo], sidecars, metas, known

    def _judge(self, ready: dict[str, tuple[Asset, Verdict, bool]],
               reading: Future[Any] | None) -> dict[str, tuple[Asset, Verdict, bool]]:
        out = dict(ready)
        if reading is None:
            return out
        hashed, sidecars, metas, known = reading.result()
        out.update(known)
        for asset in hashed:
            meta = metas[asset.path]
            if asset.error:  # the OS's reason (permission, vanished) says more than ExifTool's
                meta = Metadata(meta.path, meta.tags, asset.error, meta.warnings)
            try:
                verdict = self._verdict(asset, meta, sidecars[asset.path], metas)
            except MatchDeadline as exc:  # a crafted field must not stall the rest
                verdict = Verdict("unreadable", "not_checked", error=str(exc))
            out[asset.path] = (asset, verdict, False)
        return out

    def _verdict(self, asset: Asset, meta: Metadata, sidecars: list[str],
                 metas: dict[str, Metadata], nested: bool = False) -> Verdict:
        own = self._file_verdict(asset, meta, sidecars, metas)
        if nested or not _maybe_archive(meta) or not archives.is_archive(asset.path):
            return own
        return self._archive_verdict(asset, own)

    def _archive_verdict(self, asset: Asset, own: Verdict) -> Verdict:
        """An archive is opened read-only (bounded: size, count, depth, ratio, time) and every
        member judged like a file of the delivery; one that cannot be opened is unreadable."""
        try:
            with archives.expanded(asset.path) as members:
                return combine_members(own, self._judge_members(members))
        except archives.ArchiveError as exc:
            return replace(own, kind="unreadable", error=f"archive not judged: {exc}")

    def _judge_members(self, members: list[archives.Member]) -> list[tuple[str, Verdict]]:
        files = [m for m in members if m.path and not m.archive]
        sidecars = {m.path: _xmp_sidecars(m.path) for m in files}
        metas = self.pool.probe([m.path for m in files] + [s for v in sidecars.values()
                                                           for s in v])
        out = []
        for m in members:
            if m.archive:
                continue  # its members follow it, expanded
            if m.error or not m.path:
                out.append((m.name, Verdict("unreadable", "not_checked", error=m.error)))
                continue
            member = Asset(m.path, os.path.dirname(m.path), m.size)
            try:
                out.append((m.name, self._verdict(member, metas[m.path], sidecars[m.path],
                                                  metas, nested=True)))
            except MatchDeadline as exc:
                out.append((m.name, Verdict("unreadable", "not_checked", error=str(exc))))
        return out

    def _file_verdict(self, asset: Asset, meta: Metadata, sidecars: list[str],
                      metas: dict[str, Metadata]) -> Verdict:
        # judging has a deadline like reading: --timeout per file
        deadline = time.monotonic() + self.opts.timeout
        signals = self.catalogue.match(meta, deadline=deadline)
        for sidecar in sidecars:  # clip.mov.xmp and clip.xmp: both are evidence
            if not _written_by_provgate(metas[sidecar]):
                signals += self.catalogue.match(metas[sidecar], "sidecar", deadline)
        warnings: list[str] = []
        state = c2pa_state_from_metadata(meta)
        details: dict[str, Any] = {}
        if not meta.error:
            cred = self.checker.check(asset.path, meta, state, asset.c2pa_marker)
            if cred.warning and self.checker.available:
                warnings.append(cred.warning)
            state, details = cred.state, cred.details
            if cred.manifest_read:  # c2pa-python's structured view replaces ExifTool's CBOR
                signals = [s for s in signals if ":CBOR:" not in f":{s.tag}"]
                signals += list(cred.signals)
        signals = _unique(signals)
        return judge(meta, signals, state, details, tuple(warnings))

    def _record(self, asset: Asset, verdict: Verdict, decision: Decision,
                cached: bool) -> dict[str, Any]:
        return {
            "id": None, "time": now_iso(), "path": text_path(asset.path),
            "root": text_path(asset.root),
            "fingerprint": asset.fingerprint, "size": asset.size if not asset.error else None,
            "kind": verdict.kind, "c2pa": verdict.c2pa,
            "evidence": [s.to_dict() for s in verdict.evidence],
            "credentials": verdict.credentials, "error": verdict.error,
            "warnings": list(verdict.warnings),
            "zone": decision.zone, "rule": decision.rule, "action": decision.action,
            "reason": decision.reason, "approval": decision.approval,
            "approval_id": (decision.approval or {}).get("id"),
            "approval_ref": (decision.approval or {}).get("ref"),
            "mode": self.mode, "policy_digest": self.policy.digest,
            "trust_digest": self.trust_digest, "tools": self.tools(),
            "actor": self.opts.actor, "user": self.user, "cached": cached, "outcome": None,
            "_raw_path": asset.path,
        }

    # -- acting ----------------------------------------------------------------------------

    def _tag(self, rows: list[dict[str, Any]]) -> None:
        """Sidecars with the verdict, in zones whose policy asks for them (never in audit)."""
        if self.mode == "audit":
            return
        for rec in rows:
            raw = rec.get("_raw_path", rec["path"])
            if not self.policy.zones.get(rec["zone"], {}).get("tag") or not os.path.exists(raw):
                continue
            try:
                problem = actions.write_sidecar(rec, raw)
            except ProvgateError as exc:
                problem = f"sidecar not written: {exc}"
            if problem:
                rec["warnings"].append(problem)

    def _plan_move(self, asset: Asset, row_index: int) -> dict[str, Any]:
        # the quarantine name as text the ledger can hold (a name that is not UTF-8 keeps its
        # undecodable bytes as \xNN there, as in the record; the original is moved exactly)
        target = actions.plan_target(self.quarantine_dir, text_path(asset.relpath),
                                     self._planned)
        self._planned.add(target)
        # its sidecars go with it, planned (and committed with the decision) before any move;
        # their paths are kept exact (JSON escapes undecodable bytes), the receipt shows text
        sidecars = actions.plan_sidecars(asset.path, target, self._planned)
        self._planned.update(Path(e["quarantined_path"]) for e in sidecars)
        return {"row_index": row_index, "original_path": text_path(asset.path),
                "_raw_path": asset.path,
                "quarantined_path": str(target),
                "receipt_path": str(target) + actions.RECEIPT_SUFFIX,
                "fingerprint": asset.fingerprint, "size": asset.size, "state": "pending",
                "created": now_iso(), "updated": now_iso(), "user": self.user,
                "sidecars": json.dumps(sidecars) if sidecars else None}

    def _carry_out(self, moves: list[dict[str, Any]], new_rows: list[dict[str, Any]]) -> None:
        if not moves:
            return
        raw = {new_rows[m["row_index"]]["id"]: m["_raw_path"] for m in moves}
        by_decision = {r["id"]: r for r in new_rows}
        for move in self.ledger.moves("pending"):
            rec = by_decision.get(move["decision_id"])
            if rec is not None:  # the in-memory path is exact even where the text form is not
                exact = {**move, "original_path": raw[move["decision_id"]]}
                rec["outcome"] = self.finish_move(exact, rec)
                if exact.get("sidecar_problems"):  # the media moved; a sidecar stayed behind
                    self.ledger.update_move(move["id"],
                                            error="; ".join(exact["sidecar_problems"]))

    def finish_move(self, move: dict[str, Any], rec: dict[str, Any]) -> str:
        try:
            actions.quarantine(move, rec)
        except ActionError as exc:
            self.ledger.update_move(move["id"], state="failed", error=str(exc))
            log.error("%s", exc)
            rec.setdefault("warnings", []).append(str(exc))
            return f"left in place: {exc}"
        self.ledger.update_move(move["id"], state="done")
        return f"quarantined to {move['quarantined_path']}"

    def recover(self) -> list[str]:
        """Finish moves a crash interrupted (the decision was committed, the move was not)."""
        done = []
        for move in self.ledger.moves("pending"):
            rec = self.ledger.decision(move["decision_id"]) or {}
            done.append(self.finish_move(move, rec))
        return done


# ExifTool's names for containers; a file it cannot identify may be one it does not know
_ARCHIVE_TYPES = frozenset({"ZIP", "TAR", "GZIP", "7Z", "RAR", "BZ2", "XZ", "ZSTD"})


def _maybe_archive(meta: Metadata) -> bool:
    return meta.file_type in _ARCHIVE_TYPES or (bool(meta.error) and not meta.file_type)


def _xmp_sidecars(path: str) -> list[str]:
    return [s for s in sidecars_of(path) if s.lower().endswith(".xmp")]


def _fingerprint_all(assets: list[Asset]) -> list[Asset]:
    return [a.with_fingerprint() for a in assets]


def _written_by_provgate(meta: Metadata) -> bool:
    """provgate's own verdict sidecar is output, never evidence: a stale one must not outlive
    the file it was written for."""
    return any("XMP-provgate:" in key for key in meta.tags)


def _chunks(items: Iterable[Asset], size: int) -> Iterator[list[Asset]]:
    batch: list[Asset] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def text_path(path: str) -> str:
    """A path as text SQLite and JSON can hold: undecodable bytes become ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _outcome(rec: dict[str, Any], mode: str) -> str:
    if rec["action"] != "block":
        return {"allow": "allowed", "flag": "recorded and socialized",
                "escalate": "held for written approval"}[rec["action"]]
    if mode == "audit":
        return "would quarantine (audit mode)"
    if mode == "warn":
        return "left in place (warn mode)"
    return "left in place" if not rec.get("fingerprint") else "quarantine pending"


def _decision_key(rec: dict[str, Any]) -> str:
    keys = ("fingerprint", "kind", "c2pa", "zone", "rule", "action", "approval_id", "mode",
            "policy_digest", "error")
    # plain str/int/None values: their repr is canonical, and cheaper than JSON per file
    return hashlib.sha256(repr(tuple(rec[k] for k in keys)).encode()).hexdigest()


def _unique(signals: list[Signal]) -> list[Signal]:
    return list(dict.fromkeys(signals))


def _verdict_json(v: Verdict) -> str:
    return json.dumps({"kind": v.kind, "c2pa": v.c2pa, "evidence": [s.to_dict() for s in v.evidence],
                       "error": v.error, "warnings": list(v.warnings),
                       "credentials": v.credentials}, default=str)


def _verdict_from_json(text: str) -> Verdict:
    d = json.loads(text)
    return Verdict(d["kind"], d["c2pa"], tuple(Signal(**s) for s in d["evidence"]), d["error"],
                   tuple(d["warnings"]), d["credentials"])


def gate_exit_code(records: list[dict[str, Any]]) -> int:
    """0 when every file may go (allowed or flagged), 1 when any is held or blocked."""
    return 1 if any(r["action"] in ("escalate", "block") for r in records) else 0


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_action: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for r in records:
        by_action[r["action"]] = by_action.get(r["action"], 0) + 1
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    approved = sum(1 for r in records if r.get("approval"))
    return {"files": len(records), "actions": by_action, "kinds": by_kind, "approved": approved}
