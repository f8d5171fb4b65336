"""Actions: the only module that moves files. It never deletes or overwrites a user's file.

A block in enforce mode moves the file into the quarantine folder under its path relative to
its root, with a JSON receipt beside it. The quarantine folder is reached through ``safefs``
(every component from ``/`` opened without following a link, owned by root or the service
user, writable by nobody else; made 0700, or 2750 of the policy's service group), and every
name in it is made relative to that folder's descriptor, so nothing can redirect a move or a
receipt. Same filesystem: a hard link to the new name (which fails rather than replace
anything) and then the old name is removed. Across filesystems: copy to a partial name, fsync,
verify the sha256, then link into place and remove the source. Any failure leaves the original
where it was and says why; a failed move is carried out again by ``retry_failed`` with its
receipt replaced. A media file's sidecars (``clip.mov.xmp``, ``clip.xmp``, ``clip.mov.c2pa``,
``clip.c2pa``) move with it, the same way, and come back with it; a restore puts back only what
still matches its fingerprint.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provgate import data, safefs
from provgate.assets import fingerprint
from provgate.errors import ActionError
from provgate.record import text_path
from provgate.safefs import Access, UnsafePath

RECEIPT_SUFFIX = ".provgate-receipt.json"
PARTIAL_SUFFIX = ".provgate-partial"
# the error of a failed move that is not tried again: its file changed or left after the
# decision (a changed file gets a decision of its own)
GIVEN_UP = "given up: "
# a folder in a delivery: links in its path are followed (a symlinked delivery root is
# walked), the file itself never is
_DIR_ANY = os.O_DIRECTORY | os.O_CLOEXEC | getattr(os, "O_PATH", os.O_RDONLY)


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def plan_target(quarantine: Path, relpath: str, taken: set[Path] = frozenset()) -> Path:
    """A free name in the quarantine for ``relpath``: ``name~2.ext`` and so on on a clash,
    with files already there or names already given to other moves (``taken``)."""
    rel = Path(relpath)
    if rel.is_absolute() or ".." in rel.parts:
        rel = Path(rel.name)
    target = quarantine / rel
    n = 1
    while (target in taken or os.path.lexists(target)
           or os.path.lexists(str(target) + RECEIPT_SUFFIX)):
        n += 1
        target = quarantine / rel.parent / f"{rel.stem}~{n}{rel.suffix}"
    return target


def receipt(move: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The receipt written beside a quarantined file: enough to rebuild its ledger rows, and
    where the ledger was (``ledger_heads``: the quarantine chain's count and hash through this
    move, for ``Ledger.check_heads``, as a checkpoint's: a ledger truncated, rolled back or
    rewritten since no longer holds that row)."""
    doc = {
        "receipt_version": 1,
        "move_id": move["id"],
        "decision_id": move["decision_id"],
        "original_path": text_path(move["original_path"]),  # the exact name, or \xNN escapes
        "quarantined_path": text_path(move["quarantined_path"]),
        "fingerprint": move["fingerprint"],
        "size": move["size"],
        "time": move["created"],
        "user": move["user"],
        "host": os.uname().nodename,
        "decision": {k: record.get(k) for k in ("kind", "c2pa", "zone", "rule", "action",
                                                 "reason", "policy_digest")},
        # the sidecars (XMP, C2PA) that travel with the file; restore brings them back too
        "sidecars": [{"original_path": text_path(e["original_path"]),
                      "quarantined_path": text_path(e["quarantined_path"]),
                      "fingerprint": e["fingerprint"], "size": e["size"]}
                     for e in move_sidecars(move)],
    }
    if move.get("hash"):  # a move as the ledger holds it (a plan not yet written has none)
        doc["ledger_heads"] = {"quarantine": {"count": move["id"], "head": move["hash"]}}
    data.validate(doc, "receipt", "receipt")
    return doc


def quarantine(move: dict[str, Any], record: dict[str, Any], *,
               roots: Iterable[str] | None = None, group: int | str | None = None,
               service_user: int | str | None = None) -> None:
    """Carry out one planned move (a ``quarantine`` ledger row) and the sidecars it carries.
    Raises ActionError when the media file cannot be moved (its sidecars then stay too, and
    no receipt is left behind).

    ``roots`` (the watched roots and the delivery) are checked with
    ``safefs.check_quarantine``: a quarantine inside one of them is refused. Idempotent, so
    that a move interrupted by a crash, or one that failed, can be finished later.
    """
    src, dst = Path(move["original_path"]), Path(move["quarantined_path"])
    rec_path = Path(move["receipt_path"])
    acc = Access.make(group, service_user, group_writes=False)
    with _quarantine_folder(dst.parent, roots, acc, src) as qfd:
        if rec_path.parent != dst.parent:
            raise ActionError(f"could not quarantine {src}: its receipt {rec_path} is not "
                              "planned beside it; the file was left in place")
        try:
            if _already_moved(src, qfd, dst, move["fingerprint"]):
                _finish(src, qfd, dst)
                _write_receipt(qfd, rec_path.name, receipt(move, record), acc)
            else:
                if not os.path.lexists(src):
                    raise ActionError(f"{src} is gone: nothing to quarantine")
                # the receipt first: a crash after the link leaves a receipt beside the file;
                # one for a file that did not come is removed again (no stale receipt)
                _write_receipt(qfd, rec_path.name, receipt(move, record), acc)
                try:
                    with _source(src) as s:
                        _place(s, qfd, dst, move["fingerprint"], into_quarantine=True)
                except BaseException:
                    _drop(qfd, rec_path.name)
                    raise
                _finish(src, qfd, dst)
        except OSError as exc:
            raise ActionError(f"could not quarantine {src}: {_why(exc)}; the file was left in "
                              "place") from exc
    # its sidecars follow only once the media file is in quarantine: a media file left in
    # place keeps its evidence beside it. A sidecar that cannot follow stays behind (an
    # orphan, held in a final zone) and the move says so; the media file's move stands.
    problems = place_sidecars(move_sidecars(move), access=acc)
    if problems:
        move["sidecar_problems"] = problems
        record.setdefault("warnings", []).extend(problems)


@dataclass
class Retried:
    """What ``retry_failed`` did with one failed move, for the caller to record:
    ``Ledger.update_move(move_id, state=state, error=error)``."""

    move_id: int
    state: str  # "done" or "failed"
    outcome: str  # "quarantined to ..." or "left in place: ..."
    error: str | None = None  # None once done (a sidecar that stayed behind says so)


def retry_failed(moves: Iterable[dict[str, Any]],
                 decision_of: Callable[[dict[str, Any]], dict[str, Any] | None], *,
                 roots: Iterable[str] | None = None, group: int | str | None = None,
                 service_user: int | str | None = None) -> list[Retried]:
    """Carry out again moves that failed (a full, read-only or unusable quarantine), with no
    ledger of its own: the caller passes ``Ledger.moves("failed")``, ``decision_of`` gives
    each move's decision record (None: skip it, e.g. the file was approved or decided again
    since), and the caller records every result.

    A move is carried out only while its file is still where it was with the content that
    was decided; otherwise it has given up (its error starts with ``GIVEN_UP`` and it is never
    tried again: a changed file gets a decision of its own). The move keeps its planned name
    (the ledger row is sealed); the receipt is written anew over any stale one. Cheap while
    the cause lasts: a quarantine still too small for the file fails before any hashing."""
    out = []
    for move in moves:
        if (move.get("error") or "").startswith(GIVEN_UP):
            continue
        rec = decision_of(move)
        if rec is not None:
            out.append(_retry(dict(move), rec, roots=roots, group=group,
                              service_user=service_user))
    return out


def _retry(move: dict[str, Any], rec: dict[str, Any], **kwargs: Any) -> Retried:
    src, dst = Path(move["original_path"]), Path(move["quarantined_path"])
    fp = move["fingerprint"]

    def failed(why: str) -> Retried:
        return Retried(move["id"], "failed", f"left in place: {why}", why)

    here, there = _lstat(src), _lstat(dst)
    if here is None and there is None:
        return failed(f"{GIVEN_UP}{src} is gone since the decision: nothing to quarantine")
    if here is not None and not _same(here, there):
        if not stat.S_ISREG(here.st_mode) or here.st_size != move["size"]:
            return failed(f"{GIVEN_UP}{src} changed since the decision: not moved; its new "
                          "content is decided on its own")
        if there is not None and _fingerprint_of(dst) != fp:
            return failed(f"could not quarantine {src}: its quarantine name {dst} holds "
                          "another file; the file was left in place")
        if _short_of_space(dst.parent, here):
            return failed(f"could not quarantine {src}: the quarantine filesystem is full; "
                          "the file was left in place")
        now = _fingerprint_of(src)
        if now != fp:
            return failed(f"{GIVEN_UP}{src} changed since the decision (now {now}): not "
                          "moved; its new content is decided on its own")
    try:
        quarantine(move, rec, **kwargs)
    except ActionError as exc:
        return failed(str(exc))
    problems = move.get("sidecar_problems")
    return Retried(move["id"], "done", f"quarantined to {dst}",
                   "; ".join(problems) if problems else None)


def _short_of_space(folder: Path, st: os.stat_result) -> bool:
    """Whether a copy of the file ``st`` cannot fit on the quarantine's filesystem (a hard
    link on the same filesystem needs no room)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    try:
        if os.stat(folder).st_dev == st.st_dev:
            return False
        vfs = os.statvfs(folder)
    except OSError:
        return False
    return vfs.f_bavail * vfs.f_frsize < st.st_size


def restore(move: dict[str, Any], *, group: int | str | None = None,
            service_user: int | str | None = None) -> list[str]:
    """Put a quarantined file and its sidecars back, refusing (before anything moves) if
    something now sits at one of their original paths, or if a quarantined copy no longer
    matches the fingerprint recorded when it was moved. Returns the sidecars put back."""
    acc = Access.make(group, service_user, group_writes=False)
    src, dst = Path(move["quarantined_path"]), Path(move["original_path"])
    with _folders(acc) as opened:
        try:
            qfd = opened(src.parent)
        except FileNotFoundError:
            raise ActionError(f"cannot restore: the quarantined copy {src} is missing") from None
        # the sidecars that went with it (and are still in quarantine) come back with it, to
        # their names as the ledger shows them, like the media file (``original_path`` is text)
        def held_in_quarantine(path: Path) -> bool:
            try:
                return _lstat_at(opened(path.parent), path.name) is not None
            except FileNotFoundError:
                return False

        sidecars = [{**e, "original_path": text_path(e["original_path"])} for e in move_sidecars(move)
                    if held_in_quarantine(Path(e["quarantined_path"]))]
        held = _lstat_at(qfd, src.name)
        if os.path.lexists(dst) and not _same(_lstat(dst), held):
            raise ActionError(f"cannot restore: {dst} exists now; move it away first")
        for e in sidecars:
            q = Path(e["quarantined_path"])
            if os.path.lexists(e["original_path"]) and not _same(
                    _lstat(Path(e["original_path"])), _lstat_at(opened(q.parent), q.name)):
                raise ActionError(f"cannot restore: {e['original_path']} exists now (where the "
                                  f"sidecar of {dst.name} goes back); move it away first")
        if held is None:
            raise ActionError(f"cannot restore: the quarantined copy {src} is missing")
        # what goes back must be what was quarantined: a copy changed in quarantine stays
        for path, fp, what in [(src, move["fingerprint"], ""),
                               *((Path(e["quarantined_path"]), e["fingerprint"], "sidecar ")
                                 for e in sidecars)]:
            try:
                now = _hash_at(opened(path.parent), path.name, path)
            except OSError as exc:
                raise ActionError(f"cannot restore: {path} cannot be read: {exc.strerror}; "
                                  "nothing was put back") from exc
            if now != fp:
                raise ActionError(f"cannot restore: the quarantined {what}copy {path} no longer "
                                  f"matches its fingerprint (recorded {fp}, now {now}); "
                                  "nothing was put back")
        # sidecars first: if one cannot go back, the media file is still in quarantine and a
        # second restore finishes the job (a sidecar already back is no longer in quarantine)
        for e in sidecars:
            q = Path(e["quarantined_path"])
            _put_back(opened(q.parent), q, Path(e["original_path"]), e["fingerprint"],
                      "sidecar ")
        _put_back(qfd, src, dst, move["fingerprint"])
        rec = Path(move["receipt_path"])
        try:
            rfd = opened(rec.parent)
            os.rename(rec.name, rec.name + ".restored", src_dir_fd=rfd, dst_dir_fd=rfd)
        except FileNotFoundError:
            pass
    return [e["original_path"] for e in sidecars]


def move_sidecars(move: dict[str, Any]) -> list[dict[str, Any]]:
    """The sidecars a move carries: each ``original_path``, ``quarantined_path``,
    ``fingerprint``, ``size`` (JSON text in the ledger row, a list in a planned move)."""
    raw = move.get("sidecars")
    if not raw:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def plan_sidecars(media: str, target: Path, taken: set[Path] = frozenset()
                  ) -> list[dict[str, Any]]:
    """The sidecars that travel with ``media`` (``clip.mov.xmp``, ``clip.xmp``,
    ``clip.mov.c2pa``, ``clip.c2pa``; not a ``clip.xmp`` another media file shares) and where
    each goes: beside ``target``, named after it (``clip~2.mov`` takes ``clip~2.mov.xmp``)."""
    from provgate.assets import sidecars_of

    out: list[dict[str, Any]] = []
    for side in sidecars_of(media, shared=False):
        entry = plan_sidecar(side, media, target,
                             {*taken, *(Path(e["quarantined_path"]) for e in out)})
        if entry:
            out.append(entry)
    return out


def plan_sidecar(side: str, media: str, target: Path, taken: set[Path] = frozenset()
                 ) -> dict[str, Any] | None:
    """One sidecar's move beside the media file's quarantined copy ``target``; a free name,
    never an existing file's. None when the sidecar cannot be read (it stays, an orphan)."""
    stem, suffix = os.path.splitext(os.path.basename(side))
    target = Path(target)
    # clip.mov.xmp follows clip.mov's new name; clip.xmp its new name without extension
    new_stem = target.name if stem == os.path.basename(media) else target.stem
    cand, n = target.parent / f"{new_stem}{suffix}", 1
    while cand in taken or os.path.lexists(cand):
        n += 1
        cand = target.parent / f"{new_stem}~{n}{suffix}"
    try:
        size = os.stat(side).st_size
        fp = fingerprint(side)
    except OSError:
        return None
    return {"original_path": side, "quarantined_path": str(cand), "fingerprint": fp,
            "size": size}


def place_sidecars(entries: list[dict[str, Any]], *, access: Access | None = None) -> list[str]:
    """Move sidecars into quarantine, each like a media file (hard link, or copy and verify,
    then remove the source; never over an existing file, never through a link) and
    idempotent: one already there with its fingerprint is only finished. Returns what could
    not be moved, and why."""
    acc = access or Access.make(group_writes=False)
    problems = []
    for e in entries:
        src, dst = Path(e["original_path"]), Path(e["quarantined_path"])
        try:
            with _quarantine_folder(dst.parent, None, acc, src) as qfd:
                if _already_moved(src, qfd, dst, e["fingerprint"]):
                    _finish(src, qfd, dst)  # moved before a crash: drop the source if the same
                    continue
                if not os.path.lexists(src):
                    problems.append(f"sidecar {text_path(str(src))} was gone before it could "
                                    "follow its media file")
                    continue
                with _source(src) as s:
                    _place(s, qfd, dst, e["fingerprint"], into_quarantine=True)
                _finish(src, qfd, dst)
        except OSError as exc:
            problems.append(f"sidecar {text_path(str(src))} left in place: {_why(exc)}")
        except ActionError as exc:
            problems.append(f"sidecar {text_path(str(src))} left in place: {exc}")
    return problems


def write_receipt(move: dict[str, Any], record: dict[str, Any], *,
                  group: int | str | None = None, service_user: int | str | None = None) -> None:
    """(Re)write a move's receipt, e.g. once a late sidecar joined it."""
    rec_path = Path(move["receipt_path"])
    acc = Access.make(group, service_user, group_writes=False)
    with _quarantine_folder(rec_path.parent, None, acc, Path(move["original_path"])) as qfd:
        _write_receipt(qfd, rec_path.name, receipt(move, record), acc)


# -- the mechanics: every name relative to a folder descriptor ----------------------------------

@dataclass
class _Source:
    """A file about to be moved, opened without following a link at its name."""

    path: Path
    dir: int  # its folder
    name: str
    fd: int
    st: os.stat_result


@contextmanager
def _source(path: Path, dir_fd: int | None = None) -> Iterator[_Source]:
    """Open ``path`` (in ``dir_fd`` when given, else in its folder, whose path may pass through
    links: a symlinked delivery root) with O_NOFOLLOW; a link or a special file is refused."""
    own = dir_fd is None
    dfd = os.open(path.parent, _DIR_ANY) if own else dir_fd
    try:
        try:
            fd = os.open(path.name, safefs.READ_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ActionError(f"{path} is a symbolic link now: never followed, not "
                                  "moved") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ActionError(f"{path} is not a regular file now: not moved")
            yield _Source(path, dfd, path.name, fd, st)
        finally:
            os.close(fd)
    finally:
        if own:
            os.close(dfd)


@contextmanager
def _quarantine_folder(folder: Path, roots: Iterable[str] | None, acc: Access, src: Path
                       ) -> Iterator[int]:
    """The checked quarantine folder's descriptor (made where missing, ``acc.dir_mode``); an
    unsafe one is an ActionError that leaves the file in place."""
    try:
        if roots:
            safefs.check_quarantine(folder, roots, access=acc)
        fd = safefs.open_dir(folder, create=True, access=acc)
    except UnsafePath as exc:
        raise ActionError(f"could not quarantine {src}: {exc}; the file was left in "
                          "place") from None
    except OSError as exc:
        raise ActionError(f"could not quarantine {src}: {_why(exc)}; the file was left in "
                          "place") from exc
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _folders(acc: Access) -> Iterator[Callable[[Path], int]]:
    """Checked quarantine folders opened on demand (``opened(path)``), closed at the end."""
    fds: dict[Path, int] = {}

    def opened(path: Path) -> int:
        if path not in fds:
            try:
                fds[path] = safefs.open_dir(path, access=acc)
            except UnsafePath as exc:
                raise ActionError(f"cannot restore: {exc}") from None
        return fds[path]

    try:
        yield opened
    finally:
        for fd in fds.values():
            os.close(fd)


def _put_back(qfd: int, src: Path, dst: Path, fp: str, what: str = "") -> None:
    """Restore one file from quarantine; finishing a restore a crash interrupted. The folder
    it goes back to is the delivery's (made again if it was removed)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dfd = os.open(dst.parent, _DIR_ANY)
    except OSError as exc:
        raise ActionError(f"could not restore {what}{dst}: {_why(exc)}; the file stays in "
                          "quarantine") from exc
    try:
        if _lstat_at(qfd, src.name) is None:
            return  # back already: only its quarantine name was left to drop
        if not _same(_lstat_at(dfd, dst.name), _lstat_at(qfd, src.name)):
            with _source(src, qfd) as s:
                _place(s, dfd, dst, fp, into_quarantine=False)
        _unlink_moved(qfd, src, dfd, dst)
    except OSError as exc:
        raise ActionError(f"could not restore {what}{dst}: {_why(exc)}; the file stays in "
                          "quarantine") from exc
    finally:
        os.close(dfd)


def _place(s: _Source, dfd: int, dst: Path, fp: str, *, into_quarantine: bool) -> None:
    """Make ``dst`` (in folder ``dfd``) hold the opened file's bytes without ever replacing
    an existing name: a hard link, or across filesystems a verified copy linked into place."""
    try:
        os.link(s.name, dst.name, src_dir_fd=s.dir, dst_dir_fd=dfd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    else:
        if into_quarantine:
            # the name in the delivery may have been swapped after it was opened: what came
            # must be the file that was opened, or our new name goes again (never a user's)
            got = os.stat(dst.name, dir_fd=dfd, follow_symlinks=False)
            if (got.st_dev, got.st_ino) != (s.st.st_dev, s.st.st_ino):
                os.unlink(dst.name, dir_fd=dfd)
                raise ActionError(f"{s.path} was replaced while it was being moved: not moved")
        return
    partial = f"{dst.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    pfd = safefs.create_at(dfd, partial, 0o600)
    try:
        os.lseek(s.fd, 0, os.SEEK_SET)
        while chunk := os.read(s.fd, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(pfd, view):]
        os.fsync(pfd)
        if safefs.fingerprint_fd(pfd) != fp:
            raise ActionError(f"the copy of {s.path} does not match its fingerprint (it changed "
                              "since it was decided?): left in place")
        # the file's own times, mode (no set-id bits) and, as root, owner travel with it
        os.utime(pfd, ns=(s.st.st_atime_ns, s.st.st_mtime_ns))
        if os.geteuid() == 0:
            os.fchown(pfd, s.st.st_uid, s.st.st_gid)
        os.fchmod(pfd, stat.S_IMODE(s.st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
        try:
            os.link(partial, dst.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except OSError:
            if _lstat_at(dfd, dst.name) is not None:
                raise
            os.rename(partial, dst.name, src_dir_fd=dfd, dst_dir_fd=dfd)  # no hard links here
    finally:
        os.close(pfd)
        _drop(dfd, partial)  # our own partial copy (made exclusively), never a user's file


def _already_moved(src: Path, qfd: int, dst: Path, fp: str) -> bool:
    """Whether the quarantine name already holds the file (a move a crash or a failure
    interrupted after the link)."""
    there = _lstat_at(qfd, dst.name)
    if there is None:
        return False
    if not stat.S_ISREG(there.st_mode):
        raise ActionError(f"{dst} in quarantine is not a regular file: not touched")
    here = _lstat(src)
    if here is not None and _same(here, there):
        return True
    return _hash_at(qfd, dst.name, dst) == fp


def _finish(src: Path, qfd: int, dst: Path) -> None:
    """Remove the source name once the quarantined name verifiably holds the same bytes."""
    try:
        sfd = os.open(src.parent, _DIR_ANY)
    except FileNotFoundError:
        sfd = None  # its folder is gone, and the file with it
    if sfd is not None:
        try:
            _unlink_moved(sfd, src, qfd, dst)
        finally:
            os.close(sfd)
    safefs.fsync_dir(qfd)


def _unlink_moved(sfd: int, src: Path, dfd: int, dst: Path) -> None:
    """Drop the name ``src`` (in ``sfd``) once ``dst`` (in ``dfd``) is the same file, or a
    regular file with the same bytes; anything else there now is kept."""
    here = _lstat_at(sfd, src.name)
    if here is None:
        return
    there = _lstat_at(dfd, dst.name)
    if not _same(here, there):
        if not stat.S_ISREG(here.st_mode) or _hash_at(sfd, src.name, src) != _hash_at(
                dfd, dst.name, dst):
            raise ActionError(f"{src} changed during the move: kept both copies")
    os.unlink(src.name, dir_fd=sfd)
    safefs.fsync_dir(sfd)


def _write_receipt(qfd: int, name: str, doc: dict[str, Any], acc: Access) -> None:
    """Our own receipt, replaced whole (a random exclusive temporary name, then a rename in
    the checked folder: a link planted at either name is never followed)."""
    safefs.write_at(qfd, name, json.dumps(doc, indent=2, ensure_ascii=False), access=acc)


def _drop(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None


def _same(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    return a is not None and b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _hash_at(dfd: int, name: str, label: Path) -> str:
    """The fingerprint of the regular file ``name`` in ``dfd``, opened without following."""
    try:
        fd = os.open(name, safefs.READ_FLAGS, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ActionError(f"{label} is a symbolic link: never followed") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ActionError(f"{label} is not a regular file")
        return safefs.fingerprint_fd(fd)
    finally:
        os.close(fd)


def _fingerprint_of(path: Path) -> str | None:
    try:
        with _source(path) as s:
            return safefs.fingerprint_fd(s.fd)
    except (OSError, ActionError):
        return None


def _why(exc: OSError) -> str:
    return {
        errno.ENOSPC: "the quarantine filesystem is full",
        errno.EDQUOT: "the quarantine quota is exhausted",
        errno.EACCES: "permission denied on the quarantine folder",
        errno.EROFS: "the quarantine folder is on a read-only filesystem",
        errno.EEXIST: "a file with that name already exists in quarantine",
    }.get(exc.errno or 0, str(exc))


IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# the IPTC code a sidecar states for each kind; unknown, human and unreadable state none, since
# provgate has no provenance of its own to assert for them
KIND_SOURCE_TYPE = {"ai_generated": "trainedAlgorithmicMedia",
                    "ai_composite": "compositeWithTrainedAlgorithmicMedia",
                    "ai_possible": "composite", "algorithmic": "algorithmicMedia"}
SIDECAR_SUFFIX = ".xmp"


def sidecar_path(path: str) -> Path:
    return Path(path + SIDECAR_SUFFIX)


def write_sidecar(record: dict[str, Any], raw_path: str | None = None) -> str | None:
    """Write the verdict beside the file as ``NAME.EXT.xmp`` for DAMs and editorial tools.

    The file's own bytes are never touched. A sidecar provgate did not write is left alone
    (returns why); one it wrote before is replaced by a fresh one.
    """
    from provgate.probe import read_tags, write_tags

    side = sidecar_path(raw_path or record["path"])
    if side.exists():
        if not read_tags(str(side), ["XMP-provgate:DecisionID"]).get("XMP-provgate:DecisionID"):
            return f"sidecar {side.name} exists and is not provgate's: not written"
        side.unlink()  # our own earlier verdict
    tags = {"XMP-provgate:DecisionID": str(record["id"]), "XMP-provgate:Kind": record["kind"],
            "XMP-provgate:Action": record["action"], "XMP-provgate:Rule": record["rule"],
            "XMP-provgate:Zone": record["zone"], "XMP-provgate:Reason": record["reason"],
            "XMP-provgate:Time": record["time"],
            "XMP-provgate:PolicyDigest": record["policy_digest"]}
    if record["kind"] in KIND_SOURCE_TYPE:
        tags["XMP-iptcExt:DigitalSourceType"] = IPTC_DST + KIND_SOURCE_TYPE[record["kind"]]
    write_tags(str(side), tags, create=True)
    return None


# formats ExifTool reads but cannot write (FILM-FORMATS.md): their tag goes to the XMP
# sidecar straight away, without a backup copy of a large track file first. Any other format
# ExifTool refuses to write goes there too, on its answer (_UNWRITABLE_FORMAT).
SIDECAR_ONLY = frozenset({".wav", ".bwf", ".mxf", ".dpx", ".exr"})
_UNWRITABLE_FORMAT = ("files is not yet supported", "Can't currently write")


@dataclass(frozen=True, slots=True)
class Tagged:
    """Where ``tag_file`` wrote: into the file itself, or (``sidecar`` set) into its XMP
    sidecar because ExifTool cannot write the file's format (``why``)."""

    path: str
    sidecar: str | None = None
    why: str | None = None


def sidecar_only(path: str) -> bool:
    """True when a tag of ``path`` goes to its XMP sidecar: a format ExifTool cannot write."""
    return os.path.splitext(path)[1].lower() in SIDECAR_ONLY


def tag_file(path: str, source_type: str, tool: str | None = None) -> Tagged:
    """Label working media a team made with AI, so provenance travels with it: in the file
    itself where ExifTool can write its format, else in its XMP sidecar ``NAME.EXT.xmp``
    (WAV, MXF, DPX, EXR...), which every scan reads as the file's metadata; the media bytes
    are then never touched.

    A backup is kept beside the file (or sidecar) until the write is read back and verified;
    on any failure the original bytes are put back. ActionError when the file (or sidecar)
    is read-only or the sidecar's name is taken by something that is not an XMP sidecar.
    """
    from provgate.errors import ExifToolUnavailable

    tags = {"XMP-iptcExt:DigitalSourceType": IPTC_DST + source_type}
    if tool:
        tags["XMP-iptcExt:AISystemUsed"] = tool
    if sidecar_only(path):
        ext = os.path.splitext(path)[1].lstrip(".").upper()
        return Tagged(path, _tag_sidecar(path, tags), f"ExifTool cannot write {ext} files")
    if not os.access(path, os.W_OK):  # ExifTool would replace it all the same
        raise ActionError("the file is read-only")
    try:
        _write_verified(Path(path), tags)
    except ExifToolUnavailable as exc:
        said = str(exc)
        if not any(s in said for s in _UNWRITABLE_FORMAT):
            raise
        why = said.split("Error: ", 1)[-1].split(" - ", 1)[0]   # ExifTool's own words
        return Tagged(path, _tag_sidecar(path, tags), f"ExifTool: {why}")
    return Tagged(path)


def _write_verified(target: Path, tags: dict[str, str]) -> None:
    """Write ``tags`` into ``target`` in place, keeping a backup until ExifTool's write is
    read back; the original bytes go back on any failure."""
    from provgate.probe import write_tags

    backup = Path(str(target) + ".provgate-backup")
    if os.path.lexists(backup):
        raise ActionError(f"{backup} exists: a previous tag was interrupted; check it first")
    shutil.copy2(target, backup)
    try:
        write_tags(str(target), tags)
        _verify_tags(target, tags)
    except BaseException:
        os.replace(backup, target)  # our own copy of the user's bytes goes back
        raise
    backup.unlink()


def _verify_tags(target: Path, tags: dict[str, str]) -> None:
    from provgate.probe import read_tags

    key = "XMP-iptcExt:DigitalSourceType"
    if read_tags(str(target), [key]).get(key) != tags[key]:
        raise ActionError(f"ExifTool did not keep the tag in {target}; nothing was changed")


def _tag_sidecar(path: str, tags: dict[str, str]) -> str:
    """Put ``tags`` into the XMP sidecar ``NAME.EXT.xmp`` of ``path``; returns its path.

    A sidecar someone else wrote is updated in place (what it says stays); provgate's own
    verdict sidecar, which scans never read as evidence, is replaced by one they read; a new
    one is written under a hidden partial name, read back, then linked into place, so no
    half-written sidecar is ever judged and nothing that appears meanwhile is replaced. Another
    sidecar beside the file (``NAME.xmp``) is left alone: scans read both.
    """
    from provgate.assets import is_real_sidecar
    from provgate.probe import read_tags, write_tags

    side = sidecar_path(path)
    ours = False
    if os.path.lexists(side):
        if os.path.islink(side) or not is_real_sidecar(str(side)):
            raise ActionError(f"{side.name} exists and is not an XMP sidecar: not touched")
        if not os.access(side, os.W_OK):
            raise ActionError(f"its sidecar {side.name} is read-only")
        ours = any("XMP-provgate:" in k for k in read_tags(str(side), ["XMP-provgate:all"]))
        if not ours:
            _write_verified(side, tags)
            return str(side)
    if not os.access(side.parent, os.W_OK | os.X_OK):
        raise ActionError(f"cannot write its sidecar {side.name}: permission denied on its "
                          "folder")
    partial = side.parent / f".{side.name[:-len(SIDECAR_SUFFIX)]}.{secrets.token_hex(4)}" \
        f"{PARTIAL_SUFFIX}{SIDECAR_SUFFIX}"
    try:
        write_tags(str(partial), tags, create=True)
        _verify_tags(partial, tags)
        if ours:
            os.replace(partial, side)   # provgate's own verdict sidecar: ours to replace
        else:
            os.link(partial, side)      # never replaces a file that appeared meanwhile
    except FileExistsError as exc:
        raise ActionError(f"{side.name} appeared while the tag was written: not replaced") \
            from exc
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)
    return str(side)
