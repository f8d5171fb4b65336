"""The settle queue: files heard about, waiting until they are complete.

A file is taken only when its writer has closed it (inotify's close-after-write; a writer idle
OPEN_CAP_SECONDS is given up on) and its size and mtime have not changed for the settle
window. A media file also waits while a sidecar of its own is still arriving, so that the
pair is judged once. A frame of an image sequence waits while any frame of its sequence is
still arriving, so a shot rendered or copied frame by frame settles as a whole.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from provgate.assets import SIDECAR_SUFFIXES
from provgate.sequences import sequence_key

log = logging.getLogger("provgate")
# an open file unchanged this long is judged anyway; and a file (or a sequence) that keeps
# changing, or whose sequence keeps arriving, waits no longer than this from its first event
OPEN_CAP_SECONDS = 600


def sidecar_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in SIDECAR_SUFFIXES


@dataclass
class _Pending:
    """A path heard about, and what it looked like when last checked."""

    root: str
    heard: float
    size: int = -1
    mtime_ns: int = -1
    # the sequence it is a frame of: folder, name, extension. Not the padding: the grouping
    # joins plate.999.exr to plate.1000.exr, so they wait for each other here too
    sequence: tuple[str, str, str] | None = None
    first: float = 0.0  # when it was first heard since it was last taken


class SettleQueue:
    """Thread-safe: observers add, the daemon loop takes."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self._pending: dict[str, _Pending] = {}  # in the order last heard
        self._open: dict[str, _Pending] = {}  # files a writer still has open (inotify)
        self._lock = threading.Lock()

    @property
    def waiting(self) -> list[str]:
        """Paths closed by their writer, inside or past their settle window."""
        with self._lock:
            return list(self._pending)

    @property
    def writing(self) -> list[str]:
        """Paths a writer still has open."""
        with self._lock:
            return list(self._open)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._open)

    def holds(self, path: str) -> bool:
        with self._lock:
            return path in self._pending or path in self._open

    def heard(self, path: str, root: str, writing: bool | None = False) -> None:
        """An event about a file. One still open for writing waits until its close event
        (or OPEN_CAP_SECONDS without one); the settle window starts after that."""
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        now = time.monotonic()
        key = sequence_key(path)
        entry = _Pending(root, now, size, mtime, key[:3] if key else None, now)
        with self._lock:
            earlier = self._pending.pop(path, None) or self._open.get(path)
            if earlier is not None:  # the bound on waiting counts from the first event
                entry.first = earlier.first
            if writing is None:
                writing = path in self._open
            if writing:
                self._open[path] = entry
            else:
                self._open.pop(path, None)
                self._pending[path] = entry

    def drop(self, path: str) -> None:
        """Deleted or moved away while queued: nothing left to gate."""
        with self._lock:
            self._pending.pop(path, None)
            self._open.pop(path, None)

    def release_stuck(self) -> None:
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

    def anything_settled(self) -> bool:
        with self._lock:
            first = next(iter(self._pending.values()), None)
        return first is not None and time.monotonic() - first.heard >= self.settle

    def take(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (path, root) pairs unchanged for the settle window, oldest first.
        The queue is kept in the order files were last heard, so the scan stops at the first
        file still inside its window."""
        now = time.monotonic()
        ready: list[tuple[str, str]] = []
        with self._lock:
            changed: list[str] = []
            gone: list[str] = []
            arriving = {(os.path.dirname(q), os.path.splitext(os.path.basename(q))[0])
                        for q in (*self._pending, *self._open) if sidecar_name(q)}
            shooting = self._sequences_arriving(now)
            for path, p in self._pending.items():
                if now - p.heard < self.settle or len(ready) >= limit:
                    break
                if arriving and not sidecar_name(path) and _awaits(path, arriving):
                    continue
                overdue = now - p.first >= OPEN_CAP_SECONDS
                if p.sequence is not None and p.sequence in shooting and not overdue:
                    continue  # its sequence is still arriving: the shot settles as a whole
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    gone.append(path)  # gone before it settled: nothing to gate
                    continue
                except OSError:  # there, but not to be read: stat_asset records why
                    ready.append((path, p.root))
                    continue
                if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns) and not overdue:
                    p.size, p.mtime_ns, p.heard = st.st_size, st.st_mtime_ns, now
                    changed.append(path)  # still changing: one more window
                    continue
                if overdue:  # a writer that never stops: judged as it is, again when it does
                    log.warning("%s has been changing for %d s: judging it as it is", path,
                                OPEN_CAP_SECONDS)
                ready.append((path, p.root))
            for path in gone + [r[0] for r in ready]:
                del self._pending[path]
            for path in changed:  # to the back of the line
                self._pending[path] = self._pending.pop(path)
        return ready


    def _sequences_arriving(self, now: float) -> set[tuple[str, str, str]]:
        """The sequences with a frame still open or inside its settle window (under the
        lock)."""
        out = {e.sequence for e in self._open.values() if e.sequence is not None}
        # every entry, not only the newest: release_stuck appends old ones at the end
        out.update(e.sequence for e in self._pending.values()
                   if e.sequence is not None and now - e.heard < self.settle)
        return out


def _awaits(path: str, arriving: set[tuple[str, str]]) -> bool:
    """Whether a media file has a sidecar of its own still arriving or settling."""
    folder, name = os.path.split(path)
    return (folder, name) in arriving or (folder, os.path.splitext(name)[0]) in arriving
