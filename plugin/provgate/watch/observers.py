"""Observers: which filesystem events reach the daemon, per watched root.

Native events (inotify) on local filesystems, polling on network mounts (NFS, SMB, FUSE...),
chosen per root from the mount table (FIELD-NOTES: inotify misses remote writers).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileAttribEvent,
                             FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("provgate")
# the events provgate acts on; opens, reads and folder-modified events (one per file written
# in it) are not even delivered: a burst of 1,000 files made ~10,000 events without the filter
EVENTS = (FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
          FileDeletedEvent, FileAttribEvent, DirCreatedEvent, DirMovedEvent, DirDeletedEvent)
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs",
              "lustre", "gpfs", "beegfs", "sshfs", "davfs")


class Listener(Protocol):
    """What observers tell the daemon."""

    def heard(self, path: str, root: str, writing: bool | None = False) -> None: ...
    def departed(self, src: str, dest: str, root: str, is_dir: bool) -> None: ...
    def request_rescan(self, folder: str | None = None, root: str | None = None) -> None: ...


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


def wants_polling(path: str) -> bool:
    fs = filesystem_type(path)
    return fs in NETWORK_FS or fs.startswith("fuse")


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


class Observers:
    """One observer per root, renewed when a root comes back or becomes readable."""

    def __init__(self, listener: Listener, mode: str = "auto",
                 poll_interval: float = 5.0) -> None:
        self.listener = listener
        self.mode = mode
        self.poll_interval = poll_interval
        self._by_root: dict[str, Any] = {}
        self._polled: set[str] = set()
        self._overflow = _OverflowLog(listener)

    @property
    def started(self) -> bool:
        return bool(self._by_root)

    def polled(self, root: str) -> bool:
        return root in self._polled

    def start(self, roots: list[str]) -> None:
        logging.getLogger("watchdog").addHandler(self._overflow)
        for root in roots:
            self.observe(root)

    def observe(self, root: str) -> None:
        polling = self.mode == "polling" or (self.mode == "auto" and wants_polling(root))
        obs = PollingObserver(timeout=self.poll_interval) if polling else Observer()
        obs.schedule(_Events(self, root), root, recursive=True, event_filter=list(EVENTS))
        obs.start()
        self._by_root[root] = obs
        if polling:
            self._polled.add(root)
        else:
            self._polled.discard(root)
        log.info("%s: %s observer", root, "polling" if polling else "native")

    def renew(self, root: str) -> None:
        old = self._by_root.pop(root, None)
        if old is not None:
            old.stop()
        self.observe(root)

    def stop(self) -> None:
        logging.getLogger("watchdog").removeHandler(self._overflow)
        for obs in self._by_root.values():
            obs.stop()
        for obs in self._by_root.values():
            obs.join(timeout=5)


class _Events(FileSystemEventHandler):
    def __init__(self, observers: Observers, root: str) -> None:
        self.observers, self.root = observers, root

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        listener = self.observers.listener
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if kind in ("deleted", "moved"):  # a departure, decided later on the main thread
            listener.departed(src, dest if kind == "moved" else "", self.root,
                              event.is_directory)
        path = dest or src
        if event.is_directory:
            if kind in ("created", "moved"):
                listener.request_rescan(path, self.root)  # a tree moved in with one mv
            return
        if kind != "deleted":
            # a write under inotify: the writer has the file open until its close event. A
            # polling observer sees no closes; "created" is also what a file moved in from
            # outside looks like, and a chmod or utime says nothing about the writer
            writing: bool | None = None
            if kind == "modified" and not self.observers.polled(self.root):
                writing = True
            elif kind in ("closed", "moved"):
                writing = False
            listener.heard(path, self.root, writing)


class _OverflowLog(logging.Handler):
    """watchdog only logs a queue overflow: hearing that line schedules a full rescan."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(logging.WARNING)
        self.listener = listener

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.listener.request_rescan()
