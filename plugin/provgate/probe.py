"""ExifTool pool: the only module that talks to ExifTool.

pyexiftool keeps ExifTool processes open (``-stay_open``); this module adds what a gate on
delivery storage needs on top of it (FIELD-NOTES.md):

- a deadline on every call, after which the process is killed and restarted and the batch is
  split in halves until the file that hangs is isolated (pyexiftool has no timeout);
- stdout and stderr drained together, so a long error text cannot deadlock the pipe;
- names that ExifTool could misread (control characters, trailing blanks, bytes that are not
  UTF-8) are read through a private symlink with a plain name; every path is absolute, so no
  name can ever be taken for an option;
- one bad file never fails the batch: results are matched to inputs by ``SourceFile``;
- ``-fast`` stops ExifTool at a WAV's audio (an AVI's movie) data and after a GIF's first
  comment: a file whose RIFF holds chunks after its media (LIST INFO, ``id3 ``, Adobe's
  ``_PMX`` XMP), or a GIF with a comment, is read again without it;
- a file ExifTool reads with a truncation or corruption warning, or whose end a bounded check
  finds cut short, carries that finding as ``damage`` (signatures.toml ``[integrity]``).
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import os
import queue
import re
import shutil
import stat
import struct
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provgate import data
from provgate.errors import ConfigError, ExifToolUnavailable

if TYPE_CHECKING:
    from provgate.process import Process

MIN_VERSION = (12, 15)
# -G3:1 keeps every copy of a repeated tag, keyed by document (SIGNALS.md 3.3): the JSON
# output otherwise drops all but the first manifest.
COMMON_ARGS = ["-json", "-G3:1", "-a", "-n", "-q", "-charset", "filename=utf8",
               "-api", "largefilesupport=1"]
# every first read: -fast spares preallocated and large files a scan to their end (-fast2 is
# not safe). It is not a common argument because common ones come last and cannot be undone:
# the files -fast reads short (a RIFF's chunks after its media data, a GIF's blocks after its
# first comment) are read again without it.
FAST_ARGS = ["-fast"]
ALWAYS_TAGS = ["-File:FileType", "-File:MIMEType", "-ExifTool:Error", "-ExifTool:Warning"]
_DOC_PREFIX = re.compile(r"^(Main|Doc[0-9-]+):")


class ProbeTimeout(Exception):
    """ExifTool did not answer in time."""


class ProbeCrashed(Exception):
    """The ExifTool process died or closed its pipes."""


@dataclass(frozen=True)
class Metadata:
    """What ExifTool read from one file: ``tags`` maps ``[DocN:]Group:Tag`` to a value."""

    path: str
    tags: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    # read, but not whole: a truncation or corruption warning, or a structural check's finding
    damage: str | None = None

    @property
    def file_type(self) -> str | None:
        return self.tags.get("File:FileType")


def plain_key(key: str) -> str:
    """A tag key without its document prefix (``Doc1:XMP-dc:Creator``: ``XMP-dc:Creator``)."""
    # most keys have none: the regex only for those that may
    return _DOC_PREFIX.sub("", key) if key.startswith("Doc") else key


def find_exiftool(executable: str | None = None) -> str:
    """Locate ExifTool: the given path, ``PROVGATE_EXIFTOOL``, or the PATH."""
    name = executable or os.environ.get("PROVGATE_EXIFTOOL") or "exiftool"
    found = shutil.which(name)
    if not found:
        raise ExifToolUnavailable(
            f"ExifTool not found ({name}): install it (Debian/Ubuntu: apt-get install "
            "libimage-exiftool-perl; macOS: brew install exiftool) or set PROVGATE_EXIFTOOL")
    return found


def _needs_alias(path: str) -> bool:
    """Names ExifTool's argument file cannot carry verbatim (FIELD-NOTES: pyexiftool pitfalls)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return _CONTROL.search(path) is not None or path != path.rstrip()


_CONTROL = re.compile("[\x00-\x1f\x7f]")


class ExifToolPool:
    """A fixed set of kept-open ExifTool processes that read batches of files in parallel.

    ``tags`` are ExifTool tag arguments (``-PNG:all``, ...), or None for every tag.
    Use as a context manager; ``probe()`` may be called many times.
    """

    def __init__(self, tags: Sequence[str] | None, processes: int | None = None, timeout: float = 30.0,
                 batch_size: int = 64, executable: str | None = None,
                 config: str | None = None, integrity: Integrity | None = None) -> None:
        self.executable = find_exiftool(executable)
        # how to tell a damaged file: a catalogue's ``[integrity]``, by default the built-in one
        self.integrity = integrity or Integrity.builtin()
        # a facility's own ExifTool config (user-defined tags), as ``exiftool -config``
        self.config = config or os.environ.get("PROVGATE_EXIFTOOL_CONFIG") or None
        # None: every tag (see pipeline.Gate.pool for why that is the faster choice)
        self.tag_args = ([] if tags is None else
                         [t.encode() for t in dict.fromkeys([*ALWAYS_TAGS, *tags])])
        self.timeout = timeout
        self.batch_size = max(1, batch_size)
        self.processes = max(1, processes or os.cpu_count() or 1)
        self._idle: queue.Queue[Process] = queue.Queue()
        self._all: list[Process] = []
        self._alias_dir = tempfile.mkdtemp(prefix="provgate-alias-")
        self._alias_seq = itertools.count()
        self._alias_lock = threading.Lock()
        self.restarts = 0
        self.version = ""
        # pyexiftool asks the kernel to end ExifTool when the *thread* that started it ends
        # (PR_SET_PDEATHSIG): every start and restart happens in threads the pool owns, which
        # live as long as the pool; the processes start together.
        self._spawner = ThreadPoolExecutor(self.processes, thread_name_prefix="provgate-exiftool")
        starts = [self._spawner.submit(self._start) for _ in range(self.processes)]
        try:
            for fut in starts:
                proc = fut.result()
                self._all.append(proc)
                self._idle.put(proc)
        except BaseException:
            for fut in starts:
                if fut.exception() is None:
                    self._all.append(fut.result())
            self.close()
            raise

    def _start(self) -> Process:
        """Start one ExifTool; its version is read by pyexiftool under our deadline."""
        from provgate.process import Process  # pyexiftool: only a run that reads files

        try:  # a config file that is not there fails here, before anything runs
            proc = Process(executable=self.executable, common_args=COMMON_ARGS,
                           config_file=self.config)
            proc.run()
        except Exception as exc:  # pyexiftool raises several kinds here
            raise ExifToolUnavailable(f"ExifTool at {self.executable} did not start: {exc}") from exc
        parts = tuple(int(p) for p in re.findall(r"\d+", proc.version)[:2])
        if parts < MIN_VERSION:
            proc.stop()
            raise ExifToolUnavailable(
                f"ExifTool {proc.version} is too old: provgate needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer (apt-get install "
                "libimage-exiftool-perl)")
        self.version = proc.version
        return proc

    def __enter__(self) -> ExifToolPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._all:
            proc.stop()
        self._all.clear()
        self._spawner.shutdown(wait=True)
        shutil.rmtree(self._alias_dir, ignore_errors=True)

    def probe(self, paths: Sequence[str]) -> dict[str, Metadata]:
        """Read every path; the result has one Metadata per input path, never fewer."""
        batches = [list(paths[i:i + self.batch_size])
                   for i in range(0, len(paths), self.batch_size)]
        results: dict[str, Metadata] = {}
        if len(batches) <= 1 or self.processes == 1:
            for batch in batches:
                results.update(self._probe_batch(batch))
            return results
        with ThreadPoolExecutor(max_workers=self.processes) as ex:
            for part in ex.map(self._probe_batch, batches):
                results.update(part)
        return results

    def _probe_batch(self, paths: list[str]) -> dict[str, Metadata]:
        """Read a batch; on a hang or crash ExifTool is restarted and the batch split until
        the culprit is alone."""
        try:
            found = self._read(paths, _FAST)
            again = [p for p in paths if _read_short(p, found[p])]
            if again:  # -fast stopped before the end: what follows was never read
                found.update(self._read(again))
            return found
        except (ProbeTimeout, ProbeCrashed) as exc:
            if len(paths) == 1:
                return {paths[0]: Metadata(paths[0], error=f"unreadable: {exc}")}
            mid = len(paths) // 2
            return {**self._probe_batch(paths[:mid]), **self._probe_batch(paths[mid:])}

    def _call(self, args: list[bytes]) -> bytes:
        """One ExifTool call on an idle process, held only while it reads: what it wrote is
        parsed once it is free for the next batch (it would wait otherwise)."""
        proc = self._idle.get()
        try:
            return proc.call(args, self.timeout)[0]
        except (ProbeTimeout, ProbeCrashed):
            self._restart(proc)
            raise
        finally:
            self._idle.put(proc)

    def _restart(self, proc: Process) -> None:
        proc.kill()
        self.restarts += 1
        try:
            self._spawner.submit(proc.restart).result()
        except Exception as exc:  # noqa: BLE001
            raise ExifToolUnavailable(f"ExifTool could not be restarted: {exc}") from exc

    def _read(self, paths: list[str], options: tuple[bytes, ...] = ()) -> dict[str, Metadata]:
        names = {self._argument_name(p): p for p in paths}
        try:
            out = self._call([*options, *self.tag_args, *(n.encode("utf-8") for n in names)])
        finally:
            for name, original in names.items():
                if name != original:
                    _unlink_quiet(name)
        records = json.loads(out.decode("utf-8", "replace")) if out.strip() else []
        results: dict[str, Metadata] = {}
        for rec in records:
            original = names.get(rec.pop("SourceFile", ""))
            if original is not None:
                results[original] = _to_metadata(original, rec, self.integrity)
        for original in paths:
            if original not in results:
                results[original] = Metadata(original, error=_missing_reason(original))
        return results

    def _argument_name(self, path: str) -> str:
        path = os.path.abspath(path)
        if not _needs_alias(path):
            return path
        with self._alias_lock:
            alias = os.path.join(self._alias_dir, f"a{next(self._alias_seq)}")
        ext = os.path.splitext(path)[1]
        if ext and not _needs_alias(ext) and len(ext) <= 16:
            alias += ext
        os.symlink(os.fsencode(path), alias)
        return alias


def _to_metadata(path: str, rec: dict[str, Any], integrity: Integrity | None = None) -> Metadata:
    error = rec.pop("ExifTool:Error", None) or rec.pop("Main:ExifTool:Error", None)
    warns = []
    for key in [k for k in rec if k.endswith("ExifTool:Warning")]:
        value = rec.pop(key)
        warns.extend(value if isinstance(value, list) else [value])
    tags = {k[5:] if k.startswith("Main:") else k: v for k, v in rec.items()}  # -G3:1's "Main:"
    warnings_ = tuple(str(w) for w in warns)
    damage = integrity.damage(path, tags, warnings_) if integrity and not error else None
    return Metadata(path, tags, str(error) if error else None, warnings_, damage)


# -- damaged files ---------------------------------------------------------------------------
# ExifTool reads metadata, not media: a JPEG cut in its image data, a WAV cut in its samples or
# an MP3 cut mid-frame read without a word. Where ExifTool gives no warning, one look at the
# file's two ends (a 64-byte head and ``tail_bytes`` from the end, one open, no decoding) or at
# sizes ExifTool already read says whether the file ends where its structure says it must.

_HEAD_BYTES = 64
_PDF_EOF_WINDOW = 1024  # %%EOF within the last 1024 bytes: Acrobat's rule (PDF Reference 1.7, Annex H)
_RIFF_TYPES = frozenset({"WAV", "AVI", "WEBP", "AIFF", "AIFC"})  # "WAV (RF64)", "Extended WEBP"
_PDF_BODY = re.compile(rb"\d+\s+\d+\s+obj\b|xref|trailer")


@dataclass(frozen=True)
class Integrity:
    """How to tell a damaged file: signatures.toml ``[integrity]``, compiled."""

    warnings: tuple[re.Pattern[str], ...]
    tail_bytes: int
    jpeg_trailers: tuple[re.Pattern[str], ...]
    jpeg_trailer_tags: tuple[str, ...]

    @classmethod
    @functools.cache
    def builtin(cls) -> Integrity:
        path = data.PACKAGE_DIR / "signatures.toml"
        return cls.from_doc(data.load_toml(path, "signatures", builtin=True), str(path))

    @classmethod
    def from_doc(cls, doc: dict[str, Any], where: str = "catalogue") -> Integrity:
        """From a whole catalogue document; keys its ``[integrity]`` leaves out are the
        built-in ones (a catalogue written before the section existed keeps the checks)."""
        section = doc.get("integrity", {})
        complete = set(section) >= {"warnings", "tail_bytes", "jpeg_trailers", "jpeg_trailer_tags"}
        base = None if complete else cls.builtin()

        def patterns(key: str, flags: int) -> tuple[re.Pattern[str], ...]:
            if key not in section and base is not None:
                return getattr(base, key)
            try:
                return tuple(re.compile(p, flags) for p in section.get(key, ()))
            except re.error as exc:
                raise ConfigError(f"{where}: integrity.{key}: {exc}") from exc

        return cls(
            warnings=patterns("warnings", re.IGNORECASE),
            tail_bytes=int(section.get("tail_bytes", base.tail_bytes if base else 8192)),
            jpeg_trailers=patterns("jpeg_trailers", re.DOTALL),
            jpeg_trailer_tags=tuple(t.lower() for t in section["jpeg_trailer_tags"])
            if "jpeg_trailer_tags" in section else (base.jpeg_trailer_tags if base else ()))

    def warning(self, warnings: Sequence[str]) -> str | None:
        """The first ExifTool warning that says the file is cut short or corrupt."""
        for text in warnings:
            if text.startswith(("[minor]", "[Minor]")):
                continue
            if any(p.search(text) for p in self.warnings):
                return text
        return None

    def damage(self, path: str, tags: dict[str, Any], warnings: Sequence[str]) -> str | None:
        """What says this file is damaged: an ExifTool warning, else a structural check."""
        file_type = str(tags.get("File:FileType") or "")
        riff = bool(_RIFF_TYPES.intersection(file_type.split()))
        text = self.warning(warnings)
        if text is not None and riff and _riff_trailing_bytes(path):
            text = None  # ExifTool read on into a few bytes after a whole RIFF: no damage
        if text is not None:
            return f"ExifTool warns: {text}"
        try:
            if file_type in ("TIFF", "BTF"):
                return _tiff_damage(path, tags)
            if file_type == "DPX":
                return _declared_size_damage("DPX", tags.get("File:DPXFileSize"),
                                             tags.get("System:FileSize"))
            if file_type == "JPEG":
                return self._jpeg_damage(path, tags)
            if riff:
                return _riff_damage(path)
            if file_type == "PDF":
                return _pdf_damage(path)
            if file_type == "MP3":
                return self._mp3_damage(path)
        except (ValueError, TypeError, struct.error):  # an odd value is no finding
            return None
        return None

    def _jpeg_damage(self, path: str, tags: dict[str, Any]) -> str | None:
        """A JPEG ends with its end-of-image marker (FFD9), optionally followed by padding or
        a trailer. Entropy-coded data never holds FFD9 (a data FF is followed by 00 or a
        restart marker), so an FFD9 after the last start-of-scan (FFDA) is the image's end."""
        ends = _read_ends(path, 0, self.tail_bytes)
        if ends is None or not ends[2]:
            return None
        tail = ends[1]
        eoi, sos = tail.rfind(b"\xff\xd9"), tail.rfind(b"\xff\xda")
        if eoi >= 0 and eoi > sos:
            return None
        last = tail[-64:].decode("latin-1")
        if any(p.search(last) for p in self.jpeg_trailers):
            return None
        if any(fnmatch.fnmatchcase(key.lower(), pat)
               for key in tags for pat in self.jpeg_trailer_tags):
            return None
        return (f"JPEG truncated: no end-of-image marker (FFD9) after its image data in its "
                f"last {len(tail)} bytes, and no known trailer")

    def _mp3_damage(self, path: str) -> str | None:
        """Walk the MPEG audio frames found in the tail: the last one must end at the end of
        the file (or at a tag). Only a frame that runs past the end is a finding."""
        ends = _read_ends(path, 0, self.tail_bytes)
        if ends is None:
            return None
        tail = ends[1]
        n = len(tail)
        start = tail.find(b"\xff")
        while 0 <= start < n - 3:
            # a frame whose successor is also a frame of the same stream: frames start here
            first = _mpeg_frame(tail, start)
            second = first and _mpeg_frame(tail, start + first[0])
            if first and second and second[1] == first[1]:
                pos, frames = start, 0
                while pos + 4 <= n and (frame := _mpeg_frame(tail, pos)) and frame[1] == first[1]:
                    pos += frame[0]
                    frames += 1
                if frames >= 3:
                    if pos > n:
                        return (f"MP3 truncated: its last MPEG audio frame runs {pos - n} bytes "
                                f"past the end of the file (last {n} bytes read)")
                    if pos < n < pos + 4 and tail[pos] == 0xFF:
                        return (f"MP3 truncated: it ends in the header of an MPEG audio frame "
                                f"(last {n} bytes read)")
                    return None  # the frames end with the file, or a tag follows them
            start = tail.find(b"\xff", start + 1)
        return None


def _with_file(path: str, read: Any) -> Any:
    """``read(fd, size)`` on a regular file opened read-only (never a FIFO that would block);
    None when it cannot be read (its read error is ExifTool's or the walk's to report)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        return read(fd, st.st_size) if stat.S_ISREG(st.st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_ends(path: str, head: int, tail: int) -> tuple[bytes, bytes, int] | None:
    """The first ``head`` and last ``tail`` bytes of a regular file, and its size."""
    def read(fd: int, size: int) -> tuple[bytes, bytes, int]:
        first = os.pread(fd, min(head, size), 0) if head else b""
        last = os.pread(fd, min(tail, size), size - min(tail, size)) if tail else b""
        return first, last, size
    return _with_file(path, read)


def _pdf_damage(path: str) -> str | None:
    """A PDF ends with %%EOF (readers allow some bytes after it); an incremental update cut
    short leaves its objects or xref after the previous revision's %%EOF."""
    ends = _read_ends(path, 0, _PDF_EOF_WINDOW)
    if ends is None or not ends[2]:
        return None
    tail = ends[1]
    eof = tail.rfind(b"%%EOF")
    if eof < 0:
        return f"PDF truncated: no %%EOF marker in its last {len(tail)} bytes"
    if _PDF_BODY.search(tail, eof + 5):
        return "PDF truncated: its last update (objects, xref) has no %%EOF marker"
    return None


def _declared_size_damage(form: str, declared: Any, size: Any) -> str | None:
    declared, size = int(declared or 0), int(size if size is not None else -1)
    if declared > 0 and size >= 0 and declared > size:
        return (f"{form} truncated: its header declares {declared} bytes, the file has {size} "
                f"({declared - size} missing)")
    return None


def _riff_sizes(path: str) -> tuple[str, int, int] | None:
    """RIFF (WAV, AVI, WebP), RF64/BW64 and AIFF: (form, the length its header declares,
    the file's size). None for a size of 0 or FFFFFFFF (a streaming writer's placeholder)."""
    ends = _read_ends(path, _HEAD_BYTES, 0)
    if ends is None or len(ends[0]) < 12:
        return None
    head, _tail, size = ends
    magic = head[:4]
    if magic == b"RIFF":
        declared = struct.unpack("<I", head[4:8])[0]
    elif magic in (b"RF64", b"BW64") and head[12:16] == b"ds64" and len(head) >= 28:
        declared = struct.unpack("<Q", head[20:28])[0]
    elif magic == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        declared = struct.unpack(">I", head[4:8])[0]
    else:
        return None
    if declared in (0, 0xFFFFFFFF):
        return None
    return magic.decode("ascii"), declared + 8, size


def _riff_damage(path: str) -> str | None:
    sizes = _riff_sizes(path)
    return _declared_size_damage(*sizes) if sizes else None


_FAST = tuple(a.encode() for a in FAST_ARGS)
# RIFF forms whose media data ends ExifTool's -fast read (RIFF.pm: 'data', 'idx1', 'LIST_movi')
_RIFF_MEDIA = frozenset({"WAV", "AVI"})


def _read_short(path: str, meta: Metadata) -> bool:
    """Whether -fast stopped ExifTool before metadata this file holds: chunks after a RIFF's
    media data (RIFF.pm), blocks after a GIF's first comment (GIF.pm)."""
    if meta.error:
        return False
    if meta.file_type == "GIF":
        return any(key.endswith(":Comment") for key in meta.tags)
    return meta.file_type in _RIFF_MEDIA and _riff_after_media(path)
_RIFF_NOT_METADATA = frozenset({b"idx1", b"JUNK", b"junk", b"PAD ", b"FLLR", b"fake"})


def _riff_after_media(path: str) -> bool:
    """Whether a RIFF file holds a chunk after its media data (``data``, ``LIST movi``)
    that ExifTool's -fast never reads: chunk headers only, at most 64 of them."""
    def walk(fd: int, size: int) -> bool:
        head = os.pread(fd, 12, 0)
        if len(head) < 12 or head[:4] != b"RIFF":
            return False
        end = min(size, struct.unpack("<I", head[4:8])[0] + 8)
        pos, past_media = 12, False
        for _ in range(64):
            hdr = os.pread(fd, 12, pos)
            if len(hdr) < 8 or pos + 8 > end:
                return False
            cid, length = hdr[:4], struct.unpack("<I", hdr[4:8])[0]
            if not all(32 <= b < 127 for b in cid):
                return False  # not a chunk: padding or trailing bytes
            if past_media and cid not in _RIFF_NOT_METADATA:
                return True
            if cid == b"data" or (cid == b"LIST" and hdr[8:12] == b"movi"):
                past_media = True
            pos += 8 + length + (length & 1)
        return False
    return bool(_with_file(path, walk))


def _riff_trailing_bytes(path: str) -> bool:
    """1 to 7 bytes after a whole RIFF: ExifTool reads them as a chunk header and warns
    "Error reading RIFF file (corrupted?)" about a file whose RIFF is complete."""
    sizes = _riff_sizes(path)
    if sizes is None:
        return False
    _form, declared, size = sizes
    return 0 < size - (declared + (declared & 1)) < 8


def _tiff_damage(path: str, tags: dict[str, Any]) -> str | None:
    """A TIFF's strips or tiles (absolute offsets) must end inside the file. ExifTool's values
    when it printed them; a long array it shows as "(Binary data ...)" is read from IFD0."""
    size = tags.get("System:FileSize")
    if size is None:
        return None
    for kind, tag in (("strips", 273), ("tiles", 324)):
        offsets = tags.get(f"IFD0:{kind[:-1].title()}Offsets")
        counts = tags.get(f"IFD0:{kind[:-1].title()}ByteCounts")
        if offsets is None or counts is None:
            continue
        if "Binary data" in f"{offsets}{counts}":
            end = _with_file(path, lambda fd, _size, tag=tag: _tiff_extent(fd, tag))
        else:
            end = _extent(_numbers(offsets), _numbers(counts))
        if end is not None and end > int(size):
            return (f"TIFF truncated: its image data ({kind} of IFD0) ends at byte {end}, the "
                    f"file has {size} ({end - int(size)} missing)")
    return None


_TIFF_SIZES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8: the types offsets and counts use
_TIFF_COUNTS = {273: 279, 324: 325}  # StripOffsets: StripByteCounts, TileOffsets: TileByteCounts


def _tiff_extent(fd: int, offsets_tag: int) -> int | None:
    """Where IFD0's strips (273/279) or tiles (324/325) end, read from a classic or Big TIFF:
    the header, IFD0's entries (at most 512) and the two arrays (at most 32 KB each)."""
    head = os.pread(fd, 16, 0)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return None
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    if big:
        ifd, count_fmt, entry_fmt, inline = struct.unpack(order + "Q", head[8:16])[0], "Q", "HHQ8s", 8
    else:
        ifd, count_fmt, entry_fmt, inline = struct.unpack(order + "I", head[4:8])[0], "H", "HHI4s", 4
    count_size, entry_size = struct.calcsize(count_fmt), struct.calcsize(order + entry_fmt)
    (entries,) = struct.unpack(order + count_fmt, os.pread(fd, count_size, ifd))
    if entries > 512:
        return None
    table = os.pread(fd, entries * entry_size, ifd + count_size)
    arrays: dict[int, list[int]] = {}
    for i in range(len(table) // entry_size):
        tag, typ, n, value = struct.unpack_from(order + entry_fmt, table, i * entry_size)
        if tag not in (offsets_tag, _TIFF_COUNTS[offsets_tag]):
            continue
        width = _TIFF_SIZES.get(typ)
        if width is None or n * width > 32768:
            return None
        raw = value[:n * width] if n * width <= inline else os.pread(
            fd, n * width, struct.unpack(order + ("Q" if big else "I"), value)[0])
        if len(raw) < n * width:
            return None
        arrays[tag] = list(struct.unpack(f"{order}{n}{'HIQ'[width // 4]}", raw))
    return _extent(arrays.get(offsets_tag, []), arrays.get(_TIFF_COUNTS[offsets_tag], []))


def _extent(offsets: list[int], counts: list[int]) -> int | None:
    """Where the last of the strips or tiles ends; None when the two arrays do not pair."""
    if not offsets or len(offsets) != len(counts):
        return None
    return max(o + c for o, c in zip(offsets, counts, strict=True))


def _numbers(value: Any) -> list[int]:
    """ExifTool's -n form of an integer array: a number, a list, or numbers in a string."""
    items = value if isinstance(value, list) else str(value).split()
    return [int(v) for v in items]


# MPEG audio frame headers: bitrates (kbit/s) by (MPEG-1?, layer), sample rates by version
_MPEG_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame(buf: bytes, i: int) -> tuple[int, tuple[int, int, int]] | None:
    """(length, stream key) of the MPEG audio frame header at ``buf[i]``, or None."""
    if i + 4 > len(buf) or buf[i] != 0xFF or buf[i + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (buf[i + 1] >> 3) & 3, 4 - ((buf[i + 1] >> 1) & 3)  # layer 4: reserved
    rate_index, bitrate_index = (buf[i + 2] >> 2) & 3, buf[i + 2] >> 4
    if version == 1 or layer == 4 or rate_index == 3 or bitrate_index in (0, 15):
        return None  # reserved values, or free format (no length in the header)
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES[(mpeg1, layer if mpeg1 or layer == 1 else 2)][bitrate_index] * 1000
    rate, padding = _MPEG_RATES[version][rate_index], (buf[i + 2] >> 1) & 1
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and not mpeg1:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return length, (version, layer, rate_index)


def _missing_reason(path: str) -> str:
    if not os.path.lexists(path):
        return "vanished: the file was removed or renamed before it could be read"
    if not os.access(path, os.R_OK):
        return "permission denied: provgate cannot read this file"
    return "unreadable: ExifTool returned no record for this file"


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


WRITE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exiftool.config")


def write_tags(path: str, tags: dict[str, str], create: bool = False,
               executable: str | None = None, timeout: float = 60.0) -> None:
    """Write XMP tags with ExifTool: into ``path`` in place, or as a new XMP file when
    ``create`` (ExifTool refuses to replace an existing file with ``-o``). One process per
    call: writes are rare, and a kept-open reader should not also write."""
    import subprocess

    exe = find_exiftool(executable)
    assignments = [f"-{k}={v}" for k, v in tags.items()]
    target = os.path.abspath(path)
    cmd = [exe, "-config", WRITE_CONFIG, "-q", "-m", "-charset", "filename=utf8", *assignments]
    cmd += ["-o", target] if create else ["-overwrite_original", target]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ExifToolUnavailable(f"ExifTool did not finish writing {path} in {timeout:g} s") \
            from exc
    if out.returncode != 0:
        raise ExifToolUnavailable(f"ExifTool could not write {path}: "
                                  f"{(out.stderr or out.stdout).strip()[:300]}")


def read_tags(path: str, names: Sequence[str], executable: str | None = None) -> dict[str, Any]:
    """Read a few tags once (to verify a write), with the same config as ``write_tags``."""
    import subprocess

    exe = find_exiftool(executable)
    out = subprocess.run([exe, "-config", WRITE_CONFIG, "-json", "-G1", "-n", "-charset",
                          "filename=utf8", *(f"-{n}" for n in names), os.path.abspath(path)],
                         capture_output=True, text=True, timeout=60)
    try:
        return json.loads(out.stdout)[0]
    except (ValueError, IndexError):
        return {}
