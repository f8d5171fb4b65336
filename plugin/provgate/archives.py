"""Archives: open a delivered archive read-only and lay its members out as files to judge.

This is the only module that opens archives. An archive is known by its bytes, never by its
name: a JPEG named ``x.zip`` is a JPEG, and a zip named ``plate.jpg`` is a zip. Zip (``zipfile``),
tar, optionally compressed with gzip, bzip2, xz or zstd (``tarfile``), and 7z (``py7zr``) are
read; a lone compressed file (``shot.png.gz``) is an archive of one member. RAR, and formats whose
library is missing, are recognised and refused with :class:`ArchiveError` (unreadable).
Documents that are zips (OOXML ``.docx``/``.pptx``/``.xlsx``, ODF, EPUB, iWork, IDML, USDZ) are
zips here, whatever ExifTool calls them: their media members are judged like any other.

A zip is also found from its end: :func:`layout` looks for a zip end record in a file's last
:data:`TAIL_BYTES` (a polyglot: a JPEG, PNG or WAV with a zip appended, which zip readers open
from its end), and ``expanded(path, appended=True)`` expands that zip. A zip whose local entries
are not all listed by its central directory (a member hidden from ``zipfile`` and ``unzip`` but
extracted by streaming readers), or with bytes between its entries that nothing explains, is
refused (:class:`ArchiveError`).

Members are never written under their own names. Every regular-file member is streamed into a
private folder (0700; files 0600, created exclusively, links never followed) under a generated
folder per member folder and a sanitised file name, so that no member name can reach outside it
(``../x``, ``/etc/x``, ``C:\\x``) and sidecars stay beside their media (``clip.mov`` and
``clip.mov.xmp`` land in the same folder). Links, devices, FIFOs, encrypted members and members
with unsafe names are not extracted: they come back as :class:`Member` with an ``error``.

Zip bombs are bounded while the bytes are written, counting the bytes actually produced (not
the sizes the headers declare): total uncompressed bytes, members, nesting depth, the expansion
ratio of each member and of each archive, and a deadline. The headers' declared sizes are also
checked first, so a bomb that is honest about its size is refused before anything is expanded.
Nested archives are expanded up to :attr:`Limits.max_depth`, their members named
``inner.tar/a.png`` below the member that holds them.

Use::

    with expanded(path, Limits()) as members:     # ArchiveError: the archive is unreadable
        for m in members:                         # m.name: "final/inner.tar/a.png"
            judge(m.path) if m.path else record_error(m.name, m.error)
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import errno
import gzip
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any

from .errors import ProvgateError

__all__ = ["HEAD_BYTES", "TAIL_BYTES", "ArchiveError", "Layout", "Limits", "Member", "archive_kind",
           "expanded", "extract", "is_archive", "layout", "layout_fd", "look", "sniff", "zip_end"]

ZIP, TAR, SEVENZIP, GZIP, BZIP2, XZ, ZSTD, RAR = "zip", "tar", "7z", "gzip", "bzip2", "xz", "zstd", "rar"
_COMPRESSED = (GZIP, BZIP2, XZ, ZSTD)
_CHUNK = 1 << 20
_GiB = 1 << 30
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# a member file name kept as it is: word characters, dots, dashes, spaces; never a leading dot
# or dash (hidden files and option-like names get a generated name with the same suffix)
_SAFE_NAME = re.compile(r"\w[\w.+ -]{0,199}", re.UNICODE)
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
_DRIVE = re.compile(r"[A-Za-z]:")
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# a zip's end record lies in its last 64 KiB + 22 bytes (its comment is at most 64 KiB)
TAIL_BYTES = (1 << 16) + 22
HEAD_BYTES = 512
_LOCAL, _CENTRAL, _END, _END64_LOCATOR = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x07"
_DESCRIPTOR = b"PK\x07\x08"
_MAX_END_CANDIDATES = 32      # end signatures looked at; past them the file is taken for a zip


class ArchiveError(ProvgateError):
    """The archive could not be opened or expanded within the limits: it is ``unreadable``.

    The message says why (corrupt, truncated, encrypted, unsupported, zip bomb) in words a user
    can act on. Nothing the failed expansion wrote is left behind.
    """


class _ArchiveBomb(ArchiveError):
    """A limit of one archive (its expansion ratio, its declared size): when it is nested, the
    archive is a member with an error and the archive holding it goes on."""


class _Exhausted(ArchiveError):
    """A limit of the whole expansion (total bytes, members, time, disk): nothing goes on."""


class _MemberBomb(Exception):
    """One member expands too far: that member gets the error, the others go on."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one expansion, nested archives included."""

    max_total_bytes: int = 8 * _GiB      # uncompressed bytes written (and decompressed to skip)
    max_members: int = 10_000            # entries of every kind (folders too), nested included
    max_depth: int = 3                   # the archive itself is depth 1
    max_ratio: float = 200.0             # uncompressed / compressed, per member and per archive
    ratio_grace_bytes: int = 1 << 20     # the ratio is only a bomb past this many bytes
    max_name_length: int = 1024          # characters of a member's path inside its archive
    max_seconds: float = 600.0           # wall time of one expansion

    def __post_init__(self) -> None:
        for name in ("max_total_bytes", "max_members", "max_depth", "max_ratio",
                     "max_name_length", "max_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, not {getattr(self, name)!r}")
        if self.ratio_grace_bytes < 0:
            raise ValueError("Limits.ratio_grace_bytes must not be negative")


@dataclass(frozen=True)
class Member:
    """A member of an archive, as extracted or as refused.

    ``name`` is its path inside the archive as text, nested archives included
    (``shots/inner.tar/a.png``); undecodable bytes are shown as ``\\xNN``. ``path`` is the
    extracted file (inside the expansion's private folder) or None when ``error`` says why it
    was not extracted. ``size`` is the number of bytes written, or the size the archive declares
    when nothing was. ``archive`` is True for a nested archive whose members follow it.
    """

    name: str
    path: str | None
    size: int
    error: str | None = None
    archive: bool = False


# -- recognising -----------------------------------------------------------------------------

def archive_kind(path: str | os.PathLike[str]) -> str | None:
    """``zip``, ``tar``, ``7z``, ``gzip``, ``bzip2``, ``xz``, ``zstd``, ``rar`` from the file's
    first bytes, or None: not an archive, or not a regular file that can be read (the normal
    read of the file reports that). A compressed stream is an archive whether it holds a tar or
    a single file."""
    try:
        with _open_read(os.fspath(path)) as f:
            return sniff(f.read(512))
    except (OSError, ArchiveError):
        return None


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether the file is an archive by its bytes (see :func:`archive_kind`); never by name."""
    return archive_kind(path) is not None


def sniff(head: bytes) -> str | None:
    """:func:`archive_kind` from a file's first 512 bytes (a reader that has them already
    saves opening the file again)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or head[:8] == b"PK\x07\x08PK\x03\x04":
        return ZIP
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return SEVENZIP
    if head[:3] == b"\x1f\x8b\x08":
        return GZIP
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and len(head) >= 10 \
            and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return XZ
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return ZSTD
    if head[:7] == b"Rar!\x1a\x07\x00" or head[:8] == b"Rar!\x1a\x07\x01\x00":
        return RAR
    if _is_tar_header(head):
        return TAR
    return None


def _is_tar_header(block: bytes) -> bool:
    """A tar header: a valid header checksum, with the ustar magic or a v7 file name."""
    if len(block) < 512:
        return False
    try:
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"x", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 256 + sum(block[156:512])
    if stored != unsigned:      # old tars summed signed bytes
        signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:512] if b > 127)
        if stored != signed:
            return False
    return block[257:262] == b"ustar" or block[0] not in (0, 0x20)


@dataclass(frozen=True)
class Layout:
    """What a file's own bytes say it holds, whatever its name or ExifTool's file type:
    ``kind`` from its first bytes (:func:`sniff`: zip, tar, 7z...), and ``appended`` when a zip
    that does not start at its head ends it (a polyglot: media with a zip after it, which zip
    readers open from its end record). A file can be both: a tar with a zip appended."""

    kind: str | None = None
    appended: bool = False

    def __bool__(self) -> bool:
        return self.kind is not None or self.appended


def layout(path: str | os.PathLike[str]) -> Layout:
    """:func:`look` at a file: its first :data:`HEAD_BYTES` and last :data:`TAIL_BYTES` (one
    read when the file is small), never through a link; a file that cannot be read holds
    nothing (the normal read of the file reports why)."""
    try:
        with _open_read(os.fspath(path)) as f:
            return layout_fd(f.fileno())
    except (OSError, ArchiveError):
        return Layout()


def layout_fd(fd: int) -> Layout:
    """:func:`layout` of a file open for reading (a reader that has just hashed it: the bytes
    are in the page cache). Raises OSError."""
    size = os.fstat(fd).st_size
    if size <= HEAD_BYTES + TAIL_BYTES:
        data = os.pread(fd, size, 0)
        return look(data[:HEAD_BYTES], data)
    head = os.pread(fd, HEAD_BYTES, 0)
    tail = os.pread(fd, TAIL_BYTES, size - TAIL_BYTES)
    return look(head, tail, size - TAIL_BYTES, lambda at, n: os.pread(fd, n, at))


def look(head: bytes, tail: bytes, tail_at: int = 0,
         read_at: Callable[[int, int], bytes] | None = None) -> Layout:
    """:func:`layout` from bytes a reader has already: ``head``, the file's first bytes (512
    are enough), and ``tail``, its last :data:`TAIL_BYTES` or more (the whole file when it is
    small), which starts at byte ``tail_at``. ``read_at(offset, n)`` reads before the tail
    (a central directory longer than it); without it only the tail is looked at."""
    kind = sniff(head)
    return Layout(kind, kind != ZIP and zip_end(tail, tail_at, read_at) is not None)


def zip_end(tail: bytes, tail_at: int = 0,
            read_at: Callable[[int, int], bytes] | None = None) -> int | None:
    """The offset of a zip end-of-central-directory record in the last :data:`TAIL_BYTES` of
    ``tail`` (a file's last bytes or more, the whole file when it is in memory, starting at
    byte ``tail_at``) that points at a central directory holding something (or at a Zip64
    end record), or None.

    Zip readers take the last end signature; any valid one counts here, so a file some reader
    could open as a zip is always expanded (and held unreadable when ``zipfile`` cannot). Past
    :data:`_MAX_END_CANDIDATES` signatures the last is returned: the expansion decides."""

    def get(at: int, n: int) -> bytes:
        if at >= tail_at:
            return tail[at - tail_at:at - tail_at + n]
        return read_at(at, n) if read_at is not None and at >= 0 else b""

    lowest = max(0, len(tail) - TAIL_BYTES)      # where zip readers look; the rest is for get()
    end, seen = len(tail), 0
    while (i := tail.rfind(_END, lowest, end)) >= 0:
        end, seen = i, seen + 1
        at = tail_at + i
        if seen > _MAX_END_CANDIDATES:
            return tail_at + tail.rfind(_END, lowest)
        rec = tail[i:i + 22]
        if len(rec) < 22:
            continue
        cd_size, cd_offset = struct.unpack_from("<2L", rec, 12)
        if at >= 20 and get(at - 20, 4) == _END64_LOCATOR:
            return at
        if cd_size == 0:          # zipfile reads entries for cd_size bytes: an empty zip
            continue
        for cd in (at - cd_size, cd_offset):     # appended (zipfile's "concat"), or absolute
            if 0 <= cd <= at - 4 and get(cd, 4) == _CENTRAL:
                return at
    return None


# -- expanding -------------------------------------------------------------------------------

@contextlib.contextmanager
def expanded(path: str | os.PathLike[str], limits: Limits | None = None,
             dir: str | None = None,  # noqa: A002 - tempfile's name
             appended: bool = False) -> Iterator[list[Member]]:
    """Expand the archive into a new private folder (0700, in ``dir`` or the system's temporary
    folder) that is removed, with everything in it, when the block ends. Raises
    :class:`ArchiveError` (and nothing else) when the archive cannot be opened or expanded
    within ``limits``. ``appended``: expand the zip that ends the file (:func:`layout`), not
    what its first bytes are."""
    try:
        workdir = tempfile.mkdtemp(prefix="provgate-archive-", dir=dir)
    except OSError as exc:
        raise ArchiveError(f"cannot make a folder to extract into: {_os_reason(exc)}") from None
    try:
        yield extract(path, workdir, limits, appended)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def extract(path: str | os.PathLike[str], workdir: str | os.PathLike[str],
            limits: Limits | None = None, appended: bool = False) -> list[Member]:
    """Extract every member of the archive at ``path`` into ``workdir`` (an existing folder,
    not a link; best empty and private) and return them in archive order, nested archives
    expanded in place (and the zips appended to members, named ``plate.jpg/a.png``). The
    archive is only read. Nothing but :class:`ArchiveError` is raised; on it every file and
    folder this call created is removed again. ``appended``: see :func:`expanded`."""
    work = os.fspath(workdir)
    try:
        st = os.lstat(work)
    except OSError as exc:
        raise ArchiveError(f"cannot use {work!r} to extract into: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(f"cannot use {work!r} to extract into: not a folder (or a link)")
    return _Expansion(work, limits or Limits()).expand(os.fspath(path), "", 1, appended)


@dataclass
class _Level:
    """The bytes one archive has produced so far, against its own size (the archive ratio)."""

    size: int
    out: int = 0


@dataclass
class _Expansion:
    workdir: str
    limits: Limits
    total: int = 0                                 # bytes decompressed, written or skipped
    members: int = 0
    created: list[tuple[str, bool]] = field(default_factory=list)   # (path, is_folder)
    folders: dict[tuple[int, str], tuple[str, set[str]]] = field(default_factory=dict)
    archives: int = 0
    folder_count: int = 0
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.max_seconds

    # one archive --------------------------------------------------------------------------

    def expand(self, path: str, prefix: str, depth: int, appended: bool = False) -> list[Member]:
        mark = len(self.created)
        try:
            with _open_read(path) as fh:
                kind = ZIP if appended else sniff(fh.read(HEAD_BYTES))
                fh.seek(0)
                size = os.fstat(fh.fileno()).st_size
                self.archives += 1
                level, key = _Level(size), self.archives
                if kind == ZIP:
                    return self._zip(fh, prefix, depth, level, key)
                if kind == TAR:
                    return self._tar(fh, prefix, depth, level, key)
                if kind in _COMPRESSED:
                    return self._compressed(fh, kind, path, prefix, depth, level, key)
                if kind == SEVENZIP:
                    return self._7z(fh, prefix, depth, level, key)
                if kind == RAR:
                    raise ArchiveError("RAR archive: provgate cannot open RAR; deliver the files "
                                       "or a zip, tar or 7z of them")
                raise ArchiveError("not an archive (its bytes are no zip, tar, 7z or "
                                   "compressed stream)")
        except ArchiveError:
            self._rollback(mark)
            raise
        except OSError as exc:
            self._rollback(mark)
            raise ArchiveError(f"cannot read the archive: {_os_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a crafted archive must never crash the gate
            self._rollback(mark)
            raise ArchiveError(f"cannot expand the archive: {_reason(exc)}") from None

    def _zip(self, fh: IO[bytes], prefix: str, depth: int, level: _Level,
             key: int) -> list[Member]:
        # the entry count, before zipfile parses every entry into memory: the end record's,
        # and the directory's own (zipfile reads entries for as many bytes as it declares)
        entries = 0
        with contextlib.suppress(Exception):
            entries = zipfile._EndRecData(fh)[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore
        left = self.limits.max_members - self.members
        if entries > left or _zip_directory_entries(fh, left) > left:
            raise _Exhausted(f"zip bomb: more than {self.limits.max_members} members "
                             f"({max(entries, left + 1)})")
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, IndexError,
                NotImplementedError, OSError) as exc:
            raise ArchiveError(f"truncated or corrupt zip: {exc}") from None
        with zf:
            self._count(len(zf.infolist()))
            self._zip_layout(fh, zf)
            # not ZipInfo.is_dir(): an empty name raises IndexError there
            infos = [i for i in zf.infolist() if not i.filename.endswith("/")]
            declared = sum(i.file_size for i in infos)
            self._declared(declared, level)
            out: list[Member] = []
            for info in infos:
                name = prefix + _clean(info.filename)
                reason = self._refused_name(_clean(info.filename)) or _zip_refused(info)
                if not reason and info.file_size > self.limits.ratio_grace_bytes \
                        and info.file_size > self.limits.max_ratio * max(info.compress_size, 1):
                    reason = (f"zip bomb: member declares {info.file_size} bytes from "
                              f"{info.compress_size} (more than {self.limits.max_ratio:g}x)")
                if reason:
                    out.append(Member(self._shown(name), None, info.file_size, reason))
                    continue
                dest = self._dest(key, _clean(info.filename))
                try:
                    with _zip_member(zf, info) as src:
                        n = self._copy(src, dest, level, info.compress_size)
                except _MemberBomb as exc:
                    self._discard(dest)
                    out.append(Member(self._shown(name), None, info.file_size, str(exc)))
                    continue
                except ArchiveError:
                    self._discard(dest)
                    raise
                except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError...
                    self._discard(dest)
                    out.append(Member(self._shown(name), None, info.file_size,
                                      f"corrupt member: {exc}"))
                    continue
                self._settle(out, name, dest, n, depth)
            return out

    def _zip_layout(self, fh: IO[bytes], zf: zipfile.ZipFile) -> None:
        """Every byte from the zip's first entry to its central directory belongs to an entry
        the directory lists: its local header, data and data descriptor, in order, none
        overlapping. A streaming reader (Java's ZipInputStream, ingest tools) walks the local
        headers from the start of the file; ``zipfile`` and ``unzip`` read the directory; a
        member only one of them sees is refused, as is anything else between the entries.
        The zip starts at byte 0 when a local header is there (what a streaming reader reads),
        else at its first listed entry (a polyglot: what comes before is the host file).
        One or two small reads per entry (the entries are already counted and bounded)."""
        fd = fh.fileno()
        start_dir = getattr(zf, "start_dir", None)
        if not isinstance(start_dir, int):       # pragma: no cover - zipfile always sets it
            raise ArchiveError("corrupt zip: no central directory")
        first: dict[int, zipfile.ZipInfo] = {}
        for info in zf.infolist():               # two names for one entry: the same bytes
            first.setdefault(info.header_offset, info)
        offsets = sorted(first)
        head = os.pread(fd, 8, 0)
        if head[:4] == _LOCAL:
            pos = 0
        elif head == _DESCRIPTOR + _LOCAL:       # a spanned archive's marker, then entries
            pos = 4
        else:
            pos = offsets[0] if offsets else start_dir
        for i, at in enumerate(offsets):
            if time.monotonic() > self.deadline:
                raise _Exhausted("expanding the archive took longer than "
                                 f"{self.limits.max_seconds:g} s")
            if at != pos:
                raise ArchiveError(_zip_gap(fd, pos, at))
            info = first[at]
            local = os.pread(fd, 30, at)
            if len(local) < 30 or local[:4] != _LOCAL:
                raise ArchiveError(f"corrupt zip: the central directory puts entry "
                                   f"{_text(info.filename)!r} at byte {at}, where no local "
                                   "header is")
            flags, = struct.unpack_from("<H", local, 6)
            name_len, extra_len = struct.unpack_from("<2H", local, 26)
            pos = at + 30 + name_len + extra_len + info.compress_size
            if (flags | info.flag_bits) & 0x08:  # a data descriptor follows the data
                nxt = offsets[i + 1] if i + 1 < len(offsets) else start_dir
                sizes = (16, 24) if os.pread(fd, 4, pos) == _DESCRIPTOR else (12, 20)
                pos += next((n for n in (*sizes, 0) if pos + n == nxt), sizes[0])
        if pos != start_dir:
            raise ArchiveError(_zip_gap(fd, pos, start_dir))

    def _tar(self, fh: IO[bytes], prefix: str, depth: int, level: _Level, key: int,
             what: str = "tar") -> list[Member]:
        out: list[Member] = []
        try:
            # stream mode: one pass, whatever compression lies under it
            tf = tarfile.open(fileobj=fh, mode="r|", errorlevel=2, tarinfo=_TarInfo)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
            raise ArchiveError(_corrupt(what, exc)) from None
        with tf:
            try:
                for info in tf:
                    self._count(1)
                    if info.isdir():
                        continue
                    inside = _clean(_text(info.name))
                    name = prefix + inside
                    # a compressed tar is decompressed through every member, extracted or not
                    if self.total + info.size > self.limits.max_total_bytes:
                        raise _ArchiveBomb(
                            f"zip bomb: member {self._shown(name)!r} declares {info.size} bytes, "
                            f"past the limit of {self.limits.max_total_bytes} in total")
                    reason = self._refused_name(inside) or _tar_refused(info)
                    if reason:
                        out.append(Member(self._shown(name), None, info.size, reason))
                        self._charge(info.size, level)
                        continue
                    dest = self._dest(key, inside)
                    src = tf.extractfile(info)
                    if src is None:       # pragma: no cover - every regular member has data
                        raise ArchiveError(f"tar member {name!r} has no data")
                    with src:                       # no member ratio: no _MemberBomb
                        n = self._copy(src, dest, level, None)
                    self._settle(out, name, dest, n, depth)
            except ArchiveError:
                raise
            except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError,
                    ValueError) as exc:
                raise ArchiveError(_corrupt(what, exc)) from None
        return out

    def _compressed(self, fh: IO[bytes], kind: str, path: str, prefix: str, depth: int,
                    level: _Level, key: int) -> list[Member]:
        """A gzip/bzip2/xz/zstd stream: a tar inside it, or a single compressed file."""
        what = {GZIP: "tar.gz", BZIP2: "tar.bz2", XZ: "tar.xz", ZSTD: "tar.zst"}[kind]
        try:
            with _decompressor(kind, fh) as peek:
                head = peek.read(512)
        except (EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
            raise ArchiveError(f"truncated or corrupt {kind} stream: {exc}") from None
        fh.seek(0)
        with _decompressor(kind, fh) as stream:
            if _is_tar_header(head):
                return self._tar(stream, prefix, depth, level, key, what)
            self._count(1)
            inside = _inner_name(kind, fh, path)
            name = prefix + inside
            dest = self._dest(key, inside)
            try:
                n = self._copy(stream, dest, level, None)
            except (EOFError, zlib.error, lzma.LZMAError, OSError, ValueError) as exc:
                raise ArchiveError(f"truncated or corrupt {kind} stream: {exc}") from None
            out: list[Member] = []
            self._settle(out, name, dest, n, depth)
            return out

    def _7z(self, fh: IO[bytes], prefix: str, depth: int, level: _Level,
            key: int) -> list[Member]:
        try:
            import py7zr
            from py7zr.io import Py7zIO, WriterFactory
        except ImportError:
            raise ArchiveError("7z not supported: py7zr is not installed "
                               "(pip install py7zr); unreadable") from None
        try:
            sz = py7zr.SevenZipFile(fh, mode="r")
        except py7zr.PasswordRequired:
            raise ArchiveError("encrypted 7z: its file list is password protected") from None
        except ArchiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt header raises anything
            raise ArchiveError(f"truncated or corrupt 7z: {_reason(exc)}") from None
        out: list[Member] = []
        with sz:
            self._count(len(sz.files))
            files = [f for f in sz.files if not f.is_directory]
            self._declared(sum(f.uncompressed for f in files), level)
            encrypted = sz.needs_password()
            wanted: dict[str, tuple[str, Any]] = {}      # py7zr's output name -> (name, file)
            refused: dict[int, Member] = {}
            for i, f in enumerate(files):
                inside = _clean(f.filename)
                name = prefix + inside
                reason = self._refused_name(inside) or _7z_refused(f) or \
                    ("encrypted member not extracted (password protected)" if encrypted else None)
                if reason:
                    refused[i] = Member(self._shown(name), None, f.uncompressed, reason)
                else:
                    wanted[str(PurePosixPath(*[p for p in PurePosixPath(inside).parts
                                                if p != "."]))] = (name, f)
            written: dict[str, tuple[str, int]] = {}    # name -> (dest, bytes)
            expansion = self

            class Sink(Py7zIO):
                def __init__(self, name: str, dest: str) -> None:
                    self.name, self.dest, self.n = name, dest, 0
                    self.fd = expansion._create(dest)

                def write(self, s: bytes | bytearray) -> int:
                    self.n += len(s)
                    expansion._check(self.n, len(s), level, None)
                    expansion._write(self.fd, s)
                    return len(s)

                def read(self, size: int | None = None) -> bytes:
                    return b""

                def seek(self, offset: int, whence: int = 0) -> int:
                    return 0

                def seekable(self) -> bool:
                    return False

                def flush(self) -> None:
                    return None

                def size(self) -> int:
                    return self.n

                def close(self) -> None:
                    if self.fd >= 0:
                        os.close(self.fd)
                        self.fd = -1
                        written[self.name] = (self.dest, self.n)

            sinks: list[Sink] = []

            class Factory(WriterFactory):
                def create(self, filename: str) -> Py7zIO:
                    rel = os.path.relpath(filename, expansion.workdir).replace(os.sep, "/")
                    name = wanted.get(rel, (prefix + rel, None))[0]
                    sink = Sink(name, expansion._dest(key, name[len(prefix):]))
                    sinks.append(sink)
                    return sink

            if wanted:
                try:
                    sz.extract(path=self.workdir, targets=[f.filename for _, f in wanted.values()],
                               factory=Factory())
                except ArchiveError:
                    raise
                except py7zr.PasswordRequired:
                    raise ArchiveError("encrypted 7z: password protected") from None
                except Exception as exc:  # noqa: BLE001 - corrupt data raises anything
                    raise ArchiveError(f"truncated or corrupt 7z: {_reason(exc)}") from None
                finally:
                    for sink in sinks:
                        if sink.fd >= 0:
                            os.close(sink.fd)
                            sink.fd = -1
            for i, f in enumerate(files):
                if i in refused:
                    out.append(refused[i])
                    continue
                name = prefix + _clean(f.filename)
                if name in written:
                    dest, n = written.pop(name)
                    self._settle(out, name, dest, n, depth)
                else:
                    out.append(Member(self._shown(name), None, f.uncompressed,
                                      "member not extracted by the 7z reader"))
            for name, (dest, n) in written.items():    # duplicate names py7zr renamed
                self._settle(out, name, dest, n, depth)
        return out

    # members ------------------------------------------------------------------------------

    def _settle(self, out: list[Member], name: str, dest: str, n: int, depth: int) -> None:
        """A member written to ``dest``: a file to judge, or a nested archive to expand; and
        a zip appended to it (a polyglot), whose members follow it, named ``name/...``."""
        found = layout(dest)
        if found.kind is None:
            out.append(Member(self._shown(name), dest, n))       # media: judged as a file
        elif not self._nested(out, name, dest, n, depth, False):
            return                                               # refused, and discarded
        if found.appended:
            self._nested(out, name, dest, n, depth, True)

    def _nested(self, out: list[Member], name: str, dest: str, n: int, depth: int,
                appended: bool) -> bool:
        """Expand the archive ``dest`` (or the zip appended to it) one level down; False when
        it was refused (its member says why)."""
        shown = self._shown(name + " (appended zip)" if appended else name)
        # a refused head archive is discarded; a polyglot's host stays, judged as media
        if depth >= self.limits.max_depth:
            if not appended:
                self._discard(dest)
            out.append(Member(shown, None, n,
                              f"zip bomb: archives nested deeper than {self.limits.max_depth} "
                              "levels are not expanded"))
            return False
        try:
            inner = self.expand(dest, name + "/", depth + 1, appended)
        except _Exhausted:
            raise
        except ArchiveError as exc:
            if not appended:
                self._discard(dest)
            out.append(Member(shown, None, n, str(exc)))
            return False
        if not appended:
            out.append(Member(shown, dest, n, archive=True))
        out.extend(inner)
        return True

    def _refused_name(self, name: str) -> str | None:
        if not name or name in (".", "/"):
            return "path traversal: empty member name, not extracted"
        if "\0" in name:
            return "path traversal: NUL in member name, not extracted"
        if len(name) > self.limits.max_name_length:
            return f"member name longer than {self.limits.max_name_length} characters, not extracted"
        if name[0] in "/\\" or _DRIVE.match(name):
            return "path traversal: absolute member name, not extracted"
        if ".." in re.split(r"[/\\]", name):
            return "path traversal: '..' in member name, not extracted"
        return None

    def _shown(self, name: str) -> str:
        limit = self.limits.max_name_length * (self.limits.max_depth + 1)
        return name if len(name) <= limit else name[:limit] + "…"

    # writing ------------------------------------------------------------------------------

    def _dest(self, key: int, inside: str) -> str:
        """A new file in the private folder for member ``inside`` of archive ``key``: one
        generated folder per member folder, the member's own file name when it is plain."""
        folder, _, base = inside.replace("\\", "/").rpartition("/")
        entry = self.folders.get((key, folder))
        if entry is None:
            while True:        # a new folder: the workdir may hold an earlier expansion's
                self.folder_count += 1
                path = os.path.join(self.workdir, f"{self.folder_count:05d}")
                try:
                    os.mkdir(path, 0o700)
                    break
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise _Exhausted(f"cannot extract into {self.workdir}: "
                                     f"{_os_reason(exc)}") from None
            self.created.append((path, True))
            entry = self.folders[(key, folder)] = (path, set())
        path, used = entry
        suffix = _SUFFIX.fullmatch(os.path.splitext(base)[1])
        if not _SAFE_NAME.fullmatch(base) or base.casefold() in used:
            base = f"member-{len(used) + 1}{suffix.group() if suffix else ''}"
        used.add(base.casefold())
        return os.path.join(path, base)

    def _create(self, dest: str) -> int:
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
        except OSError as exc:
            raise _Exhausted(f"cannot extract into {self.workdir}: {_os_reason(exc)}") from None
        self.created.append((dest, False))
        return fd

    def _write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            raise _Exhausted(f"cannot extract into {self.workdir}: {_os_reason(exc)}") from None

    def _copy(self, src: IO[bytes], dest: str, level: _Level, compressed: int | None) -> int:
        """Stream ``src`` into the new file ``dest``, checking the limits before every write."""
        fd = self._create(dest)
        n = 0
        try:
            while chunk := src.read(_CHUNK):
                n += len(chunk)
                self._check(n, len(chunk), level, compressed)
                self._write(fd, chunk)
        finally:
            os.close(fd)
        return n

    def _check(self, n: int, chunk: int, level: _Level, compressed: int | None) -> None:
        """``chunk`` more bytes of a member now ``n`` bytes long: within the limits?"""
        lim = self.limits
        if compressed is not None and n > lim.ratio_grace_bytes \
                and n > lim.max_ratio * max(compressed, 1):
            raise _MemberBomb(f"zip bomb: member expands more than {lim.max_ratio:g}x "
                              f"({compressed} compressed bytes gave over {n})")
        self._charge(chunk, level)

    def _charge(self, n: int, level: _Level) -> None:
        lim = self.limits
        self.total += n
        level.out += n
        if self.total > lim.max_total_bytes:
            raise _Exhausted(f"zip bomb: more than {lim.max_total_bytes} bytes uncompressed")
        if level.out > lim.ratio_grace_bytes and level.out > lim.max_ratio * max(level.size, 1):
            raise _ArchiveBomb(f"zip bomb: the archive expands more than {lim.max_ratio:g}x "
                               f"({level.size} bytes gave over {level.out})")
        if time.monotonic() > self.deadline:
            raise _Exhausted(f"expanding the archive took longer than {lim.max_seconds:g} s")

    def _count(self, n: int) -> None:
        self.members += n
        if self.members > self.limits.max_members:
            raise _Exhausted(f"zip bomb: more than {self.limits.max_members} members")

    def _declared(self, declared: int, level: _Level) -> None:
        """What the headers declare, checked before anything is expanded."""
        lim = self.limits
        if self.total + declared > lim.max_total_bytes:
            raise _ArchiveBomb(f"zip bomb: the archive declares {declared} bytes uncompressed, "
                               f"past the limit of {lim.max_total_bytes}")
        if declared > lim.ratio_grace_bytes and declared > lim.max_ratio * max(level.size, 1):
            raise _ArchiveBomb(f"zip bomb: the archive declares {declared} bytes uncompressed "
                               f"from {level.size} (more than {lim.max_ratio:g}x)")

    def _discard(self, dest: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(dest)

    def _rollback(self, mark: int) -> None:
        """Remove what was created since ``mark``, newest first (files before their folders)."""
        while len(self.created) > mark:
            path, folder = self.created.pop()
            with contextlib.suppress(OSError):
                if folder:
                    shutil.rmtree(path)
                else:
                    os.unlink(path)


# -- helpers ---------------------------------------------------------------------------------

def _open_read(path: str) -> IO[bytes]:
    """The file, read-only, never through a link, never blocking on a FIFO; regular files only."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArchiveError("not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def _decompressor(kind: str, fh: IO[bytes]) -> Iterator[IO[bytes]]:
    if kind == GZIP:
        stream: IO[bytes] = gzip.GzipFile(fileobj=fh, mode="rb")
    elif kind == BZIP2:
        stream = bz2.BZ2File(fh, mode="rb")
    elif kind == XZ:
        stream = lzma.LZMAFile(fh, mode="rb")
    else:
        stream = _zstd_reader(fh)
    with stream:
        yield stream


def _zstd_reader(fh: IO[bytes]) -> IO[bytes]:
    for module in ("compression.zstd", "backports.zstd"):     # Python 3.14, or its backport
        with contextlib.suppress(ImportError):
            zstd: Any = __import__(module, fromlist=["ZstdFile"])
            return zstd.ZstdFile(fh, mode="rb")
    raise ArchiveError("zstd not supported: no zstd library (pip install backports.zstd); "
                       "unreadable")


def _inner_name(kind: str, fh: IO[bytes], path: str) -> str:
    """The name of the single file in a compressed stream: gzip's stored name, else the
    archive's name without its compression suffix."""
    if kind == GZIP:
        fh.seek(0)
        head = fh.read(10 + 2 + 65536 + 1024)
        fh.seek(0)
        flags, pos = head[3], 10
        if flags & 0x04 and len(head) >= 12:                   # FEXTRA
            pos += 2 + int.from_bytes(head[10:12], "little")
        if flags & 0x08:                                       # FNAME, NUL-terminated
            end = head.find(b"\0", pos)
            if end > pos:
                stored = head[pos:end].decode("latin-1").replace("\\", "/").rpartition("/")[2]
                if stored not in ("", ".", ".."):
                    return stored
    base = os.path.basename(path)
    stem, suffix = os.path.splitext(base)
    if suffix.lower() in (".gz", ".gzip", ".bz2", ".xz", ".zst", ".z") and stem:
        return stem
    return base + ".data"


@contextlib.contextmanager
def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[IO[bytes]]:
    """The member's bytes. zipfile bounds what one read of a deflated member gives, but hands a
    bzip2 or LZMA member's whole compressed read to the decompressor, and a megabyte of a bomb
    is gigabytes: those are read raw and decompressed here, at most a read's worth at a time."""
    if info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with zf.open(info) as src:
            yield src
        return
    raw = copy.copy(info)
    raw.compress_type, raw.file_size = zipfile.ZIP_STORED, info.compress_size
    del raw.CRC                          # checked on the decompressed bytes below
    with zf.open(raw) as src:
        yield _ZipInflater(src, info)


class _ZipInflater:
    """A bzip2 or LZMA zip member, decompressed with ``max_length``, its CRC and size checked."""

    def __init__(self, raw: IO[bytes], info: zipfile.ZipInfo) -> None:
        self.raw, self.info = raw, info
        self.crc = self.n = 0
        self.dec: Any = bz2.BZ2Decompressor() if info.compress_type == zipfile.ZIP_BZIP2 else None
        self.done = False

    def _lzma(self) -> Any:
        # zip's LZMA: version (2 bytes), properties size (2), properties (lc/lp/pb, dictionary)
        head = self.raw.read(4)
        props = self.raw.read(int.from_bytes(head[2:4], "little")) if len(head) == 4 else b""
        if len(props) < 5:
            raise zipfile.BadZipFile("LZMA member without its properties")
        lc, rest = props[0] % 9, props[0] // 9
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
            "id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
            "dict_size": int.from_bytes(props[1:5], "little")}])

    def read(self, n: int = _CHUNK) -> bytes:
        if self.dec is None:
            self.dec = self._lzma()
        while not self.done:
            data = b""
            if not self.dec.eof and self.dec.needs_input:
                data = self.raw.read(1 << 16)
                if not data:
                    self._finish()
                    break
            out = self.dec.decompress(data, max_length=n) if not self.dec.eof else b""
            if out:
                self.n += len(out)
                self.crc = zlib.crc32(out, self.crc)
                return out
            if self.dec.eof:
                self._finish()
        return b""

    def _finish(self) -> None:
        self.done = True
        if self.crc != self.info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self.info.filename!r}")
        if self.n != self.info.file_size:
            raise zipfile.BadZipFile(f"{self.info.filename!r} is {self.n} bytes, its header "
                                     f"says {self.info.file_size}")


def _zip_refused(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode):          # made on Unix: a file type
        if stat.S_ISLNK(mode):
            return "symlink member not extracted"
        if not stat.S_ISREG(mode):
            return "special file member (device, FIFO or socket) not extracted"
    if info.flag_bits & 0x1:
        return "encrypted member not extracted (password protected)"
    if info.compress_type not in _ZIP_METHODS:
        method = zipfile.compressor_names.get(info.compress_type, str(info.compress_type))
        return f"unsupported compression method {method}, not extracted"
    return None


class _TarInfo(tarfile.TarInfo):
    """tarfile reads a long-name or pax header's data into memory whatever size it declares:
    a header bomb. Those headers are refused past a size no honest archive comes near."""

    MAX_HEADER_DATA = 8 << 20

    def _proc_member(self, tf: Any) -> Any:
        if self.type in _TAR_META and self.size > self.MAX_HEADER_DATA:
            raise tarfile.ReadError(f"zip bomb: a tar header declares {self.size} bytes of "
                                    "names or attributes")
        return super()._proc_member(tf)


_TAR_META = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
             tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


def _tar_refused(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return f"symlink member not extracted (points to {_text(info.linkname)!r})"
    if info.islnk():
        return (f"hardlink member not extracted (a link to {_text(info.linkname)!r}; "
                "re-create the archive with tar --hard-dereference)")
    if info.ischr() or info.isblk():
        return "device member not extracted"
    if info.isfifo():
        return "FIFO member not extracted"
    if not info.isreg():
        return f"special member (tar type {info.type!r}) not extracted"
    return None


def _7z_refused(f: Any) -> str | None:
    if f.is_symlink or f.is_junction:
        return "symlink member not extracted"
    if f.is_socket or (f.st_fmt not in (None, 0) and not stat.S_ISREG(f.st_fmt)):
        return "special file member (device, FIFO or socket) not extracted"
    return None


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _text(name: str) -> str:
    """A member name as text: undecodable bytes (tar keeps them as surrogates) as ``\\xNN``."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _zip_directory_entries(fh: IO[bytes], most: int) -> int:
    """How many entries the zip's central directory holds, counted as zipfile will read it
    (for the bytes its end record declares), up to ``most`` + 1; 0 when there is none to
    count (zipfile then says what is wrong)."""
    try:
        end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - zipfile says what is wrong when it opens the file
        return 0
    if not end:
        return 0
    size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]  # type: ignore
    start = end[zipfile._ECD_LOCATION] - size  # type: ignore[attr-defined]
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore
    if start < 0 or offset < 0:
        return 0
    fh.seek(start)
    count = total = 0
    while total < size and count <= most:
        header = fh.read(46)
        if len(header) < 46 or header[:4] != _CENTRAL:
            break
        n, m, k = struct.unpack_from("<3H", header, 28)
        fh.seek(n + m + k, os.SEEK_CUR)
        total += 46 + n + m + k
        count += 1
    return count


def _zip_gap(fd: int, pos: int, at: int) -> str:
    """Why the zip's entries do not reach byte ``at`` exactly from ``pos``."""
    if at < pos:
        return (f"corrupt zip: its entries overlap (byte {at} lies inside the entry before it); "
                "refused")
    if os.pread(fd, 4, pos) == _LOCAL:
        return (f"zip with a hidden entry: a local header at byte {pos} that its central "
                "directory does not list (zip readers that stream the file extract it); refused")
    return f"zip with {at - pos} unexplained bytes at byte {pos}, between its entries; refused"


def _corrupt(what: str, exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith("zip bomb") else f"truncated or corrupt {what}: {text}"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device (set TMPDIR to a larger disk)"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link (not followed)"
    return exc.strerror or str(exc)

