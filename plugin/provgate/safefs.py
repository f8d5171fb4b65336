"""safefs: the only place that creates provgate's own files and folders.

Everything provgate writes for itself (quarantine folders, receipts, the ledger file, the
daemon's lock and status) is reached through a folder opened component by component from ``/``
with ``O_NOFOLLOW|O_DIRECTORY`` (``openat`` on the previous component's descriptor), so no
component of the quarantine can be a symbolic link and none can be swapped for one between the
check and the write (the folders of the ledger, lock and status follow a link only where root
or the service user made it in a folder nobody else may write, and check its target the same
way). Each component must belong to root or to the service user (the process's own user, and
``service_user`` when a producer's CLI works on the service's files) and must not be writable
by anyone else (by its group only when that group is the configured ``group``). A sticky folder
owned by root (``/tmp``) may be crossed, never used as the quarantine itself.

Files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`` (a name someone planted is never
opened), mode 0600, folders 0700; with a ``group`` (producers who run ``provgate approve``) 0660
and 2770, owned by that group (the quarantine and its receipts 0640 and 2750: producers read
them, never take a file out). The group and the service user come from the policy's
``service`` block (``configure``) unless a caller gives its own. A file that is replaced is
written under a fresh random name and renamed over the old one relative to the folder's
descriptor, so a link planted at the name is replaced, never followed. None of this relies
on ``fs.protected_symlinks``.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import hashlib
import os
import pwd
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provgate.errors import ConfigError, LedgerError, ProvgateError

# O_PATH: a folder descriptor that needs search permission only (Linux); elsewhere read-only
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
DIR_FLAGS = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | _O_PATH
CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TMP_SUFFIX = ".provgate-tmp"


class UnsafePath(ConfigError):
    """A path provgate would write through could be redirected or tampered with by someone
    else (a symlink, a folder another user owns or may write): refused, exit 2."""


class LockHeld(LedgerError):
    """Another process holds the lock of this ledger (exit 3, naming its pid)."""

    def __init__(self, message: str, pid: str) -> None:
        super().__init__(message)
        self.pid = pid


# the policy's ``service`` (group, user), for every Access made without them (``configure``)
_service: tuple[int | str | None, int | str | None] = (None, None)


def configure(group: int | str | None = None, user: int | str | None = None) -> None:
    """Set the service's group and user (the policy's ``service`` block) for this process:
    every Access made without its own then creates files and folders of that group (producers
    who run ``approve`` and ``report``) and trusts that user's files and folders (a producer's
    CLI on the service's ledger). Unknown names are a ConfigError now, not at the first write."""
    global _service
    if group is not None:
        _gid(group)
    if user is not None:
        _uid(user)
    _service = (group, user)


@dataclass(frozen=True)
class Access:
    """Who may own provgate's folders and files, and the modes it creates them with: 0600
    and 0700, or with a group 0660 and 2770 (``group_writes``: the ledger, which producers
    who run ``approve`` write) or 0640 and 2750 (the quarantine and its receipts, which they
    may read but never take files out of)."""

    uids: frozenset[int]
    gid: int | None = None
    group_writes: bool = True

    @classmethod
    def make(cls, group: int | str | None = None, service_user: int | str | None = None,
             group_writes: bool = True) -> Access:
        """The process's user and root, plus the service's (``configure``) unless given."""
        group = _service[0] if group is None else group
        service_user = _service[1] if service_user is None else service_user
        uids = {0, os.geteuid()}
        if service_user is not None:
            uids.add(_uid(service_user))
        return cls(frozenset(uids), _gid(group) if group is not None else None, group_writes)

    @property
    def file_mode(self) -> int:
        if self.gid is None:
            return 0o600
        return 0o660 if self.group_writes else 0o640

    @property
    def dir_mode(self) -> int:
        if self.gid is None:
            return 0o700
        return 0o2770 if self.group_writes else 0o2750

    def owns(self, st: os.stat_result) -> bool:
        return st.st_uid in self.uids

    def foreign_write(self, st: os.stat_result) -> bool:
        """Writable by someone who is neither the owner nor the configured group."""
        return bool(st.st_mode & stat.S_IWOTH) or bool(
            st.st_mode & stat.S_IWGRP and st.st_gid != self.gid)

    def describe(self) -> str:
        names = sorted(user_name(u) for u in self.uids)
        return " or ".join(names)


def _uid(user: int | str) -> int:
    if isinstance(user, int) or str(user).isdigit():
        return int(user)
    try:
        return pwd.getpwnam(str(user)).pw_uid
    except KeyError:
        raise ConfigError(f"no such user {user!r} (service user)") from None


def _gid(group: int | str) -> int:
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise ConfigError(f"no such group {group!r} (the group that may run approve)") from None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# -- folders -----------------------------------------------------------------------------------

def open_dir(path: str | os.PathLike[str], *, create: bool = False,
             group: int | str | None = None, service_user: int | str | None = None,
             sticky_leaf: bool = False, follow_links: bool = False,
             access: Access | None = None) -> int:
    """A descriptor (O_PATH on Linux) of folder ``path``, reached from ``/`` one component at
    a time without following any link, each component checked (see the module's docstring).
    ``create`` makes missing components (0700, or 2770 with ``group``). ``sticky_leaf`` lets
    the folder itself be a root-owned sticky folder (a ledger in ``/tmp``): files in it are
    then only ever created exclusively. ``follow_links`` (state files, never the quarantine)
    follows a link only where nobody but root or the service user could have made it, and
    checks its target's path the same way. Raises UnsafePath, or FileNotFoundError for a
    missing folder when not ``create``. The caller closes the descriptor."""
    fd = _walk(path, create=create, acc=access or Access.make(group, service_user),
               sticky_leaf=sticky_leaf, missing_ok=False, follow_links=follow_links)
    assert fd is not None
    return fd


@contextmanager
def folder(path: str | os.PathLike[str], **kwargs: object) -> Iterator[int]:
    """``open_dir`` as a context manager that closes the descriptor."""
    fd = open_dir(path, **kwargs)  # type: ignore[arg-type]
    try:
        yield fd
    finally:
        os.close(fd)


def _walk(path: str | os.PathLike[str], *, create: bool, acc: Access, sticky_leaf: bool,
          missing_ok: bool, follow_links: bool = False) -> int | None:
    text = os.path.abspath(os.fspath(path))  # lexical: with no link followed, '..' is lexical
    for _hop in range(40):
        parts = [p for p in text.split("/") if p]
        fd = os.open("/", DIR_FLAGS)
        try:
            _check_dir(os.fstat(fd), "/", acc, leaf=not parts, sticky_leaf=sticky_leaf)
            for i, name in enumerate(parts):
                here = "/" + "/".join(parts[:i + 1])
                leaf = i == len(parts) - 1
                made = False
                try:
                    nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        if missing_ok:
                            os.close(fd)
                            return None
                        raise
                    try:
                        os.mkdir(name, acc.dir_mode, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass  # made by another process just now: checked like any other
                    nfd = _open_component(fd, name, here)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    target = _trusted_link(fd, name, acc) if follow_links else None
                    if target is None:
                        raise UnsafePath(_not_a_folder(fd, name, here)) from None
                    # a link root or the service user made, in a folder only they may write:
                    # walk its target from the start, every component checked again
                    text = os.path.normpath(os.path.join("/", *parts[:i], target, *parts[i + 1:]))
                    os.close(fd)
                    break
                os.close(fd)
                fd = nfd
                if made:
                    _set_mode(fd, acc, acc.dir_mode, here)
                _check_dir(os.fstat(fd), here, acc, leaf=leaf, sticky_leaf=sticky_leaf)
            else:
                return fd
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
    raise UnsafePath(f"{path}: too many levels of symbolic links")


def _trusted_link(parent: int, name: str, acc: Access) -> str | None:
    """The target of a link ``name`` in the checked folder ``parent`` when it may be
    followed: a link of root or the service user's (nobody else could have planted it there,
    the folder having passed the checks; in a sticky folder the link's owner is what counts,
    as with ``fs.protected_symlinks``, without relying on it)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode) or not acc.owns(st):
            return None
        return os.readlink(name, dir_fd=parent)
    except OSError:
        return None


def _open_component(parent: int, name: str, here: str) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise UnsafePath(_not_a_folder(parent, name, here)) from None
        raise


def _not_a_folder(parent: int, name: str, here: str) -> str:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return f"{here} is not a folder"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=parent)
        except OSError:
            target = "?"
        return (f"{here} is a symbolic link (to {target}): provgate never writes through a "
                "link; give the real folder")
    return f"{here} is not a folder"


def _set_mode(fd: int, acc: Access, mode: int, here: str) -> None:
    """Set exactly ``mode`` (and the group) on a folder provgate just made (the umask may
    have taken bits off); an O_PATH descriptor is reopened for it."""
    real = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        if acc.gid is not None:
            os.fchown(real, -1, acc.gid)
        os.fchmod(real, mode)
    except OSError as exc:
        raise UnsafePath(f"cannot set the mode of {here}: {exc}") from None
    finally:
        os.close(real)


def _check_dir(st: os.stat_result, here: str, acc: Access, *, leaf: bool,
               sticky_leaf: bool) -> None:
    if not acc.owns(st):
        raise UnsafePath(f"{here} belongs to {user_name(st.st_uid)}, not to "
                         f"{acc.describe()}: another user could move or replace what provgate "
                         "keeps there; use a folder of the service user's own")
    if acc.foreign_write(st):
        sticky_root = bool(st.st_mode & stat.S_ISVTX) and st.st_uid == 0
        if sticky_root and (not leaf or sticky_leaf):
            return  # like /tmp: others cannot rename or remove what is ours in it
        if sticky_root:
            raise UnsafePath(f"{here} is shared by everyone (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}): others could plant names in "
                             f"it; give provgate a folder of its own inside it")
        raise UnsafePath(f"{here} may be written by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                         "another user could plant links or files there; "
                         f"chmod go-w {here} (or use a private folder)")


def check_quarantine(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str] | None],
                     *, group: int | str | None = None, service_user: int | str | None = None,
                     access: Access | None = None) -> Path:
    """Refuse (UnsafePath, exit 2) a quarantine folder that lies inside one of ``roots`` (the
    watched or scanned roots, the delivery being gated) or holds one, by its own path or by
    where links lead, or whose existing components fail the checks of ``open_dir`` (a link, a
    folder another user owns or may write; the quarantine itself may not be a sticky
    world-writable folder). A missing quarantine is fine: it is made 0700 on first use.
    Returns the quarantine's absolute path."""
    q = quarantine_outside(path, roots)
    fd = _walk(q, create=False, acc=access or Access.make(group, service_user),
               sticky_leaf=False, missing_ok=True)
    if fd is not None:
        os.close(fd)
    return q


def quarantine_outside(path: str | os.PathLike[str],
                       roots: Iterable[str | os.PathLike[str] | None]) -> Path:
    """Refuse (UnsafePath) a quarantine inside one of ``roots`` or holding one, by its path
    or where links lead: a configuration that can never work, refused before anything runs."""
    q = Path(os.path.abspath(os.fspath(path)))
    q_real = Path(os.path.realpath(q))
    for root in roots:
        if not root:
            continue
        r = Path(os.path.abspath(os.fspath(root)))
        r_real = Path(os.path.realpath(r))
        for a, b in ((q, r), (q_real, r_real), (q_real, r), (q, r_real)):
            if a == b or a.is_relative_to(b):
                raise UnsafePath(f"the quarantine {q} lies inside {r}, a folder provgate "
                                 "watches or gates: quarantined files would be back in the "
                                 "delivery; put the quarantine outside every root")
            if b.is_relative_to(a):
                raise UnsafePath(f"the quarantine {q} holds {r}, a folder provgate watches or "
                                 "gates: put the quarantine outside every root")
    return q


# -- files -------------------------------------------------------------------------------------

def create_at(dir_fd: int, name: str, mode: int = 0o600, gid: int | None = None) -> int:
    """Create ``name`` in the folder ``dir_fd`` exclusively (never a name that exists, never
    through a link), read-write, exactly ``mode``. Returns the descriptor."""
    fd = os.open(name, CREATE_FLAGS | os.O_RDWR, mode, dir_fd=dir_fd)
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)  # the umask may have taken bits off
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=dir_fd)
        raise
    return fd


def write_at(dir_fd: int, name: str, data: bytes | str, *, access: Access | None = None) -> None:
    """Replace ``name`` in the verified folder ``dir_fd`` with ``data``, atomically: written
    to a fresh random name (exclusive, no-follow, 0600), fsynced, renamed over ``name``
    relative to the folder (a link planted at ``name`` is replaced, never followed)."""
    acc = access or Access.make()
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = f".{name}.{secrets.token_hex(6)}{TMP_SUFFIX}"
    fd = create_at(dir_fd, tmp, acc.file_mode, acc.gid)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    fsync_dir(dir_fd)


def write_private(path: str | os.PathLike[str], data: bytes | str, *,
                  group: int | str | None = None,
                  service_user: int | str | None = None) -> None:
    """Write one of provgate's own files (the daemon's status) atomically and privately:
    the folder is walked and checked (a root-owned sticky folder such as /tmp is allowed, the
    file is then never opened by its name), the data goes to a random exclusive name and is
    renamed over ``path``. Raises UnsafePath or OSError."""
    p = Path(os.path.abspath(os.fspath(path)))
    acc = Access.make(group, service_user)
    with folder(p.parent, access=acc, sticky_leaf=True, follow_links=True) as dfd:
        write_at(dfd, p.name, data, access=acc)


def read_private(path: str | os.PathLike[str], *, limit: int = 1 << 20,
                 service_user: int | str | None = None) -> bytes:
    """Read one of provgate's own small files (the status) without following a link at its
    name, refusing a file that is not a regular file of root or the service user (one planted
    in a shared folder by someone else). Raises OSError (ELOOP for a link) or UnsafePath."""
    fd = os.open(os.fspath(path), READ_FLAGS)
    try:
        st = os.fstat(fd)
        acc = Access.make(service_user=service_user)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        if not acc.owns(st):
            raise UnsafePath(f"{path} belongs to {user_name(st.st_uid)}, not to "
                             f"{acc.describe()}: not provgate's")
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def create_private_file(path: str | os.PathLike[str], *, parents: bool = False,
                        group: int | str | None = None,
                        service_user: int | str | None = None) -> bool:
    """Make sure ``path`` exists before a library opens it by name (the ledger, before
    SQLite does): a missing file is created empty, exclusively, with no link followed, 0600
    (0660 with ``group``), in a checked folder (``parents`` creates missing folders, 0700).
    An existing file is left as it is (its content is the caller's business); a link at the
    name is refused when it leads nowhere (SQLite would create its target) or was planted
    in a folder others may write. True when the file was created here."""
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        if not stat.S_ISLNK(os.lstat(p).st_mode):
            return False  # there already (another user's CLI may use the service's ledger)
    except FileNotFoundError:
        pass
    acc = Access.make(group, service_user)
    with folder(p.parent, access=acc, create=parents, sticky_leaf=True,
                follow_links=True) as dfd:
        try:
            st = os.stat(p.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                _check_link(dfd, p, st, acc)
            return False
        try:
            fd = create_at(dfd, p.name, acc.file_mode, acc.gid)
        except FileExistsError:
            return False  # another process created it just now
        os.close(fd)
        fsync_dir(dfd)
        return True


def _check_link(dfd: int, p: Path, st: os.stat_result, acc: Access) -> None:
    """A link at a state file's name is followed by the library that opens it: only a link
    of root or the service user's (the folder was checked: nobody else may write it, or it
    is sticky and root's), and only to something that exists."""
    if not acc.owns(st):
        raise UnsafePath(f"{p} is a symbolic link planted by {user_name(st.st_uid)}: "
                         "not followed; remove it")
    try:
        os.stat(p.name, dir_fd=dfd)
    except FileNotFoundError:
        raise UnsafePath(f"{p} is a symbolic link to a missing file "
                         f"({os.readlink(p.name, dir_fd=dfd)}): not followed") from None


def fsync_dir(dir_fd: int) -> None:
    """fsync a folder given by a descriptor (an O_PATH one is reopened for it)."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fingerprint_fd(fd: int) -> str:
    """sha256 of an open file from its start, as ``sha256:HEX`` (the ledger's form)."""
    os.lseek(fd, 0, os.SEEK_SET)
    h = hashlib.sha256()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        h.update(chunk)
    return "sha256:" + h.hexdigest()


# -- the daemon's lock -------------------------------------------------------------------------

@dataclass
class Lock:
    """The daemon's lock on one ledger file, held while ``fd`` is open."""

    path: Path
    fd: int
    ledger: Path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(ledger: str | os.PathLike[str]) -> Path:
    """Where the lock of ``ledger`` lives: in the folder of the ledger's real file (links
    resolved), named after that file's device and inode (``provgate-watch-DEV-INODE.lock``),
    so every path to the same ledger (a symlink, a relative path, another hard link in the
    same folder) gives the same lock. The ledger must exist."""
    real = Path(os.path.realpath(os.fspath(ledger)))
    st = os.stat(real)
    return real.parent / f"provgate-watch-{st.st_dev:x}-{st.st_ino:x}.lock"


def lock_holder(ledger: str | os.PathLike[str]) -> int | None:
    """The pid of a live watch daemon on ``ledger``, read from its lock file without taking
    the lock (taking it, even for a moment, could make a daemon starting then fail)."""
    try:
        pid = int(read_private(lock_path(ledger), limit=64).strip() or 0)
    except (OSError, ValueError, ProvgateError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, another user's
    return pid


def open_lock(ledger: str | os.PathLike[str], *, parents: bool = False,
              group: int | str | None = None, service_user: int | str | None = None) -> Lock:
    """Take the one-daemon-per-ledger lock (``flock``, non-blocking) and write our pid in it.

    The ledger file is created first if it is missing (``create_private_file``; ``parents``
    makes its missing folders, for the default ledger folder only), so there is a real file
    to key on; the lock is ``lock_path(ledger)``, opened relative to the checked
    folder of the real ledger with no link followed. A lock file that is not a regular file of
    ours with one link (a hard link someone planted to another file) is refused, never
    truncated. Raises LockHeld (naming the other pid) when another process holds it,
    UnsafePath when the folder or the file cannot be trusted."""
    acc = Access.make(group, service_user)
    create_private_file(ledger, parents=parents, group=group, service_user=service_user)
    where = lock_path(ledger)
    with folder(where.parent, access=acc, sticky_leaf=True) as dfd:
        try:
            fd = create_at(dfd, where.name, acc.file_mode, acc.gid)
        except FileExistsError:
            try:
                fd = os.open(where.name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePath(f"{where} is a symbolic link: not followed; "
                                     "remove it") from None
                raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or not acc.owns(st):
            raise UnsafePath(f"{where} is not provgate's lock file (a {_kind(st)} of "
                             f"{user_name(st.st_uid)} with {st.st_nlink} links): not touched; "
                             "remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise LockHeld(f"another provgate watch (pid {other}) already uses the ledger "
                           f"{os.path.realpath(os.fspath(ledger))}; stop it first or give "
                           "--ledger", other) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return Lock(where, fd, Path(os.path.realpath(os.fspath(ledger))))


def _kind(st: os.stat_result) -> str:
    return "file" if stat.S_ISREG(st.st_mode) else "folder" if stat.S_ISDIR(st.st_mode) \
        else "special file"
