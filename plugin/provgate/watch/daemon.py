"""The daemon loop: one instance per ledger (a lock), a session that lives as long as the run,
and its duties in turn: departures, catch-up scans, settled files, the roots' delivery
records (when the policy asks for them), the heartbeat.

SIGTERM/SIGINT finish the batch in hand; SIGHUP reloads the policy (an invalid one is refused
and the old one kept); a status file and sd_notify are the heartbeat. A failing duty (a full
disk under the ledger, a locked ledger) is logged, backed off and followed by a catch-up.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provgate import deliveries, safefs, units
from provgate.assets import Asset, Filter, media_of, relative, sidecars_of, stat_asset
from provgate.errors import ConfigError, ProvgateError
from provgate.ledger import check_folder
from provgate.policy import Policy
from provgate.record import Record
from provgate.session import Options, Session
from provgate.watch import departures
from provgate.watch.observers import Observers
from provgate.watch.settle import SettleQueue, sidecar_name
from provgate.watch.sidecars import stands_for

if TYPE_CHECKING:
    from provgate.register import Register as GenAIRegister

log = logging.getLogger("provgate")
MAX_FAILURES = 8  # the same loop duty failing this often in a row stops the daemon
STREAM_SECONDS = 5.0  # longest one stream of settled files runs before the loop's other duties
RETRY_SECONDS = 300.0  # how often failed quarantine moves are tried again
LOOP_STALL_SECONDS = 900.0  # a loop this long without a turn is stuck: the watchdog beat stops


@dataclass
class WatchStats:
    started: float = field(default_factory=time.time)
    decided: int = 0
    batches: int = 0
    rescans: int = 0
    last_batch: float | None = None


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) how the service stands: READY=1, WATCHDOG=1, STOPPING=1,
    STATUS=... One datagram to $NOTIFY_SOCKET; nothing happens outside systemd."""
    import socket

    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), addr)
        return True
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
        return False


class Watcher:
    """Watch ``roots`` and gate every file that settles in them. It hears and hands files to
    the session; the session's stages decide."""

    def __init__(self, opts: Options, roots: list[str], settle: float = 3.0,
                 observer: str = "auto", poll_interval: float = 5.0,
                 policy_path: str | None = None, status_interval: float = 5.0) -> None:
        if not roots:
            raise ConfigError("nothing to watch: give folders, or set `roots` in the policy")
        for r in roots:
            if not os.path.isdir(r):
                raise ConfigError(f"cannot watch {r}: not a folder (missing or unmounted?)")
        self.opts = replace(opts, actor="daemon")
        self.roots = [os.path.abspath(r) for r in roots]
        self.policy_path = policy_path
        self.status_interval = status_interval
        self.stats = WatchStats()
        self.queue = SettleQueue(settle)
        self.observers = Observers(self, observer, poll_interval)
        self._rescan: set[tuple[str, str]] = {(r, r) for r in self.roots}  # catch-up at start
        self._departures: list[tuple[str, str, str, bool]] = []
        self._denied: dict[str, str] = {}  # folders provgate may not read -> their root
        self._failures: dict[str, int] = {}  # loop duty -> failures in a row
        self._down: set[str] = set()
        self._catching_up = False
        self._turned = time.monotonic()  # when the loop last turned (the heartbeat reads it)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._lockfile: Any = None
        self._filter = _filter(opts)
        self._names = _delivery_names(opts.policy, self.roots)
        self._hashes = DigestCache()
        self._changed: set[str] = set(self.roots)  # roots to record as deliveries again
        self._recorded: dict[str, float] = {}  # root -> when its delivery was last recorded

    @property
    def ready(self) -> bool:
        """Observers started and the catch-up at start done."""
        with self._lock:
            return self.observers.started and not self._rescan and not self._catching_up

    @property
    def roots_down(self) -> set[str]:
        """Roots that went away (an unmounted share), waited for."""
        return set(self._down)

    # -- what observers tell -----------------------------------------------------------------

    def heard(self, path: str, root: str, writing: bool | None = False) -> None:
        if not self._ignored(path, root):
            self.queue.heard(path, root, writing)

    def departed(self, src: str, dest: str, root: str, is_dir: bool) -> None:
        """A file or folder deleted, or moved (``dest`` inside a watched tree or not)."""
        if not is_dir:
            self.queue.drop(src)
        with self._lock:
            self._departures.append((src, dest, root, is_dir))
        if not is_dir and not sidecar_name(src):
            # a media file gone leaves its real sidecars behind as orphans: they are gated as
            # such (held in a final zone), or follow it into quarantine if provgate moved it
            for side in sidecars_of(src):
                if not media_of(side):
                    self.heard(side, root, False)

    def request_rescan(self, folder: str | None = None, root: str | None = None) -> None:
        with self._lock:
            if folder and root:
                self._rescan.add((folder, root))
            else:
                self._rescan.update((r, r) for r in self.roots)

    def _ignored(self, path: str, root: str) -> bool:
        """Paths outside the root. Nothing inside it is ignored: hidden files and partials
        are marked by the walk's filter and the session decides (held in a final zone); a
        quarantine inside a watched root is refused at start in enforce mode, and in the
        other modes whatever sits at its path is judged like any other file."""
        return os.path.relpath(path, root).startswith("..")

    def _inside(self, dest: str, root: str) -> bool:
        return any(dest == r or dest.startswith(r + os.sep) for r in self.roots) and \
            not self._ignored(dest, root)

    # -- life --------------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        self._stop.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def run(self) -> None:
        """Run until stopped; the session (and its ExifTool processes) lives as long as the
        run."""
        # the service's group and user first: the lock and status files are made with them
        safefs.configure(**self.opts.policy.config.service)
        self._take_lock()
        session: Session | None = None
        try:
            found, broken = _registers(self.roots)
            self.opts = replace(self.opts, registers=found, register_errors=broken,
                                deliveries=self._names)
            session = Session(self.opts)
            if session.mode == "enforce":
                session.check_quarantine(self.roots)
            for moved in session.recover():
                log.info("finished an interrupted move: %s", moved)
            self.observers.start(self.roots)
            log.info("watching %s (settle %.1f s)", ", ".join(self.roots), self.queue.settle)
            sd_notify(f"READY=1\nSTATUS=watching {len(self.roots)} root(s)")
            self._loop(session)
        finally:
            sd_notify("STOPPING=1")
            if session is not None:
                session.close()
            self.observers.stop()
            self._write_status(stopped=True)
            self._release_lock()
            log.info("stopped after %d decisions", self.stats.decided)

    def _loop(self, session: Session) -> None:
        next_status = 0.0
        next_retry = time.monotonic() + RETRY_SECONDS
        beat = threading.Thread(target=self._heartbeat, name="provgate-heartbeat", daemon=True)
        beat.start()
        while not self._stop.is_set():
            self._turned = time.monotonic()
            session = self._maybe_reload(session)
            self._check_roots()
            for duty in (self._record_departures, self._rescan_requested, self._settled_batch,
                         self._record_deliveries):
                self._do(duty, session)
            if time.monotonic() >= next_retry:
                self._do(self._retry_moves, session)
                next_retry = time.monotonic() + RETRY_SECONDS
            if time.monotonic() >= next_status:
                self._retry_denied()
                self.queue.release_stuck()
                next_status = time.monotonic() + self.status_interval
            self._stop.wait(0.1)
        try:  # what the last batches decided, not left for the next start to record
            self._record_deliveries(session, final=True)
        except Exception as exc:  # noqa: BLE001 - stopping anyway; the next start records it
            log.error("deliveries not recorded at stop: %s", exc)
        beat.join(timeout=self.status_interval + 5)

    def _heartbeat(self) -> None:
        """The status file and the systemd watchdog beat, from their own thread: a long
        judgement (a large archive, a slow share) must not make a working daemon look dead.
        A loop that has not turned for LOOP_STALL_SECONDS (longer than any read or judging
        deadline) stops the beat, so systemd restarts a daemon that is really stuck."""
        while True:
            self._write_status()
            if time.monotonic() - self._turned < LOOP_STALL_SECONDS:
                sd_notify(f"WATCHDOG=1\nSTATUS={self.stats.decided} decided, "
                          f"{len(self.queue)} pending")
            if self._stop.wait(self.status_interval):
                return

    def _do(self, duty: Callable[[Session], None], session: Session) -> None:
        """One duty of the loop. A failure (a full disk, a locked ledger) is logged and the
        roots are caught up once it clears, so the files in hand are not dropped; the same
        duty failing MAX_FAILURES times in a row stops the daemon (the service restarts it)."""
        name = duty.__name__
        try:
            duty(session)
        except Exception as exc:  # noqa: BLE001 - a deaf daemon is worse than a logged error
            count = self._failures.get(name, 0) + 1
            self._failures[name] = count
            if count >= MAX_FAILURES:
                raise
            log.error("%s failed (%d in a row; retrying, then catching up): %s",
                      name.strip("_").replace("_", " "), count, exc)
            self.request_rescan()
            self._stop.wait(min(30.0, 2.0 ** count))
        else:
            self._failures.pop(name, None)

    def _check_roots(self) -> None:
        """A root that vanished (an unmounted share) is waited for; when it is back it gets a
        new observer and a catch-up scan, since its old watches died with it."""
        for root in self.roots:
            present = os.path.isdir(root)
            if not present and root not in self._down:
                self._down.add(root)
                log.error("%s is gone (unmounted?): waiting for it to come back", root)
            elif present and root in self._down:
                self._down.discard(root)
                self.observers.renew(root)
                self.request_rescan(root, root)
                log.info("%s is back: catching up", root)

    def _maybe_reload(self, session: Session) -> Session:
        if not self._reload.is_set():
            return session
        self._reload.clear()
        try:
            policy = Policy.load(self.policy_path)
            names = _delivery_names(policy, self.roots)
            found, broken = _registers(self.roots)
            new = Session(replace(self.opts, policy=policy, registers=found,
                                  register_errors=broken, deliveries=names))
        except ProvgateError as exc:
            log.error("policy reload refused, keeping the old one: %s", exc)
            return session
        try:
            if new.mode == "enforce":
                new.check_quarantine(self.roots)
        except ProvgateError as exc:
            new.close()  # what it opened (its ledger, an ExifTool started for it) goes too
            log.error("policy reload refused, keeping the old one: %s", exc)
            return session
        session.close()
        self.opts = new.opts
        self._filter = _filter(new.opts)
        self._names = names
        self._changed.update(names)
        log.info("policy reloaded: %s (digest %s)", policy.source, policy.digest[:16])
        return new

    # -- duties ------------------------------------------------------------------------------

    def _retry_moves(self, session: Session) -> None:
        """Moves that failed (a full quarantine) are tried again once in a while, not at every
        beat: a retry may hash a large file."""
        for outcome in session.retry_failed():
            log.info("retried a failed quarantine move: %s", outcome)

    def _record_departures(self, session: Session) -> None:
        with self._lock:
            todo, self._departures = self._departures, []
        self._changed.update(root for _src, _dest, root, _is_dir in todo)
        found = departures.from_events(session.ledger, todo, self.roots, self._inside)
        departures.record(session.ledger, found, session.user)

    def _rescan_requested(self, session: Session) -> None:
        """Catch up on a folder: gate what is new or changed, and record as removed what the
        cache knows there but is gone (deleted while provgate was down or deaf)."""
        with self._lock:
            todo, self._rescan = self._rescan, set()
            self._catching_up = bool(todo)
        for folder, root in sorted(todo):
            self.stats.rescans += 1
            seen: set[str] = set()
            fresh: dict[str | None, str] = {}  # fingerprint -> a path read anew in this pass
            for rec in session.run([folder], root=root):
                seen.add(rec.path)
                if not rec.cached and rec.asset.fingerprint:
                    fresh.setdefault(rec.asset.fingerprint, rec.path)
                self._count(rec)
            if os.path.isdir(root):  # an unmounted share is not a deletion
                departures.record(session.ledger, departures.from_catch_up(
                    session.ledger, folder, seen, fresh), session.user)
            self._changed.add(root)
        self._catching_up = False

    def _settled_batch(self, session: Session) -> None:
        """Gate settled files as one stream through the session: files that settle while
        earlier ones are read join the same stream, so ExifTool never waits for a group to
        finish. A stream ends when nothing is pending, or after STREAM_SECONDS so that
        departures, rescans and the heartbeat get their turn."""
        if not self.queue.anything_settled():
            return
        for rec in session.pipeline(self._settled_stream(session)):
            self._turned = time.monotonic()  # a long stream is progress, not a stall
            self._count(rec)
            if self._stop.is_set():
                return  # stop soon: what is left is caught up at the next start
        self.stats.batches += 1
        self.stats.last_batch = time.time()

    def _register_arrived(self, ready: list[tuple[str, str]]) -> bool:
        """A GenAI register at a root that arrived or changed: the session is made again
        with it (a policy reload) and the root's files are decided again under it, the
        files ready now included (they are rescanned with the root)."""
        roots = {root for path, root in ready if is_register(path, root)}
        for root in roots:
            log.info("GenAI register of %s changed: deciding its files again", root)
            self.request_rescan(root, root)
        if roots:
            self._reload.set()
        return bool(roots)

    def _settled_stream(self, session: Session | None = None) -> Iterator[list[Asset]]:
        """Batches of settled files; an empty batch while files are still settling (a tick
        that lets finished batches out of the pipeline)."""
        size = self.opts.batch_size
        ends = time.monotonic() + STREAM_SECONDS
        while not self._stop.is_set() and time.monotonic() < ends:
            ready = self.queue.take(size)
            if self._register_arrived(ready):
                return  # decided again under the new declaration: see _register_arrived
            if ready:
                batch: dict[str, Asset] = {}
                for path, root in ready:
                    for p in stands_for(path, self.queue, session):
                        batch.setdefault(p, self._asset(p, root))
                yield list(batch.values())
                continue
            if not self.queue.waiting:
                return
            yield []
            self._stop.wait(0.05)

    def _record_deliveries(self, session: Session, final: bool = False) -> None:
        """Each watched root the policy names as a delivery, recorded once what it holds was
        decided: at most once per settle window per root (``final``: at stop, whenever),
        and only when a file of it was decided or left since (``deliveries.record_root``
        then records only a change)."""
        now = time.monotonic()
        for root in sorted(self._changed & set(self._names)):
            last = self._recorded.get(root)
            if not final and last is not None and now - last < self.queue.settle:
                continue  # recorded within this settle window: a later turn takes it
            self._changed.discard(root)
            policy = session.policy_for(os.path.join(root, ""))
            done = deliveries.record_root(
                session.ledger, self._names[root], root, policy, session.user,
                session.opts.registers.get(root),
                lambda briefs, root=root, policy=policy: units.whole_units(
                    root, briefs, policy, self._hashes.digests))
            if done is not None:
                self._recorded[root] = now
                ident, changed = done
                log.info("delivery %r (%s) recorded as #%d%s", self._names[root], root, ident,
                         f"; {changed.line()}" if changed else "")

    def _asset(self, path: str, root: str) -> Asset:
        why = self._filter.reason(relative(path, root))
        return Asset(path, root, skipped=why) if why else stat_asset(path, root)

    def _count(self, rec: Record) -> None:
        if not rec.cached:
            self.stats.decided += 1
        self._changed.add(rec.asset.root)
        if (rec.verdict.error or "").startswith("folder not scanned: permission denied"):
            self._denied[rec.asset.path] = rec.asset.root

    def _retry_denied(self) -> None:
        """A folder provgate may not read has no watch: once its permissions are fixed, the
        root's observer is renewed (so its new files are heard) and the folder caught up."""
        for folder, root in list(self._denied.items()):
            if os.access(folder, os.R_OK | os.X_OK):
                del self._denied[folder]
                log.info("%s is readable now: watching and catching up", folder)
                self.observers.renew(root)
                self.request_rescan(folder, root)

    # -- lock and status ---------------------------------------------------------------------

    def status_path(self) -> Path:
        return status_path(self.opts)

    def _take_lock(self) -> None:
        """One daemon per ledger, however its path is spelled: the lock keys on the ledger's
        real file (safefs.open_lock), never follows a planted link, and is private."""
        ledger = self.opts.policy.config.ledger_path(self.opts.ledger)
        check_folder(ledger)
        self._lockfile = safefs.open_lock(ledger, parents=True)

    def _release_lock(self) -> None:
        if self._lockfile:
            self._lockfile.release()
            self._lockfile = None

    def _write_status(self, stopped: bool = False) -> None:
        doc = {"pid": os.getpid(), "time": time.time(), "state": "stopped" if stopped else
               "running", "roots": self.roots, "pending": len(self.queue),
               "decided": self.stats.decided, "batches": self.stats.batches,
               "rescans": self.stats.rescans, "started": self.stats.started,
               "last_batch": self.stats.last_batch, "policy_digest": self.opts.policy.digest}
        path = self.status_path()
        try:
            safefs.write_private(path, json.dumps(doc, indent=2))
        except (OSError, ProvgateError) as exc:
            log.error("cannot write the status file %s: %s", path, exc)


def _filter(opts: Options) -> Filter:
    """The walk's filter, for the daemon's events: one rule for both (rebuilt on reload)."""
    pol = opts.policy
    return Filter([*pol.include, *opts.include], [*pol.exclude, *opts.exclude],
                  pol.skip_hidden)


def _delivery_names(policy: Policy, roots: list[str]) -> dict[str, str]:
    """The delivery each watched root is recorded as (none unless the policy asks); two
    roots under one name would each record over the other's view: refused."""
    names = {r: n for r in roots if (n := policy.watched_delivery(r)) is not None}
    seen: dict[str, str] = {}
    for root, name in names.items():
        if name in seen:
            raise ConfigError(f"{policy.source}: watched roots {seen[name]} and {root} would "
                              f"both be recorded as delivery {name!r}: name them apart in "
                              "[delivery] names")
        seen[name] = root
    return names


class DigestCache:
    """Digests of the files a delivery record checks as a whole (a package's PKL hashes),
    by what the file is now (size, mtime, ctime, inode): a record taken every settle window
    reads only the files that changed since the last."""

    LIMIT = 100_000  # entries; past it the cache starts again (a re-read, never a miss)

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int, int], dict[str, bytes]] = {}

    def digests(self, path: str, algorithms: tuple[str, ...]) -> dict[str, bytes]:
        from provgate import imf

        st = os.stat(path, follow_symlinks=False)
        key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        found = self._known.get(key, {})
        if not all(a in found for a in algorithms):
            found = {**found, **imf.hash_file(path, algorithms)}
            after = os.stat(path, follow_symlinks=False)
            if key == (path, after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino):
                if len(self._known) >= self.LIMIT:
                    self._known.clear()
                self._known[key] = found  # kept only when it did not change under the read
        return found


def _registers(roots: list[str]) -> tuple[dict[str, GenAIRegister], dict[str, str]]:
    """Each root's GenAI register (``GENAI-DISCLOSURE.csv``/``.json`` at the root), and why
    a root's register does not validate: as `check` stops on it, the daemon holds that
    root's files (``Session.register_for``) until the vendor fixes it."""
    from provgate import register

    found, broken = {}, {}
    for root in roots:
        try:
            reg = register.discover(root)
        except ProvgateError as exc:
            log.error("GenAI register of %s does not validate: its files are held until it "
                      "does: %s", root, exc)
            broken[root] = str(exc)
            continue
        if reg is not None:
            found[root] = reg
    return found, broken


def is_register(path: str, root: str) -> bool:
    """Whether ``path`` is a GenAI register at the top of ``root``."""
    from provgate.register import FILE_NAMES

    return os.path.dirname(path) == root.rstrip(os.sep) and \
        os.path.basename(path).casefold() in {n.casefold() for n in FILE_NAMES}


def status_path(opts: Options) -> Path:
    return Path(str(opts.policy.config.ledger_path(opts.ledger)) + ".status.json")


def read_status(opts: Options) -> dict[str, Any] | None:
    """The heartbeat, or None when no daemon wrote one (or it is not provgate's to trust)."""
    try:
        return json.loads(safefs.read_private(status_path(opts)))
    except (OSError, ValueError, ProvgateError):
        return None
