"""Watch: the delivery-folder daemon. It consumes filesystem events, waits until each file is
complete, and hands settled files to the same pipeline as ``scan``. It never decides.

- native events (inotify) on local filesystems, polling on network mounts (NFS, SMB, FUSE...),
  chosen per root from the mount table (FIELD-NOTES: inotify misses remote writers);
- a file is read only when its size and mtime have not changed for the settle window;
- catch-up at start and after an event-queue overflow: the tree is reconciled against the
  ledger's file cache, so nothing new is missed and nothing unchanged is read twice;
- one instance per ledger (a lock); SIGTERM/SIGINT finish the batch in hand; SIGHUP reloads
  the policy (an invalid one is refused and the old one kept); a status file is the heartbeat.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileAttribEvent,
                             FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from provgate import actions
from provgate.assets import (SIDECAR_SUFFIXES, Asset, Filter, is_real_sidecar, media_of,
                             relative, sidecars_of, stat_asset)
from provgate.errors import ConfigError, LedgerError, ProvgateError
from provgate.ledger import check_folder, now_iso
from provgate.record import Record, text_path
from provgate.session import Options, Session
from provgate.policy import Policy

log = logging.getLogger("provgate")
# the events provgate acts on; opens, reads and folder-modified events (one per file written
# in it) are not even delivered: a burst of 1,000 files made ~10,000 events without the filter
EVENTS = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
          FileDeletedEvent, FileAttribEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent)
OPEN_CAP_SECONDS = 600  # an open file unchanged this long is judged anyway
MAX_FAILURES = 8  # the same loop duty failing this often in a row stops the daemon
STREAM_SECONDS = 5.0  # longest one stream of settled files runs before the loop's other duties
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs",
              "lustre", "gpfs", "beegfs", "sshfs", "davfs")


def filesystem_type(path: str, mounts: str = "/proc/mounts") -> str:
    """The filesystem type of the mount holding ``path`` (longest mount point wins)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def inotify_check(roots: list[str], limit: int | None = None) -> tuple[bool, str]:
    """Whether inotify can watch every folder under the native-observed roots: one watch per
    folder, and the kernel's ``max_user_watches`` is shared by all of the user's programs."""
    if limit is None:
        try:
            limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
        except (OSError, ValueError):
            return True, "inotify: not available here (polling observers are used)"
    native = [r for r in roots if os.path.isdir(r) and not wants_polling(r)]
    folders = sum(1 for r in native for _ in os.walk(r))  # one watch per folder
    if folders * 2 > limit:  # room for the user's other programs, and for growth
        return False, (f"inotify: max_user_watches = {limit}, too low for {folders} folders "
                       f"under {', '.join(native)}: raise it, e.g. sysctl "
                       f"fs.inotify.max_user_watches={max(524288, folders * 4)} (and in "
                       "/etc/sysctl.d/), or watch with --observer polling")
    return True, (f"inotify: max_user_watches = {limit}, enough for {folders} folders"
                  + (f" under {', '.join(native)}" if native else ""))


def wants_polling(path: str) -> bool:
    fs = filesystem_type(path)
    return fs in NETWORK_FS or fs.startswith("fuse")


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


@dataclass
class _Pending:
    """A path heard about, and what it looked like when last checked."""

    root: str
    heard: float
    size: int = -1
    mtime_ns: int = -1


@dataclass
class WatchStats:
    started: float = field(default_factory=time.time)
    decided: int = 0
    batches: int = 0
    rescans: int = 0
    last_batch: float | None = None


class _Events(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: str) -> None:
        self.watcher, self.root = watcher, root

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if kind in ("deleted", "moved"):  # a departure, decided later on the main thread
            self.watcher.departed(src, dest if kind == "moved" else "", self.root,
                                  event.is_directory)
        path = dest or src
        if event.is_directory:
            if kind in ("created", "moved"):
                self.watcher.request_rescan(path, self.root)  # a tree moved in with one mv
            return
        if kind != "deleted":
            # a write under inotify: the writer has the file open until its close event. A
            # polling observer sees no closes; "created" is also what a file moved in from
            # outside looks like, and a chmod or utime says nothing about the writer
            writing: bool | None = None
            if kind == "modified" and not self.watcher.polled(self.root):
                writing = True
            elif kind in ("closed", "moved"):
                writing = False
            self.watcher.heard(path, self.root, writing)


class _OverflowLog(logging.Handler):
    """watchdog only logs a queue overflow: hearing that line schedules a full rescan."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(logging.WARNING)
        self.watcher = watcher

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.watcher.request_rescan()


class Watcher:
    """Watch ``roots`` and gate every file that settles in them."""

    def __init__(self, opts: Options, roots: list[str], settle: float = 3.0,
                 observer: str = "auto", poll_interval: float = 5.0,
                 policy_path: str | None = None, status_interval: float = 5.0) -> None:
        if not roots:
            raise ConfigError("nothing to watch: give folders, or set `roots` in the policy")
        for r in roots:
            if not os.path.isdir(r):
                raise ConfigError(f"cannot watch {r}: not a folder")
        self.opts = replace(opts, actor="daemon")
        self.roots = [os.path.abspath(r) for r in roots]
        self.settle = settle
        self.observer_mode = observer
        self.poll_interval = poll_interval
        self.policy_path = policy_path
        self.status_interval = status_interval
        self.stats = WatchStats()
        self._pending: dict[str, _Pending] = {}
        self._rescan: set[tuple[str, str]] = {(r, r) for r in self.roots}  # catch-up at start
        self._departures: list[tuple[str, str, str, bool]] = []
        self._open: dict[str, _Pending] = {}  # files a writer still has open (inotify)
        self._polled: set[str] = set()  # roots under a polling observer
        self._denied: dict[str, str] = {}  # folders provgate may not read -> their root
        self._failures: dict[str, int] = {}  # loop duty -> failures in a row
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._observers: list[Any] = []
        self._by_root: dict[str, Any] = {}
        self._down: set[str] = set()
        self._lockfile: Any = None
        pol = opts.policy
        self._filter = Filter([*pol.include, *opts.include], [*pol.exclude, *opts.exclude],
                              pol.skip_hidden)
        # a quarantine inside a watched root must not feed its own files back in
        self._quarantine = str(opts.policy.quarantine_path(opts.quarantine)) + os.sep

    # -- events ----------------------------------------------------------------------------

    def heard(self, path: str, root: str, writing: bool | None = False) -> None:
        """An event about a file. One still open for writing waits in ``_open`` until its
        close event (or OPEN_CAP_SECONDS without one); the settle window starts after that."""
        if self._ignored(path, root):
            return
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        entry = _Pending(root, time.monotonic(), size, mtime)
        with self._lock:
            self._pending.pop(path, None)  # last heard goes last: see _take_settled
            if writing is None:
                writing = path in self._open
            if writing:
                self._open[path] = entry
            else:
                self._open.pop(path, None)
                self._pending[path] = entry

    def polled(self, root: str) -> bool:
        return root in self._polled

    def _release_stuck_writers(self) -> None:
        """A file left open without a write for OPEN_CAP_SECONDS is judged as it is: a writer
        that hangs must not keep a file out of the gate for ever."""
        now = time.monotonic()
        with self._lock:
            stuck = [p for p, e in self._open.items() if now - e.heard >= OPEN_CAP_SECONDS]
            for path in stuck:
                self._pending[path] = self._open.pop(path)
        for path in stuck:
            log.warning("%s is still open for writing after %d s without a change: judging it "
                        "as it is", path, OPEN_CAP_SECONDS)

    def departed(self, src: str, dest: str, root: str, is_dir: bool) -> None:
        """A file or folder deleted, or moved (``dest`` inside a watched tree or not)."""
        with self._lock:
            if not is_dir:
                self._pending.pop(src, None)  # deleted while queued: nothing left to gate
                self._open.pop(src, None)
            self._departures.append((src, dest, root, is_dir))
        if not is_dir and not _sidecar_name(src):
            # a media file gone (deleted, renamed, moved away) leaves its real sidecars
            # behind as orphans: they are gated as such (held in a final zone), or follow it
            # into quarantine if provgate's own move took it (see _instead_of)
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
        """provgate's own quarantine and paths outside the root. Hidden files and partials
        are not ignored here: the walk's filter marks them and the gate decides (held in a
        final zone, left out elsewhere), as for a scan."""
        if path.startswith(self._quarantine):
            return True
        return os.path.relpath(path, root).startswith("..")

    # -- life ------------------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        """Run until stopped; the gate (and its ExifTool processes) lives as long as the run."""
        self._take_lock()
        overflow = _OverflowLog(self)
        logging.getLogger("watchdog").addHandler(overflow)
        gate: Session | None = None
        try:
            gate = Session(self.opts)
            for moved in gate.recover():
                log.info("finished an interrupted move: %s", moved)
            self._start_observers()
            log.info("watching %s (settle %.1f s)", ", ".join(self.roots), self.settle)
            sd_notify(f"READY=1\nSTATUS=watching {len(self.roots)} root(s)")
            next_status = 0.0
            while not self._stop.is_set():
                gate = self._maybe_reload(gate)
                self._check_roots()
                for duty in (self._record_departures, self._rescan_requested,
                             self._settled_batch):
                    self._do(duty, gate)
                if time.monotonic() >= next_status:
                    self._retry_denied()
                    self._release_stuck_writers()
                    self._write_status()
                    sd_notify(f"WATCHDOG=1\nSTATUS={self.stats.decided} decided, "
                              f"{len(self._pending) + len(self._open)} pending")
                    next_status = time.monotonic() + self.status_interval
                self._stop.wait(0.1)
        finally:
            sd_notify("STOPPING=1")
            if gate is not None:
                gate.close()
            logging.getLogger("watchdog").removeHandler(overflow)
            for obs in self._observers:
                obs.stop()
            for obs in self._observers:
                obs.join(timeout=5)
            self._write_status(stopped=True)
            self._release_lock()
            log.info("stopped after %d decisions", self.stats.decided)

    def _do(self, duty: Any, gate: Session) -> None:
        """One duty of the loop. A failure (a full disk, a locked ledger) is logged and the
        roots are caught up once it clears, so the files in hand are not dropped; the same
        duty failing MAX_FAILURES times in a row stops the daemon (the service restarts it)."""
        name = duty.__name__
        try:
            duty(gate)
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

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def _start_observers(self) -> None:
        for root in self.roots:
            self._observe(root)

    def _observe(self, root: str) -> None:
        polling = self.observer_mode == "polling" or (
            self.observer_mode == "auto" and wants_polling(root))
        obs = PollingObserver(timeout=self.poll_interval) if polling else Observer()
        obs.schedule(_Events(self, root), root, recursive=True, event_filter=list(EVENTS))
        obs.start()
        self._observers.append(obs)
        self._by_root[root] = obs
        if polling:
            self._polled.add(root)
        else:
            self._polled.discard(root)
        log.info("%s: %s observer", root, "polling" if polling else "native")

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
                self._renew_observer(root)
                self.request_rescan(root, root)
                log.info("%s is back: catching up", root)

    def _renew_observer(self, root: str) -> None:
        old = self._by_root.pop(root, None)
        if old is not None:
            old.stop()
            self._observers.remove(old)
        self._observe(root)

    def _maybe_reload(self, gate: Session) -> Session:
        if not self._reload.is_set():
            return gate
        self._reload.clear()
        try:
            policy = Policy.load(self.policy_path)
            new = Session(replace(self.opts, policy=policy))
        except ProvgateError as exc:
            log.error("policy reload refused, keeping the old one: %s", exc)
            return gate
        gate.close()
        self.opts = new.opts
        log.info("policy reloaded: %s (digest %s)", policy.source, policy.digest[:16])
        return new

    # -- work ------------------------------------------------------------------------------

    def _rescan_requested(self, gate: Session) -> None:
        """Catch up on a folder: gate what is new or changed, and record as removed what the
        cache knows there but is gone (deleted while provgate was down or deaf)."""
        with self._lock:
            todo, self._rescan = self._rescan, set()
        for folder, root in sorted(todo):
            self.stats.rescans += 1
            seen: set[str] = set()
            fresh: dict[str | None, str] = {}  # fingerprint -> a path read anew in this pass
            for rec in gate.run([folder], root=root):
                seen.add(rec.path)
                if not rec.cached and rec.asset.fingerprint:
                    fresh.setdefault(rec.asset.fingerprint, rec.path)
                self._count(rec)
            if os.path.isdir(root):  # an unmounted share is not a deletion
                gone = [r for r in gate.ledger.cached_under(folder)
                        if r["path"] not in seen and not os.path.lexists(r["path"])]
                self._write_departures(gate, [
                    ("moved", r, fresh[r["fingerprint"]]) if r["fingerprint"] in fresh
                    else ("removed", r, "") for r in gone])

    def _record_departures(self, gate: Session) -> None:
        with self._lock:
            todo, self._departures = self._departures, []
        events = []
        for src, dest, root, is_dir in todo:
            if not os.path.isdir(root):
                continue  # the root itself went away: caught up when it is back
            inside = bool(dest) and any(dest == r or dest.startswith(r + os.sep)
                                        for r in self.roots) and not self._ignored(dest, root)
            # the cache holds paths as text (undecodable bytes escaped): look up in that form,
            # but ask the filesystem with the real name
            rows = (gate.ledger.cached_under(text_path(src)) if is_dir
                    else list(gate.ledger.cached_files([text_path(src)]).values()))
            for row in rows:
                if os.path.lexists(src if not is_dir else row["path"]):
                    continue  # replaced in place (an editor's save): the new file is heard
                if inside:
                    dest_text = text_path(dest)
                    events.append(("moved", row, dest_text + row["path"][len(text_path(src)):]))
                else:
                    events.append(("removed", row, ""))
        self._write_departures(gate, events)

    def _write_departures(self, gate: Session, events: list[tuple[str, dict[str, Any], str]]
                          ) -> None:
        """Chain the departures; provgate's own quarantine moves are already on record."""
        rows = [{"time": now_iso(), "event": kind, "path": row["path"], "dest": dest or None,
                 "fingerprint": row["fingerprint"], "decision_id": row["decision_id"],
                 "actor": "daemon", "user": gate.user}
                for kind, row, dest in events
                if not gate.ledger.moved_by_provgate(row["path"], row["fingerprint"])]
        try:
            gate.ledger.record_departures(rows)
        except LedgerError as exc:
            log.error("departures not recorded: %s", exc)
            return
        for r in rows:
            log.info("%s %s%s", r["event"].upper(), r["path"],
                     f" -> {r['dest']}" if r["dest"] else "")

    def _settled_batch(self, gate: Session) -> None:
        """Gate settled files as one stream through the scan pipeline: files that settle while
        earlier ones are read join the same stream, so ExifTool never waits for a group to
        finish. A stream ends when nothing is pending, or after STREAM_SECONDS so that
        departures, rescans and the heartbeat get their turn."""
        if not self._anything_settled():
            return
        for rec in gate.pipeline(self._settled_stream(gate.opts.batch_size, gate)):
            self._count(rec)
            if self._stop.is_set():
                return  # stop soon: what is left is caught up at the next start
        self.stats.batches += 1
        self.stats.last_batch = time.time()

    def _settled_stream(self, size: int, gate: Session | None = None) -> Iterator[list[Asset]]:
        """Batches of settled files; an empty batch while files are still settling (a tick
        that lets finished batches out of the pipeline)."""
        ends = time.monotonic() + STREAM_SECONDS
        while not self._stop.is_set() and time.monotonic() < ends:
            ready = self._take_settled(size)
            if ready:
                batch: dict[str, Asset] = {}
                for path, root in ready:
                    for p in self._instead_of(path, gate):
                        batch.setdefault(p, self._asset(p, root))
                yield list(batch.values())
                continue
            with self._lock:
                if not self._pending:
                    return
            yield []
            self._stop.wait(0.05)

    def _instead_of(self, path: str, gate: Session | None) -> list[str]:
        """What to gate for a settled path: the path itself, except for a real sidecar, which
        is never judged on its own. It stands for its media file(s), judged again with it
        (their cached verdicts dropped: a sidecar changes nothing in the media file's size or
        times), unless a media file is still arriving (its own entry judges it, sidecar and
        all). A sidecar whose media file provgate quarantined follows it there in enforce
        mode; any other with no media file is an orphan, recorded as one (stat_asset)."""
        if not _sidecar_name(path) or not is_real_sidecar(path):
            return [path]  # media, or a file that only has a sidecar's name
        media = media_of(path)
        if not media:
            return [] if gate is not None and self._follow_quarantined(path, gate) else [path]
        with self._lock:
            due = [m for m in media if m not in self._pending and m not in self._open]
        if due and gate is not None:
            gate.ledger.forget_files([text_path(m) for m in due])
        for m in due:
            log.info("%s arrived or changed: judging %s again with it", path, m)
        return due

    def _follow_quarantined(self, path: str, gate: Session) -> bool:
        """A sidecar arriving after provgate quarantined its media file (enforce mode) is
        moved into the quarantine beside it and added to that move (ledger row and receipt),
        so a restore brings the pair back together. Its media file was blocked: the sidecar
        is part of that blocked asset, and left in the delivery it would hold the delivery
        as an orphan that nobody but provgate can pair again. In warn and audit modes
        nothing moves: it is recorded as an orphan."""
        if gate.mode != "enforce":
            return False
        folder, name = os.path.split(path)
        stem = os.path.splitext(name)[0]
        for move in gate.ledger.moves_from(text_path(folder)):
            orig = move["original_path"]
            base = os.path.basename(orig)
            if (base == stem or os.path.splitext(base)[0] == stem) and not \
                    os.path.lexists(orig) and os.path.exists(move["quarantined_path"]):
                break
        else:
            return False
        entry = actions.plan_sidecar(path, orig, Path(move["quarantined_path"]))
        if entry is None:
            return False
        before = actions.move_sidecars(move)
        # the intent is on record before the file moves; a crash in between leaves the
        # sidecar in place, an orphan the next catch-up holds, and a restore skips it
        gate.ledger.update_move(move["id"], sidecars=json.dumps([*before, entry]))
        problems = actions.place_sidecars([entry])
        if problems:
            gate.ledger.update_move(move["id"], sidecars=json.dumps(before) if before else None)
            log.error("%s", "; ".join(problems))
            return False
        try:
            actions.write_receipt({**move, "sidecars": [*before, entry]},
                                  gate.ledger.decision(move["decision_id"]) or {})
        except (OSError, ProvgateError) as exc:
            log.error("receipt of quarantine #%d not updated: %s", move["id"], exc)
        log.info("%s arrived after its media file was quarantined (#%d): moved beside it to %s",
                 path, move["id"], entry["quarantined_path"])
        return True

    def _asset(self, path: str, root: str) -> Asset:
        why = self._filter.reason(relative(path, root))
        return Asset(path, root, skipped=why) if why else stat_asset(path, root)

    def _anything_settled(self) -> bool:
        with self._lock:
            first = next(iter(self._pending.values()), None)
        return first is not None and time.monotonic() - first.heard >= self.settle

    def _take_settled(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` files unchanged for the settle window, oldest first.
        ``_pending`` is kept in the order files were last heard, so the scan stops at the
        first file still inside its window."""
        now = time.monotonic()
        ready: list[tuple[str, str]] = []
        with self._lock:
            changed: list[str] = []
            gone: list[str] = []
            # a media file waits while a sidecar of its own is still arriving or settling,
            # so that it is judged once, with it (the sidecar's settling releases it)
            arriving = {(os.path.dirname(q), os.path.splitext(os.path.basename(q))[0])
                        for q in (*self._pending, *self._open) if _sidecar_name(q)}
            for path, p in self._pending.items():
                if now - p.heard < self.settle or len(ready) >= limit:
                    break
                if arriving and not _sidecar_name(path):
                    folder, name = os.path.split(path)
                    if (folder, name) in arriving or \
                            (folder, os.path.splitext(name)[0]) in arriving:
                        continue
                try:
                    st = os.stat(path)
                except OSError:
                    gone.append(path)  # gone before it settled: nothing to gate
                    continue
                if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                    p.size, p.mtime_ns, p.heard = st.st_size, st.st_mtime_ns, now
                    changed.append(path)  # still changing: one more window
                    continue
                ready.append((path, p.root))
            for path in gone + [r[0] for r in ready]:
                del self._pending[path]
            for path in changed:  # to the back of the line
                self._pending[path] = self._pending.pop(path)
        return ready

    def _count(self, rec: Record) -> None:
        if not rec.cached:
            self.stats.decided += 1
        if (rec.verdict.error or "").startswith("folder not scanned: permission denied"):
            self._denied[rec.asset.path] = rec.asset.root

    def _retry_denied(self) -> None:
        """A folder provgate may not read has no watch: once its permissions are fixed, the
        root's observer is renewed (so its new files are heard) and the folder caught up."""
        for folder, root in list(self._denied.items()):
            if os.access(folder, os.R_OK | os.X_OK):
                del self._denied[folder]
                log.info("%s is readable now: watching and catching up", folder)
                self._renew_observer(root)
                self.request_rescan(folder, root)

    # -- lock and status -------------------------------------------------------------------

    def _lock_path(self) -> Path:
        return Path(str(self.opts.policy.ledger_path(self.opts.ledger)) + ".watch.lock")

    def status_path(self) -> Path:
        return Path(str(self.opts.policy.ledger_path(self.opts.ledger)) + ".status.json")

    def _take_lock(self) -> None:
        path = self._lock_path()
        check_folder(path).mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip()
            fh.close()
            raise LedgerError(f"another provgate watch (pid {other or '?'}) already uses this "
                              f"ledger; stop it first or give --ledger") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lockfile = fh

    def _release_lock(self) -> None:
        if self._lockfile:
            self._lockfile.close()
            self._lockfile = None

    def _write_status(self, stopped: bool = False) -> None:
        with self._lock:
            pending = len(self._pending) + len(self._open)
        doc = {"pid": os.getpid(), "time": time.time(), "state": "stopped" if stopped else
               "running", "roots": self.roots, "pending": pending, "decided": self.stats.decided,
               "batches": self.stats.batches, "rescans": self.stats.rescans,
               "started": self.stats.started, "last_batch": self.stats.last_batch,
               "policy_digest": self.opts.policy.digest}
        path = self.status_path()
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the status file %s: %s", path, exc)


def _sidecar_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in SIDECAR_SUFFIXES


def read_status(opts: Options) -> dict[str, Any] | None:
    path = Path(str(opts.policy.ledger_path(opts.ledger)) + ".status.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
