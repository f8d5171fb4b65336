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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wcmatch import glob as wglob

from provgate.errors import ConfigError

if TYPE_CHECKING:  # archives is imported where a file is read: a rescan reads none
    from provgate.archives import Layout

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
    ctime_ns: int = 0
    # why the walk would leave this file out (hidden, a transfer partial, excluded): the
    # policy decides whether its zone may skip it or must hold it (Gate.admit)
    skipped: str | None = None
    # what a cached verdict of this file depends on besides its bytes (Gate._context)
    context: str = ""
    # whether the bytes "c2pa"/"C2PA" occur in the file: False only when the whole file was
    # read for its fingerprint and they do not (see credentials.BYTES_SETTLE_C2PA)
    c2pa_marker: bool | None = None
    # what its own bytes hold (an archive, a zip appended to it: archives.layout), looked at
    # while it was hashed; None when it was not
    layout: Layout | None = None
    # whether the path itself is a symlink, as the walk saw it; None when nobody looked
    link: bool | None = None
    # digests besides the fingerprint, taken in the same read (a package file's SHA-1)
    digests: dict[str, bytes] | None = field(default=None, compare=False)

    @property
    def relpath(self) -> str:
        return relative(self.path, self.root)

    def with_fingerprint(self) -> Asset:
        """The same asset with its sha256, or with an error saying why it has none."""
        if self.error or self.fingerprint:
            return self
        extra = _extra_hashes(self.path)
        try:
            digest, marker, found, more = fingerprint_and_marker(self.path, self.size,
                                                                 self.mtime_ns, extra)
            return replace(self, fingerprint=digest, c2pa_marker=marker, layout=found,
                           digests=_finished(more) or None)
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
        self._folder = bool(self.patterns) and all(p.endswith("/**") for p in self.patterns)
        names = [p[3:] for p in self.patterns if p.startswith("**/") and "/" not in p[3:]]
        self._names = _compile(tuple(names)) if names and len(names) == len(self.patterns) \
            else None
        # the whole-path expression, unless the names one answers (compiling is the cost)
        self._re = _compile(self.patterns) if self.patterns and self._names is None else None
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, path: str) -> bool:
        if self._names is not None:
            return self._names.fullmatch(path.rpartition("/")[2]) is not None
        if self._re is None:
            return False
        if self._folder:
            folder = path.rpartition("/")[0]
            hit = self._memo.get(folder)
            if hit is None:
                hit = self._memo[folder] = self._re.fullmatch(folder + "/_") is not None
            return hit
        return self._re.fullmatch(path) is not None


def matches(path: str, patterns: Iterable[str], case_sensitive: bool = False) -> bool:
    """True when ``path`` matches any of the globs (for one-off checks). Approvals match
    case-sensitively: on a case-sensitive disk ``/SRV`` is not ``/srv``."""
    pats = tuple(patterns)
    return bool(pats) and _compile(pats, case_sensitive).fullmatch(path) is not None


@functools.lru_cache(maxsize=256)
def _compile(patterns: tuple[str, ...], case_sensitive: bool = False) -> re.Pattern[str]:
    flags = _GLOB_FLAGS & ~wglob.IGNORECASE | wglob.CASE if case_sensitive else _GLOB_FLAGS
    positive, negative = wglob.translate(list(patterns), flags=flags)
    if negative:
        raise ValueError("exclusion patterns (!) are not supported here")
    return re.compile("|".join(f"(?:{p})" for p in positive))


def fingerprint(path: str, size: int | None = None, mtime_ns: int | None = None) -> str:
    """sha256 of the content, read in chunks (a 3 GB file never sits in memory)."""
    return fingerprint_and_marker(path, size, mtime_ns)[0]


def fingerprint_and_marker(path: str, size: int | None = None, mtime_ns: int | None = None,
                           extra: Mapping[str, Callable[[], Any]] | None = None
                           ) -> tuple[str, bool | None, Layout, dict[str, Any]]:
    """The fingerprint, and for a small file (read whole anyway) whether a C2PA label occurs
    in its bytes: a free look that spares c2pa-python files that cannot hold a manifest; and
    what the file's bytes hold (archives.layout: from the bytes in memory for a small file,
    else its first 512 and last 64 KiB just hashed, without opening it again). ``extra``:
    more hashes (name -> a new hash object) fed in the same read, returned as objects (a
    package's PKL hash, an ASC MHL's: never a second read)."""
    from provgate.archives import HEAD_BYTES, layout_fd, look

    marker = None
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size <= _SMALL:  # file_digest zeroes a 256 KiB buffer per call
            data = fh.read()
            digest = hashlib.sha256(data).hexdigest()
            more = {name: make() for name, make in (extra or {}).items()}
            for h in more.values():
                h.update(data)
            marker = b"c2pa" in data or b"C2PA" in data
            found = look(data[:HEAD_BYTES], data)
        elif extra:
            more = _feed(fh, {"sha256": hashlib.sha256, **extra})
            digest = more.pop("sha256").hexdigest()
            found = layout_fd(fh.fileno())
        else:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            more = {}
            found = layout_fd(fh.fileno())
        st = os.fstat(fh.fileno())
    if size is not None and (st.st_size != size or st.st_mtime_ns != mtime_ns):
        raise FileChanged("changed while being read: still being written?")
    return "sha256:" + digest, marker, found, more


def _feed(fh: Any, makers: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    hs = {name: make() for name, make in makers.items()}
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while n := fh.readinto(buf):
        for h in hs.values():
            h.update(view[:n])
    return hs


def _extra_hashes(path: str) -> dict[str, Callable[[], Any]]:
    """What else the fingerprinting read of ``path`` hashes: the SHA-1 a package's PKL
    declares, the formats of the ASC MHL history that covers it (``mhl:FORMAT``)."""
    out: dict[str, Callable[[], Any]] = {}
    folder = os.path.dirname(path)
    if in_package(folder):
        out["sha1"] = hashlib.sha1
    if mhl_root(folder, _MHL_ABOVE) is not None:
        from provgate import mhl  # a delivery with a history only: its reading is heavy

        for fmt in mhl.formats_for(path):
            out[f"mhl:{fmt}"] = functools.partial(mhl.new_hash, fmt)
    return out


def mhl_root(folder: str, known: dict[str, str | None]) -> str | None:
    """The nearest folder at or above ``folder`` that holds an ``ascmhl/`` history folder
    (a real folder, not a link; ``mhl.py`` reads what it holds), or None; walked without
    recursion. ``known``: the answers so far, by folder (the caller decides how long they
    hold)."""
    walked: list[str] = []
    here = folder
    while here not in known:
        walked.append(here)
        try:
            if stat.S_ISDIR(os.lstat(os.path.join(here, "ascmhl")).st_mode):
                known[here] = here
                break
        except OSError:
            pass
        up = os.path.dirname(here)
        if up == here:
            known[here] = None
            break
        here = up
    for f in walked:
        known[f] = known[here]
    return known[folder]


# for the fingerprinting read only: a history made later in a daemon's life is missed there,
# and its files are read again when checked against it
_MHL_ABOVE: dict[str, str | None] = {}


def _finished(hashes: dict[str, Any]) -> dict[str, Any]:
    """Hash objects as kept: a PKL's digest bytes, an ASC MHL's text."""
    from provgate import mhl

    return {name: mhl.hash_text(name[4:], h) if name.startswith("mhl:") else h.digest()
            for name, h in hashes.items()}


@functools.lru_cache(maxsize=1024)
def in_package(folder: str) -> bool:
    """Whether ``folder`` holds an IMF/DCP asset map (by name; ``imf.read`` decides what it
    is): its files' PKL hashes (SHA-1) are taken in the read that fingerprints them. Cached
    for the process (a daemon takes no SHA-1 in a package folder made after it first looked;
    a check, which verifies packages, hashes such a file again)."""
    try:
        return any(n.lower() in ("assetmap.xml", "assetmap") for n in os.listdir(folder))
    except OSError:
        return False


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
        st = lst = os.lstat(path)
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
    # a real sidecar whose media file is not beside it: recorded as what it is (unreadable,
    # held in a final zone), never judged as media of its own
    orphan = orphan_error(path) if _sidecar_suffix(path) else None
    return Asset(path, root, st.st_size, st.st_mtime_ns, st.st_ino, ctime_ns=st.st_ctime_ns,
                 error=orphan, link=stat.S_ISLNK(lst.st_mode))


class Filter:
    """Which files a walk or a daemon event would leave out, and why: one rule for both.

    Nothing is dropped here: a left-out file comes back with ``skipped`` set, so that a zone
    that must judge everything (final) can hold it instead of never seeing it.
    """

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = (),
                 skip_hidden: bool = True) -> None:
        self.include = GlobSet(map(anywhere, include))
        self.exclude = GlobSet(map(anywhere, exclude))
        self.skip_hidden = skip_hidden

    def reason(self, rel: str) -> str | None:
        """Why the file at ``rel`` (relative to its root, / separators) is left out, or None."""
        if self.skip_hidden:
            parts = rel.split("/")
            if parts[-1].startswith("."):
                return "hidden file"
            if any(p.startswith(".") for p in parts[:-1]):
                return "in a hidden folder"
        if self.exclude.match(rel):
            return "excluded by files.exclude or --exclude (a transfer partial, a temporary file)"
        if self.include and not self.include.match(rel):
            return "outside files.include or --include"
        return None


def discover(paths: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (),
             skip_hidden: bool = True, root: str | None = None,
             seen: set[str] | None = None) -> Iterator[Asset]:
    """Every file under ``paths`` (files or folders), in a stable order.

    ``include``/``exclude`` are globs on the path relative to its root; hidden files and
    transfer partials are the policy's default excludes. Files they leave out are still
    yielded, marked ``skipped``. ``root`` (the watched root) replaces each given folder as the
    root its files are judged under. A given folder that is a symlink is walked (the user
    named it); links inside it are not followed. ``seen`` collects the path of every file
    the walk listed, sidecars included (a check compares it with the tree afterwards).
    """
    filt = Filter(include, exclude, skip_hidden)
    # each file judged once, however many of the given paths hold it (a file and its folder,
    # a folder and its subfolder); one path walked alone never lists a file twice
    named: set[str] | None = set() if len(paths) > 1 else None
    for given in paths:
        top = os.path.abspath(given)
        if os.path.isdir(top):
            yield from _walk(top, filt, root or top, seen, named)
            continue
        # a real sidecar named on its own (a --from list of every file) stands for its media
        if seen is not None:
            seen.add(top)
        for path in media_of(top) or [top]:
            if seen is not None:
                seen.add(path)
            if named is None or path not in named:
                if named is not None:
                    named.add(path)
                yield (stat_asset(path, root or os.path.dirname(path)) if os.path.lexists(path)
                       else Asset(path, os.path.dirname(path), error="not found: check the path"))


def missing(paths: Iterable[str]) -> list[str]:
    """The paths that do not exist (a typo, an unmounted share, a delivery not made yet). A
    path provgate may not look at is not missing: it is judged unreadable."""
    out = []
    for p in paths:
        try:
            os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            out.append(p)
        except (OSError, ValueError):
            pass
    return out


def anywhere(pattern: str) -> str:
    """A glob without a ``/`` names files at any depth, as in .gitignore (``*.pem``)."""
    return pattern if "/" in pattern else f"**/{pattern}"


def _walk(top: str, filt: Filter, root: str, seen: set[str] | None,
          named: set[str] | None = None) -> Iterator[Asset]:
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in walk_tree(top, errors.append):
        while errors:
            exc = errors.pop()
            yield Asset(exc.filename or dirpath, root,
                        error=f"folder not scanned: {describe_os_error(exc)}")
        dirnames.sort()
        bases = _media_bases(filenames)
        # a symlink to a folder is listed in dirnames and never walked: report it
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                dirnames.remove(d)
                yield Asset(os.path.join(dirpath, d), root,
                            error="symlink to a folder: not followed")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if seen is not None:
                seen.add(path)
            if _is_sidecar(name, bases, dirpath):
                continue
            if named is not None:
                if path in named:
                    continue
                named.add(path)
            why = filt.reason(relative(path, root))
            yield Asset(path, root, skipped=why) if why else stat_asset(path, root)
    while errors:
        exc = errors.pop()
        yield Asset(exc.filename or root, root, error=f"folder not scanned: {describe_os_error(exc)}")


def walk_tree(top: str, onerror: Callable[[OSError], None] | None = None
              ) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` top-down without following links, but with a stack instead of recursion:
    a delivery nested a thousand folders deep is walked, not a RecursionError. Names the
    caller removes from the yielded folder list are not entered."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            if onerror is not None:
                onerror(exc)
            continue
        dirs, files = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs)
                     if not os.path.islink(os.path.join(folder, d)))


def read_path_list(data: bytes, nul: bool = False) -> list[str]:
    """The paths of a ``--from`` list: one a line, or NUL-separated (``find -print0``). Names
    are bytes on disk: they are decoded as the filesystem does, never refused for not being
    UTF-8. A list that mixes the two separators is refused: it is not what it seems."""
    if not nul and b"\0" in data:
        raise ConfigError("the --from list holds NUL bytes: for `find -print0` lists use "
                          "--from0")
    items = data.split(b"\0") if nul else [line.removesuffix(b"\r")
                                           for line in data.split(b"\n")]
    return [os.fsdecode(item) for item in items if item.strip()]


def line_break_names(paths: Iterable[str]) -> list[str]:
    """Files whose name holds a line break, in the folders of ``paths``: a one-a-line list
    cannot name them (``plate.jpg<LF>`` reads as ``plate.jpg``), so it cannot be trusted."""
    out = []
    for folder in {os.path.dirname(os.path.abspath(p)) for p in paths}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        out += [os.path.join(folder, n) for n in names if "\n" in n or "\r" in n]
    return out


def listed_files(paths: Sequence[str]) -> set[str]:
    """The path of every file under ``paths`` now (names only, links not followed)."""
    out: set[str] = set()
    for given in paths:
        top = os.path.abspath(given)
        if not os.path.isdir(top):
            if os.path.lexists(top):
                out.add(top)
            continue
        for folder, _dirs, files in walk_tree(top):
            out.update(os.path.join(folder, f) for f in files)
    return out


def _media_bases(names: list[str]) -> set[str]:
    """Names and extension-less names of the files in one folder whose names are not
    sidecar names. Media named like a sidecar (``plate.xmp`` holding a JPEG) is found by
    ``_is_sidecar`` from the folder itself, since telling it apart needs its content."""
    out: set[str] = set()
    for n in names:
        base, ext = os.path.splitext(n)
        if ext.lower() not in SIDECAR_SUFFIXES:
            out.update((n, base))
    return out


def _is_sidecar(name: str, media_bases: set[str], folder: str | None = None) -> bool:
    """``clip.mov.xmp``/``clip.xmp`` beside ``clip.mov`` is read with it, not on its own.

    A sidecar name is a sidecar only when the file really is one (XMP for ``.xmp``, a C2PA
    manifest store for ``.c2pa``) and a media file it belongs to sits beside it. Anything
    else named like a sidecar is media and is judged as media; a real sidecar with no media
    beside it is an orphan, judged with an error (see ``stat_asset``). Without ``folder``
    only the names are compared (no content can be looked at).
    """
    base, ext = os.path.splitext(name)
    if ext.lower() not in SIDECAR_SUFFIXES:
        return False
    if folder is None:
        return base in media_bases
    path = os.path.join(folder, name)
    if not is_real_sidecar(path):
        return False
    if base in media_bases:
        return True
    # the media file may itself have a sidecar-like name (``plate.xmp`` holding a JPEG,
    # with ``plate.xmp.xmp`` beside it): a few exact names, looked up one by one
    return any(_is_media(os.path.join(folder, cand))
               for cand in (base, *_variants(base)) if cand != name)


def _is_media(path: str) -> bool:
    """A file that is judged as media: not a folder, and not a real sidecar."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.lexists(path)  # a dangling link or unreadable entry is still judged
    if stat.S_ISDIR(st.st_mode):
        return False
    return not (_sidecar_suffix(path) and is_real_sidecar(path))


# -- sidecars: what a file named like one really holds ---------------------------------------

_SNIFF_BYTES = 16 << 10
# an XMP packet or document: its wrapper, its outer element, or the RDF inside it
_XMP_MARKS = (b"<?xpacket", b"<x:xmpmeta", b"<x:xapmeta", b"adobe:ns:meta/", b"<rdf:RDF",
              b"http://www.w3.org/1999/02/22-rdf-syntax-ns#")


def sniff_sidecar(head: bytes) -> str | None:
    """``"xmp"``, ``"c2pa"`` or None from the first bytes of a file.

    A C2PA manifest store (a ``.c2pa`` sidecar) is a JUMBF superbox: bytes 4..8 are ``jumb``.
    XMP is an XML document (after an optional byte-order mark and white space it starts with
    ``<``) holding an xpacket, an ``x:xmpmeta`` or an ``rdf:RDF``. A JPEG, PNG or anything
    else that merely contains an XMP packet starts with its own magic, so it is None.
    """
    if len(head) >= 8 and head[4:8] == b"jumb":
        return "c2pa"
    text = head
    if text[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte-order mark
        text = text[: len(text) // 2 * 2].decode("utf-16", "ignore").encode("utf-8")
    elif text[:3] == b"\xef\xbb\xbf":
        text = text[3:]
    text = text.lstrip(b" \t\r\n")
    if text.startswith(b"<") and any(mark in text for mark in _XMP_MARKS):
        return "xmp"
    return None


def sidecar_kind(path: str) -> str | None:
    """What a file holds, by its first KB: ``"xmp"``, ``"c2pa"`` or None. None too for a
    symlink, a folder, or a file that cannot be read: those are judged as media."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _sniff(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _sniff(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sniff_sidecar(fh.read(_SNIFF_BYTES))
    except OSError:
        return None


def _sidecar_suffix(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return ext if ext in SIDECAR_SUFFIXES else None


def is_real_sidecar(path: str) -> bool:
    """Named like a sidecar and holding what that name says: XMP in ``.xmp``, a C2PA
    manifest store in ``.c2pa``."""
    ext = _sidecar_suffix(path)
    return ext is not None and sidecar_kind(path) == ext[1:]


@functools.lru_cache(maxsize=None)
def _case_variants(suffix: str) -> tuple[str, ...]:
    import itertools

    return tuple(dict.fromkeys("".join(p) for p in itertools.product(
        *((c.lower(), c.upper()) for c in suffix))))


def _variants(stem: str, suffixes: Sequence[str] = SIDECAR_SUFFIXES) -> list[str]:
    """``stem`` + every spelling of the sidecar suffixes (``.xmp``, ``.XMP``, ``.Xmp``...)."""
    return [stem + v for s in suffixes for v in _case_variants(s)]


def _folder_index(folder: str) -> dict[str, tuple[str, ...]]:
    """Names in ``folder`` by name and by extension-less name. Cached while the folder's
    mtime says it has not changed; a folder changed in the last two seconds is listed again
    (its mtime may not yet show a name added in the same clock tick)."""
    import time

    try:
        st = os.stat(folder)
    except OSError:
        return {}
    if time.time_ns() - st.st_mtime_ns < 2_000_000_000:
        return _build_index(folder)
    return _cached_index(folder, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=64)
def _cached_index(folder: str, mtime_ns: int, inode: int) -> dict[str, tuple[str, ...]]:
    return _build_index(folder)


def _build_index(folder: str) -> dict[str, tuple[str, ...]]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    index: dict[str, list[str]] = {}
    for n in names:
        index.setdefault(n, []).append(n)
        base = os.path.splitext(n)[0]
        if base != n:
            index.setdefault(base, []).append(n)
    return {k: tuple(v) for k, v in index.items()}


def media_of(sidecar: str) -> list[str]:
    """The media files a real sidecar belongs to (``clip.mov`` for ``clip.mov.xmp``; every
    ``clip.*`` media file for ``clip.xmp``); empty for an orphan or a file that is not a real
    sidecar."""
    if not is_real_sidecar(sidecar):
        return []
    folder, name = os.path.split(sidecar)
    stem = os.path.splitext(name)[0]
    return [os.path.join(folder, n) for n in _folder_index(folder).get(stem, ())
            if n != name and (n == stem or os.path.splitext(n)[0] == stem)
            and _is_media(os.path.join(folder, n))]


def orphan_error(path: str) -> str | None:
    """The error an orphan sidecar is recorded with (a real sidecar with no media file
    beside it), or None. It is never judged as media: its media file is what is missing."""
    ext = _sidecar_suffix(path)
    if ext is None or not is_real_sidecar(path) or media_of(path):
        return None
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    what = "XMP metadata" if ext == ".xmp" else "a C2PA manifest store"
    return (f"orphan sidecar: {name} is {what} for a media file ({stem} or {stem}.*) that "
            "is missing from this folder (not delivered, moved or quarantined); a sidecar is "
            "judged only with its media file")


def sidecars_of(path: str, shared: bool = True, listing: Listing | None = None) -> list[str]:
    """Every real sidecar of a media file (XMP and C2PA): ``clip.mov.xmp``, ``clip.xmp``,
    ``clip.mov.c2pa``, ``clip.c2pa``, in any case. With ``shared=False``, ``clip.xmp`` is left
    out when another media file (``clip.wav``) shares it: it stays with that one. ``listing``
    (a batch's): a folder it lists without a sidecar-named file costs no more look."""
    folder, name = os.path.split(path)
    if listing is not None and not listing.sidecars(folder):
        return []
    base = os.path.splitext(name)[0]
    index = _folder_index(folder)
    out: list[str] = []
    for stem in dict.fromkeys((name, base)):
        cands = [n for n in index.get(stem, ()) if n != name and _sidecar_suffix(n)
                 and os.path.splitext(n)[0] == stem]
        if not cands:
            continue
        if not shared and stem != name and any(
                n != name and n not in cands and os.path.splitext(n)[0] == stem
                and _is_media(os.path.join(folder, n)) for n in index.get(stem, ())):
            continue  # clip.xmp beside clip.mov and clip.wav: not clip.mov's alone
        out += [os.path.join(folder, n) for n in cands
                if is_real_sidecar(os.path.join(folder, n))]
    return out


def sidecar_stamp(path: str, listing: Callable[[str], frozenset[str]] | None = None) -> str:
    """Who the real sidecars beside a file are (name, size, mtime, ctime, inode), "" when it
    has none: for a cache of verdicts, since a sidecar arriving, changing or leaving changes
    the file's evidence and nothing in the file's own size or times."""
    folder, name = os.path.split(path)
    if isinstance(listing, Listing):
        # most folders hold no sidecar at all: one lookup instead of sixteen names
        named = listing.sidecars(folder)
        if not named:
            return ""
        base = os.path.splitext(name)[0]
        cands = [n for stem in dict.fromkeys((name, base)) for n in named.get(stem, ())]
        names = None
    else:
        base = os.path.splitext(name)[0]
        cands = list(dict.fromkeys((*_variants(name), *_variants(base))))
        names = listing(folder) if listing else None
    parts = []
    for cand in cands:
        if cand != name and (names is None or cand in names) and \
                is_real_sidecar(os.path.join(folder, cand)):
            try:
                st = os.stat(os.path.join(folder, cand))
            except OSError:
                continue
            parts.append(f"{cand}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
    return "|".join(parts)


def sidecar_for(path: str, listing: Callable[[str], frozenset[str]] | None = None,
                kind: str = "xmp") -> str | None:
    """The sidecar of a file (XMP, or with ``kind="c2pa"`` its C2PA manifest store), if a
    real one sits beside it: ``NAME.EXT.xmp`` first, then ``NAME.xmp``, in any case. A file
    that only has the name (``plate.xmp`` holding a JPEG) is media, never another file's
    evidence. ``listing`` gives a folder's names (cached by the caller), so a scan does not
    stat sixteen names per file (without it, each name is looked up: no listing of a big
    folder per file)."""
    folder, name = os.path.split(path)
    base = os.path.splitext(name)[0]
    names = listing(folder) if listing else None
    for stem in dict.fromkeys((name, base)):
        for cand in _variants(stem, ("." + kind,)):
            if cand == name or (names is not None and cand not in names):
                continue
            full = os.path.join(folder, cand)
            if is_real_sidecar(full):
                return full
    return None


class Listing:
    """A folder's names for one batch (called with a folder), and its sidecar-named entries
    by the stem they would belong to. A folder is listed again only when its mtime changed
    (or changed in the last two seconds, which the mtime may not show yet)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[frozenset[str], dict[str, tuple[str, ...]]]] = {}

    def __call__(self, folder: str) -> frozenset[str]:
        return self._get(folder)[0]

    def sidecars(self, folder: str) -> dict[str, tuple[str, ...]]:
        """``{stem: names}`` of the names that end in a sidecar suffix, in any case
        (``clip.mov`` -> ``clip.mov.xmp``, ``clip.mov.XMP``), sorted."""
        return self._get(folder)[1]

    def _get(self, folder: str) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
        found = self._seen.get(folder)
        if found is None:
            import time

            try:
                st = os.stat(folder)
            except OSError:
                found = (frozenset(), {})
            else:
                if time.time_ns() - st.st_mtime_ns < 2_000_000_000:
                    found = _list_folder(folder)
                else:
                    found = _list_folder_cached(folder, st.st_mtime_ns, st.st_ino)
            self._seen[folder] = found
        return found


@functools.lru_cache(maxsize=256)
def _list_folder_cached(folder: str, _mtime_ns: int, _inode: int
                        ) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    return _list_folder(folder)


def _list_folder(folder: str) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    try:
        names = frozenset(os.listdir(folder))
    except OSError:
        return frozenset(), {}
    by_stem: dict[str, list[str]] = {}
    for n in sorted(n for n in names if n.lower().endswith(SIDECAR_SUFFIXES)):
        by_stem.setdefault(os.path.splitext(n)[0], []).append(n)
    return names, {k: tuple(v) for k, v in by_stem.items()}


def folder_listing() -> Listing:
    """A cached ``os.listdir`` for one batch."""
    return Listing()
