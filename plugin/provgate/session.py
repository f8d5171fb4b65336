"""Session: one run of the gate. It owns the resources (catalogue, ExifTool pool, credential
checker, detector plugins, ledger, notifiers) and streams batches of files through the stages
(``stages.py``). ``scan``, ``check``, ``watch``, the timeline gate and the pyblish validator
all go through it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provgate import __version__, actions, credentials, data, ledger, plugins, safefs, stages
from provgate.assets import Asset, discover
from provgate.credentials import CredentialChecker
from provgate.errors import ConfigError
from provgate.policy import Policy
from provgate.probe import ExifToolPool, Integrity, Metadata, find_exiftool
from provgate.record import Brief, Record, Run, text_path
from provgate.signals import Catalogue, Signal
from provgate.stages import Judged
from provgate.vocabulary import MODES

if TYPE_CHECKING:  # imported by the delivery that carries a register, not by every run
    from provgate.register import Register as GenAIRegister

# bumped when judging changes in code (not in the catalogue): cached verdicts are read again
JUDGE_VERSION = 3


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
    # the vendor's GenAI register for this delivery, and the delivery root it speaks of
    register: GenAIRegister | None = None
    register_root: str | None = None
    # the daemon's: each watched root's register (the root is the delivery root it speaks of)
    registers: dict[str, GenAIRegister] = field(default_factory=dict)
    # the daemon's: why a watched root's register does not validate (its files are held)
    register_errors: dict[str, str] = field(default_factory=dict)
    # the daemon's: the delivery each watched root is ([delivery] watch), so that approvals
    # scoped to a delivery clear its files there as in that delivery's check
    deliveries: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode and self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.zone is not None and not self.zone.strip():
            raise ConfigError("--zone is empty (an unset variable?): name a zone, or leave "
                              "the option out")
        if self.zone and self.zone not in self.policy.zones and self.zone != self.policy.default_zone:
            raise ConfigError(f"unknown zone {self.zone!r}: the policy defines "
                              f"{', '.join(self.policy.zones) or 'no zones'}")


class Session:
    """Opened once per run; closes what it opened."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.policy = opts.policy
        # scoped copies made once (a Policy compiles its globs), longest root first
        self._scoped = sorted(((root.rstrip(os.sep) + os.sep, self.policy.scoped(name))
                               for root, name in opts.deliveries.items()),
                              key=lambda rs: -len(rs[0]))
        # the watched roots' registers, longest root first (a root inside another wins)
        self._registers = sorted(((root.rstrip(os.sep) + os.sep, root, reg)
                                  for root, reg in opts.registers.items()),
                                 key=lambda r: -len(r[0]))
        self.mode = opts.mode or self.policy.mode
        self.catalogue = Catalogue.load(opts.catalogue)
        self.exiftool = find_exiftool(opts.exiftool)
        self._pool: ExifToolPool | None = None
        self._pool_lock = threading.Lock()
        self._tools: dict[str, Any] | None = None
        self._starting: threading.Thread | None = None
        # a new ledger's cache knows no file, and --rescan asks it nothing: every file will
        # be read, so ExifTool starts now, beside the rest of the opening (else on the first
        # file to read: a rescan of unchanged files never starts it)
        if opts.rescan or not self.policy.config.ledger_path(opts.ledger).exists():
            self._starting = threading.Thread(target=self._prestart, daemon=True,
                                              name="provgate-exiftool-start")
            self._starting.start()
        try:
            self._open(opts)
        except BaseException:
            self.close()
            raise

    def _open(self, opts: Options) -> None:
        trust = self.policy.config.trust_bundle()
        self.checker = CredentialChecker(self.catalogue, trust)
        self.plugins = plugins.manager()
        plugins.check_settings(self.policy)
        self.ledger = ledger.for_policy(self.policy, opts.ledger, scratch=not opts.record)
        self.quarantine_dir = self.policy.config.quarantine_path(opts.quarantine)
        self.notifier = plugins.Notifier(self.policy.config.notifiers, self.plugins)
        self.user = actions.current_user()
        self.run_info = Run(self.mode, self.policy.digest, trust.digest, opts.actor, self.user)
        installed = credentials.installed()
        self._c2pa_version = f"c2pa-python {installed}" if installed else "not installed"
        # what a cached verdict depends on besides the file: judging code, catalogue, trust,
        # c2pa-python, and the detector plugins installed and their settings
        detectors = sorted(name for name, _ in self.plugins.list_name_plugin())
        self.cache_key = hashlib.sha256(
            f"{JUDGE_VERSION}|{self.catalogue.digest}|{trust.digest}|{installed}|{detectors}|"
            f"{data.digest(self.policy.config.detectors)}".encode()).hexdigest()[:16]
        self.hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="provgate-hash")
        # quarantine names given out in this session, and those failed moves keep
        self.planned: set[Path] = set()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes what was opened (also of a session whose opening failed half-way)."""
        if self._starting is not None:
            self._starting.join()
        if self._pool:
            self._pool.close()
        if hasattr(self, "hasher"):
            self.hasher.shutdown(wait=True)
        if hasattr(self, "ledger"):
            self.ledger.close()

    def _prestart(self) -> None:
        # whatever fails here fails again, and is reported, when the first file is read
        with contextlib.suppress(Exception):
            _ = self.pool

    @property
    def pool(self) -> ExifToolPool:
        """Started on first need: a rescan of unchanged files never starts ExifTool."""
        with self._pool_lock:
            if self._pool is None:
                # all tags: ExifTool 12.57 filters named tags slowly (bench_scan.py, B2)
                self._pool = ExifToolPool(None, self.opts.processes, self.opts.timeout,
                                          self.opts.batch_size, self.exiftool,
                                          integrity=Integrity.from_doc(self.catalogue.doc))
                self._tools = None
            return self._pool

    def tools(self) -> dict[str, Any]:
        """The versions that judged a record (one dict shared until ExifTool starts)."""
        with self._pool_lock:  # not while the pool starts (it resets the dict once started)
            if self._tools is None:
                self._tools = {"provgate": __version__,
                               "exiftool": self._pool.version if self._pool else None,
                               "catalogue": self.catalogue.version, "c2pa": self._c2pa_version}
            return self._tools

    def detect(self, path: str, meta: Metadata) -> tuple[list[Signal], list[str]]:
        """Signals from detector plugins (a studio's own rules, pixel evidence)."""
        return plugins.detect(self.plugins, path, meta, self.policy)

    # -- running ---------------------------------------------------------------------------

    def run(self, paths: Iterable[str], progress: Callable[[int], None] | None = None,
            root: str | None = None, seen: set[str] | None = None) -> Iterator[Record]:
        """Judge every file under ``paths``; yields one record per file, in walk order.
        ``seen`` receives every file the walk listed (a check compares it with the tree
        afterwards)."""
        paths = list(paths)
        if self.mode == "enforce":
            self.check_quarantine([*paths, *([root] if root else [])])
        walk = discover(paths, [*self.policy.include, *self.opts.include],
                        [*self.policy.exclude, *self.opts.exclude], self.policy.skip_hidden,
                        root, seen=seen)
        yield from self.pipeline(_chunks(walk, self.opts.batch_size), progress)

    def check_quarantine(self, gated: list[str]) -> None:
        """Refuse, before anything runs, a quarantine inside what is gated or watched: what
        it held would stay in the delivery. (A quarantine another user could reach into is
        refused move by move: the decisions are still recorded, the files left in place.)"""
        safefs.quarantine_outside(self.quarantine_dir, [*self.policy.config.roots, *gated])

    def policy_for(self, path: str) -> Policy:
        """The policy that decides the file at ``path``: the run's, scoped to the delivery of
        the watched root that holds it when the daemon knows one."""
        for root, scoped in self._scoped:
            if path.startswith(root):
                return scoped
        return self.policy

    def register_problem(self, path: str) -> str | None:
        """Why the register that should speak of the file at ``path`` cannot (the daemon's
        root whose register does not validate), or None."""
        for root, why in self.opts.register_errors.items():
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return why
        return None

    def register_for(self, path: str) -> tuple[GenAIRegister, str | None] | None:
        """The GenAI register that speaks of the file at ``path``, and its delivery root: the
        one given for this run, else the register of the watched root that holds it."""
        if self.opts.register is not None:
            return self.opts.register, self.opts.register_root
        for prefix, root, reg in self._registers:
            if path.startswith(prefix):
                return reg, root
        return None

    @functools.cached_property
    def _register_files(self) -> set[str]:
        regs = [self.opts.register, *self.opts.registers.values()]
        return {os.path.abspath(r.source) for r in regs if r is not None}

    def admit(self, assets: list[Asset]) -> list[Asset]:
        """Files the walk marked as left out are dropped, except in a zone that holds what it
        cannot judge (final): there they become records with the reason, so a hidden file or
        a transfer partial in a deliverable holds the delivery instead of slipping by."""
        out = []
        for a in assets:
            if a.path in self._register_files:
                continue  # the declaration is evidence of the delivery, not one of its files
            if a.skipped is None:
                out.append(a)
                continue
            zone = self.policy.zone_of(a, self.opts.zone)
            if self.policy.holds_unjudged(zone):
                out.append(replace(a, error=f"not judged: {a.skipped}; in zone {zone} every "
                                            "file of a delivery must be judged"))
        return out

    def pipeline(self, batches: Iterable[list[Asset]],
                 progress: Callable[[int], None] | None = None) -> Iterator[Record]:
        """The stages over a stream of batches, overlapped: reader threads keep every ExifTool
        process busy (hashing beside them), one thread judges what they read, and this thread
        decides, records and acts. A batch leaves as soon as it is done; an empty batch is a
        tick that only lets finished ones out (the daemon sends one while files settle). A
        bounded window keeps memory flat."""
        workers = self.opts.processes or os.cpu_count() or 1
        window: deque[tuple[list[Asset], Future[Any], dict[str, Any]]] = deque()
        # one reader more than processes: while one parses what its process wrote, that
        # process reads the next batch
        with ThreadPoolExecutor(workers + 1, thread_name_prefix="provgate-read") as readers, \
                ThreadPoolExecutor(1, thread_name_prefix="provgate-judge") as judges:
            for batch in batches:
                batch = self.admit(batch)
                if batch:
                    cached = self._cached(batch)
                    ready, todo, confirm = stages.known(self, batch,
                                                        {} if self.opts.rescan else cached)
                    reading = readers.submit(stages.read, self, todo, confirm) if todo else None
                    window.append((batch, judges.submit(self._judge, ready, reading), cached))
                while window and (len(window) > 2 * workers or window[0][1].done()):
                    yield from self._conclude(*window.popleft(), progress)
            while window:
                yield from self._conclude(*window.popleft(), progress)

    def process(self, assets: list[Asset]) -> list[Record]:
        """One batch, without the overlap of ``run``."""
        assets = self.admit(assets)
        cached = self._cached(assets)
        ready, todo, confirm = stages.known(self, assets, {} if self.opts.rescan else cached)
        reading: Future[Any] | None = None
        if todo:
            reading = Future()
            reading.set_result(stages.read(self, todo, confirm))
        return self._conclude(assets, _done(self._judge(ready, reading)), cached, None)

    def _cached(self, assets: list[Asset]) -> dict[str, dict[str, Any]]:
        return self.ledger.cached_files([text_path(a.path) for a in assets if not a.error])

    def _judge(self, ready: dict[str, Judged], reading: Future[Any] | None
               ) -> dict[str, Judged]:
        out = dict(ready)
        if reading is not None:
            readings, same = reading.result()
            out.update(same)
            for r in readings:
                out[r.asset.path] = Judged(r.asset, stages.judge(self, r))
        return out

    def _conclude(self, batch: list[Asset], judged: Future[Any], cached: dict[str, Any],
                  progress: Callable[[int], None] | None) -> list[Record]:
        verdicts = judged.result()
        approvals = self.ledger.approvals(include_inactive=False)
        records = [stages.decide(self, verdicts[a.path], approvals) for a in batch]
        planned = stages.record(self, records, cached)
        if self.opts.record:
            stages.act(self, records, planned)
        else:
            for rec in records:
                rec.outcome = stages._outcome(rec, self.mode)
        if progress:
            progress(len(batch))
        return records

    def recover(self) -> list[str]:
        """Finish moves a crash interrupted (the decision was committed, the move was not),
        and try again the moves that failed (a full or unusable quarantine). Only moves whose
        owner is gone are taken (``Ledger.take_moves``): a move planned by a process that
        still runs (a daemon, another CLI, however busy or paused) is in flight, its own; one
        of another host is never taken; while a watch daemon lives on this ledger, a CLI run
        leaves the daemon's moves to it."""
        done = [stages.finish_move(self, move, self.ledger.decision(move["decision_id"]) or {})
                for move in self.ledger.take_moves("pending", self._daemon_elsewhere())]
        return done + self.retry_failed()

    def retry_failed(self) -> list[str]:
        """Failed moves whose file is still the one decided, and still blocked, are tried
        again, when their owner is this process or gone (as in ``recover``); the names the
        rest keep are reserved, so no new move is planned onto them."""
        failed = self.ledger.take_moves("failed", self._daemon_elsewhere())
        done = []
        for r in actions.retry_failed(failed, self._still_blocked, roots=self.policy.config.roots):
            self.ledger.update_move(r.move_id, state=r.state, error=r.error)
            done.append(r.outcome)
        for move in self.ledger.moves("failed"):
            self.planned.add(Path(move["quarantined_path"]))
            self.planned.update(Path(e["quarantined_path"])
                                for e in actions.move_sidecars(move))
        return done

    def _daemon_elsewhere(self) -> bool:
        """A watch daemon lives on this ledger (its lock names a live pid), and this run is
        not it."""
        return self.opts.actor != "daemon" and \
            safefs.lock_holder(self.ledger.path) not in (None, os.getpid())

    def _still_blocked(self, move: dict[str, Any]) -> dict[str, Any] | None:
        """The decision a failed move carries out, unless a newer decision about the file (an
        approval, a changed file) has replaced it."""
        row = self.ledger.cached_files([move["original_path"]]).get(move["original_path"])
        if row and row["decision_id"] != move["decision_id"]:
            return None
        return self.ledger.decision(move["decision_id"])


def _done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result(value)
    return f


def _chunks(items: Iterable[Asset], size: int) -> Iterator[list[Asset]]:
    batch: list[Asset] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def gate_exit_code(records: Iterable[Record | Brief]) -> int:
    """0 when every file may go (allowed or flagged), 1 when any is held or blocked."""
    return 1 if any(r.held for r in records) else 0


def summarize(records: Iterable[Record | Brief]) -> dict[str, Any]:
    by_action: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    approved = files = 0
    for r in records:
        files += 1
        by_action[r.action] = by_action.get(r.action, 0) + 1
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
        approved += bool(r.approval)
    return {"files": files, "actions": by_action, "kinds": by_kind, "approved": approved}
