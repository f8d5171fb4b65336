"""Assets: find the files to judge, and fingerprint them.

Discovery never follows a symlink out of the tree it walks and never writes anything. Files it
cannot judge (a symlink loop, a link out of the tree, a FIFO, a folder it may not enter) come
back as assets with an ``error`` so that they are recorded, not silently dropped.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from wcmatch import glob as wglob

SIDECAR_SUFFIXES = (".xmp", ".c2pa")
_SMALL = 1 << 20
_GLOB_FLAGS = wglob.GLOBSTAR | wglob.DOTGLOB | wglob.IGNORECASE | wglob.BRACE


@dataclass(frozen=True)
class Asset:
    """A file as found: ``path`` is absolute, ``root`` the folder it was found under."""

    path: str
    root: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    fingerprint: str | None = None
    error: str | None = None
    # whether the bytes "c2pa"/"C2PA" occur in the file: False only when the whole file was
    # read for its fingerprint and they do not (see credentials.BYTES_SETTLE_C2PA)
    c2pa_marker: bool | None = None

    @property
    def relpath(self) -> str:
        return relative(self.path, self.root)

    def with_fingerprint(self) -> Asset:
        """The same asset with its sha256, or with an error saying why it has none."""
        if self.error or self.fingerprint:
            return self
        try:
            digest, marker = fingerprint_and_marker(self.path, self.size, self.mtime_ns)
            return replace(self, fingerprint=digest, c2pa_marker=marker)
        except OSError as exc:
            return replace(self, error=describe_os_error(exc))
        except FileChanged as exc:
            return replace(self, error=str(exc))


def relative(path: str, folder: str) -> str:
    """``path`` under ``folder`` with / separators; os.path.relpath normalises both sides
    first, which is the largest cost of a rescan of unchanged files."""
    prefix = folder.rstrip(os.sep) + os.sep
    if path.startswith(prefix):
        return path[len(prefix):].replace(os.sep, "/")
    return os.path.relpath(path, folder).replace(os.sep, "/")


class FileChanged(Exception):
    """The file changed while it was being read: it is still being written."""


class GlobSet:
    """Globs compiled once into one regular expression (wcmatch translates them, with ``**``).

    Compiling a glob costs 200 times more than matching it, and a scan matches every file
    against the excludes and every zone. Two shapes are common enough to shortcut: folder
    globs (``**/final/**``) are decided once per folder, and file-name globs (``**/*.part``)
    only look at the name.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._re = _compile(self.patterns) if self.patterns else None
        self._folder = bool(self.patterns) and all(p.endswith("/**") for p in self.patterns)
        names = [p[3:] for p in self.patterns if p.startswith("**/") and "/" not in p[3:]]
        self._names = _compile(tuple(names)) if names and len(names) == len(self.patterns) \
            else None
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self._re is not None

    def match(self, path: str) -> bool:
        if self._re is None:
            return False
        if self._names is not None:
            return self._names.fullmatch(path.rpartition("/")[2]) is not None
        if self._folder:
            folder = path.rpartition("/")[0]
            hit = self._memo.get(folder)
            if hit is None:
                hit = self._memo[folder] = self._re.fullmatch(folder + "/_") is not None
            return hit
        return self._re.fullmatch(path) is not None


def matches(path: str, patterns: Iterable[str]) -> bool:
    """True when ``path`` matches any of the globs (for one-off checks)."""
    pats = tuple(patterns)
    return bool(pats) and _compile(pats).fullmatch(path) is not None


@functools.lru_cache(maxsize=256)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    positive, negative = wglob.translate(list(patterns), flags=_GLOB_FLAGS)
    if negative:
        raise ValueError("exclusion patterns (!) are not supported here")
    return re.compile("|".join(f"(?:{p})" for p in positive))


def fingerprint(path: str, size: int | None = None, mtime_ns: int | None = None) -> str:
    """sha256 of the content, read in chunks (a 3 GB file never sits in memory)."""
    return fingerprint_and_marker(path, size, mtime_ns)[0]


def fingerprint_and_marker(path: str, size: int | None = None, mtime_ns: int | None = None
                           ) -> tuple[str, bool | None]:
    """The fingerprint, and for a small file (read whole anyway) whether a C2PA label occurs
    in its bytes: a free look that spares c2pa-python files that cannot hold a manifest."""
    marker = None
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size <= _SMALL:  # file_digest zeroes a 256 KiB buffer per call
            data = fh.read()
            digest = hashlib.sha256(data).hexdigest()
            marker = b"c2pa" in data or b"C2PA" in data
        else:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        st = os.fstat(fh.fileno())
    if size is not None and (st.st_size != size or st.st_mtime_ns != mtime_ns):
        raise FileChanged("changed while being read: still being written?")
    return "sha256:" + digest, marker


def describe_os_error(exc: OSError) -> str:
    """A message a user can act on, for the errors files on delivery storage give."""
    import errno

    reason = {
        errno.ENOENT: "vanished: the file was removed or renamed before it could be read",
        errno.EACCES: "permission denied: provgate cannot read this file",
        errno.EPERM: "permission denied: provgate cannot read this file",
        errno.ELOOP: "symlink loop: not followed",
        errno.EIO: "I/O error reading the file: check the storage",
    }.get(exc.errno or 0)
    return reason or f"cannot read: {exc.strerror or exc}"


def stat_asset(path: str, root: str) -> Asset:
    """An Asset for one path, refusing what is not a regular file inside ``root``."""
    try:
        lst = os.lstat(path)
        if stat.S_ISLNK(lst.st_mode):
            real = os.path.realpath(path)
            real_root = os.path.realpath(root)
            if os.path.commonpath([real, real_root]) != real_root:
                return Asset(path, root, error="symlink pointing outside the scanned tree: "
                                               "not followed")
        st = os.stat(path)
    except OSError as exc:
        return Asset(path, root, error=describe_os_error(exc))
    if not stat.S_ISREG(st.st_mode):
        return Asset(path, root, error="not a regular file (a FIFO, socket or device): skipped")
    return Asset(path, root, st.st_size, st.st_mtime_ns, st.st_ino)


def discover(paths: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (),
             skip_hidden: bool = True, root: str | None = None) -> Iterator[Asset]:
    """Every file under ``paths`` (files or folders), in a stable order.

    ``include``/``exclude`` are globs on the path relative to its root; hidden files and
    transfer partials are the policy's default excludes. ``root`` (the watched root) replaces
    each given folder as the root its files are judged under.
    """
    for given in paths:
        top = os.path.abspath(given)
        if os.path.isdir(top) and not os.path.islink(top):
            yield from _walk(top, GlobSet(map(anywhere, include)),
                             GlobSet(map(anywhere, exclude)), skip_hidden, root or top)
        elif os.path.lexists(top):
            yield stat_asset(top, root or os.path.dirname(top))
        else:
            yield Asset(top, os.path.dirname(top), error="not found: check the path")


def anywhere(pattern: str) -> str:
    """A glob without a ``/`` names files at any depth, as in .gitignore (``*.pem``)."""
    return pattern if "/" in pattern else f"**/{pattern}"


def _walk(top: str, include: GlobSet, exclude: GlobSet, skip_hidden: bool,
          root: str) -> Iterator[Asset]:
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(top, onerror=errors.append):
        while errors:
            exc = errors.pop()
            yield Asset(exc.filename or dirpath, root,
                        error=f"folder not scanned: {describe_os_error(exc)}")
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        dirnames.sort()
        bases = _media_bases(filenames)
        # a symlink to a folder is listed in dirnames and never walked: report it
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                dirnames.remove(d)
                yield Asset(os.path.join(dirpath, d), root,
                            error="symlink to a folder: not followed")
        for name in sorted(filenames):
            if skip_hidden and name.startswith("."):
                continue
            if _is_sidecar(name, bases):
                continue
            path = os.path.join(dirpath, name)
            rel = relative(path, root)
            if exclude.match(rel):
                continue
            if include and not include.match(rel):
                continue
            yield stat_asset(path, root)
    while errors:
        exc = errors.pop()
        yield Asset(exc.filename or root, root, error=f"folder not scanned: {describe_os_error(exc)}")


def _media_bases(names: list[str]) -> set[str]:
    """Names and extension-less names of the non-sidecar files in one folder."""
    out: set[str] = set()
    for n in names:
        base, ext = os.path.splitext(n)
        if ext.lower() not in SIDECAR_SUFFIXES:
            out.update((n, base))
    return out


def _is_sidecar(name: str, media_bases: set[str]) -> bool:
    """``clip.mov.xmp``/``clip.xmp`` beside ``clip.mov`` is read with it, not on its own."""
    base, ext = os.path.splitext(name)
    return ext.lower() in SIDECAR_SUFFIXES and base in media_bases


def sidecar_for(path: str, listing: Callable[[str], frozenset[str]] | None = None) -> str | None:
    """The XMP sidecar of a file, if one sits beside it. ``listing`` gives a folder's names
    (cached by the caller), so a scan does not stat four names per file."""
    folder, name = os.path.split(path)
    base = os.path.splitext(name)[0]
    names = listing(folder) if listing else None
    for cand in (name + ".xmp", base + ".xmp", name + ".XMP", base + ".XMP"):
        if cand == name:
            continue
        full = os.path.join(folder, cand)
        if (cand in names) if names is not None else os.path.isfile(full):
            return full
    return None


def folder_listing() -> Callable[[str], frozenset[str]]:
    """A cached ``os.listdir`` for one batch."""
    @functools.lru_cache(maxsize=4096)
    def names(folder: str) -> frozenset[str]:
        try:
            return frozenset(os.listdir(folder))
        except OSError:
            return frozenset()
    return names
