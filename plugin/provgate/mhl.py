"""ASC MHL: the hash history a copied tree carries, and whether its files are still its files.

An ASC MHL history (ASC Media Hash List v2.0) is an ``ascmhl/`` folder at the root of a copied
tree: numbered generation files (``0001_<folder>_<date>.mhl``, one per copy or verification),
each listing files by their path under the root with their size and hashes, and
``ascmhl_chain.xml``, which names each generation with the C4 id of its bytes. A history proves
the files are the ones copied on set or at the vendor; it says nothing about AI. provgate holds
a delivery whose files are not what its history lists.

- :func:`covering` groups files by the history that covers them: the nearest folder at or
  above a file's folder that holds an ``ascmhl/`` folder (nested histories cover their own
  tree; the files of ``ascmhl/`` itself are checked through the chain).
- :func:`read` reads a history: the chain, then the generations newest first, until every file
  asked about is found (each file's hashes are the newest that were not a failed verification).
- :func:`verify` checks files against it, reading each file once and hashing it in the fastest
  format its entry lists (:data:`PREFERENCE`); :func:`check` does both for one root.

Every problem is an :class:`imf.Problem`: ``altered`` (size or hash, or a generation that is not
the one its chain names), ``missing`` (a listed file not in the delivery), ``unverifiable`` (a
file the history does not list, a hash format provgate cannot compute: never a pass),
``malformed`` (a history that cannot be read or is refused), ``unsafe`` (a listed path that
leads out of the tree).

Generation files are streamed through defusedxml (no DTD, entity or external reference) into
the entries alone, never a tree, within :data:`MAX_MHL_BYTES` per file, :data:`MAX_HISTORY_BYTES`
per history, :data:`MAX_ELEMENTS`, :data:`MAX_DEPTH`, :data:`MAX_TEXT` characters per element and
:data:`MAX_GENERATIONS`; the chain is small and goes through :func:`imf.parse_xml`. The xxh
formats need the ``xxhash`` package. The reference implementation (PyPI ``ascmhl``) is not used:
it pins Click 8.1 (sqlite-utils needs 8.3 or later) and parses with lxml without such caps.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from defusedxml.ElementTree import DefusedXMLParser

from provgate import imf
from provgate.assets import mhl_root
from provgate.imf import Problem, XmlRefused

try:  # ASC MHL's default formats (xxh64, xxh3, xxh128) are xxHash
    import xxhash
except ImportError:  # pragma: no cover - declared; without it those formats are unverifiable
    xxhash = None

FOLDER = "ascmhl"
CHAIN = "ascmhl_chain.xml"
MAX_MHL_BYTES = 256 << 20       # one generation: ~600,000 files listed with two hashes each
MAX_HISTORY_BYTES = 2 << 30     # every generation read for one check (chain hashes included)
MAX_ELEMENTS = 4_000_000        # per generation
MAX_DEPTH = 16                  # an MHL is 5 deep
MAX_TEXT = 16 << 10             # characters in one element (a path, a hash)
MAX_GENERATIONS = 10_000
MAX_PROBLEMS = 200              # per kind and check; the rest are counted in one more

# the fastest first: a file is read once and hashed in one format its entry lists
PREFERENCE = ("xxh3", "xxh128", "xxh64", "xxh32", "sha1", "md5", "c4")
_XXH = {"xxh3": "xxh3_64", "xxh128": "xxh3_128", "xxh64": "xxh64", "xxh32": "xxh32"}
SUPPORTED = frozenset(f for f in PREFERENCE if f not in _XXH or xxhash is not None)
_C4_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_GENERATION = re.compile(r"(\d{4,})_.*\.mhl", re.IGNORECASE)
_NOT_HASHES = frozenset({"path", "previouspath"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A file a history vouches for: its size and the one hash provgate will check."""

    path: str                  # under the history root, / separators, NFC
    size: int | None
    format: str | None         # the preferred supported format listed; None: none is
    hash: str                  # in that format; else the formats listed, for the message
    generation: int            # where the hash comes from
    failed: int | None = None  # a newer generation that recorded a failed verification


@dataclass(frozen=True, slots=True)
class Generation:
    number: int
    path: str


@dataclass(frozen=True, slots=True)
class History:
    """What a history says about the files asked about (and every file its newest
    generation lists), with the problems found while reading it."""

    root: str
    generations: tuple[Generation, ...]        # oldest first
    entries: dict[str, Entry]
    latest: frozenset[str]                     # the paths the newest generation lists
    problems: tuple[Problem, ...]

    @property
    def formats(self) -> list[str]:
        """The hash formats the entries will be checked in, fastest first."""
        used = {e.format for e in self.entries.values() if e.format}
        return [f for f in PREFERENCE if f in used]


@dataclass(frozen=True, slots=True)
class Checked:
    """One history and what :func:`check` found: ``verified`` files matched."""

    history: History
    files: int
    verified: int
    problems: list[Problem]


# ---------------------------------------------------------------------------------------------
# finding histories

def covering(paths: Iterable[str]) -> dict[str, list[str]]:
    """The files among ``paths`` (absolute) by the root of the history that covers each, in
    input order. Files no history covers, and those of an ``ascmhl/`` folder, are left out."""
    roots: dict[str, str | None] = {}
    out: dict[str, list[str]] = {}
    for path in paths:
        full = path if os.path.isabs(path) else os.path.abspath(path)
        root = mhl_root(os.path.dirname(full), roots)
        if root is not None and _key(os.path.relpath(full, root)).split("/")[0] != FOLDER:
            out.setdefault(root, []).append(path)
    return out


# ---------------------------------------------------------------------------------------------
# hashes

def c4_id(sha512: bytes) -> str:
    """A SHA-512 digest as a C4 id (SMPTE ST 2114): ``c4`` and 88 base58 characters."""
    n = int.from_bytes(sha512, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_C4_ALPHABET[r])
    return "c4" + "".join(reversed(out)).rjust(88, "1")


def formats_for(path: str) -> tuple[str, ...]:
    """The hash formats of the ASC MHL history that covers the file at ``path`` (none when
    no history does): the read that fingerprints the file takes them too, so that checking
    it against the history reads nothing again. Cached per folder and history for the
    process."""
    root = mhl_root(os.path.dirname(os.path.abspath(path)), _ROOTS)
    if root is None:
        return ()
    if root not in _FORMATS:
        try:
            _FORMATS[root] = tuple(read(root).formats)
        except (OSError, ValueError):
            _FORMATS[root] = ()  # the check itself says what is wrong with it
    return _FORMATS[root]


_ROOTS: dict[str, str | None] = {}
_FORMATS: dict[str, tuple[str, ...]] = {}


def new_hash(fmt: str) -> Any:
    """A hash object for an MHL format (``hash_text`` gives its text as an MHL writes it)."""
    return _hasher(fmt)


def hash_text(fmt: str, h: Any) -> str:
    return _digest(fmt, h)


def _hasher(fmt: str) -> Any:
    if fmt in _XXH:
        return getattr(xxhash, _XXH[fmt])()
    return hashlib.sha512() if fmt == "c4" else hashlib.new(fmt)


def _digest(fmt: str, h: Any) -> str:
    return c4_id(h.digest()) if fmt == "c4" else h.hexdigest()


def hash_file(path: str, fmt: str) -> str:
    """The file's hash in an MHL format (as an MHL writes it), in one streaming read that
    does not follow a link. OSError when it cannot be read."""
    h = _hasher(fmt)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        for chunk in _chunks(fd):
            h.update(chunk)
    finally:
        os.close(fd)
    return _digest(fmt, h)


def _chunks(fd: int, limit: int | None = None) -> Iterator[memoryview]:
    buf = bytearray(imf.CHUNK)
    view = memoryview(buf)
    total = 0
    while n := os.readv(fd, [buf]):
        total += n
        if limit is not None and total > limit:
            raise XmlRefused(f"larger than {limit >> 20} MiB: refused")
        yield view[:n]


# ---------------------------------------------------------------------------------------------
# reading

class _TooLarge(XmlRefused):
    """The history as a whole is over MAX_HISTORY_BYTES: nothing more of it is read."""


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_HISTORY_BYTES

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _TooLarge(f"the history is larger than {MAX_HISTORY_BYTES >> 20} MiB in "
                            "all: refused")


class _Problems(list[Problem]):
    """Problems, at most MAX_PROBLEMS of each kind spelled out; :meth:`done` counts the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, int] = {}
        self.over: dict[str, int] = {}

    def add(self, kind: imf.ProblemKind, message: str, path: str | None = None) -> None:
        if self.kept.get(kind, 0) < MAX_PROBLEMS:
            self.kept[kind] = self.kept.get(kind, 0) + 1
            self.append(Problem(kind, message, path))
        else:
            self.over[kind] = self.over.get(kind, 0) + 1

    def done(self) -> list[Problem]:
        return [*self, *(Problem(k, f"... and {n} more {k} file(s)") for k, n in self.over.items())]


def read(root: str, wanted: Iterable[str] | None = None) -> History:
    """The history at ``root`` (which holds ``ascmhl/``): the chain checked against the
    generation files, and the entries of the newest generation and, from older ones, of the
    files in ``wanted`` (absolute paths; None: every file) the newer ones do not list."""
    root = os.path.abspath(root)
    folder = os.path.join(root, FOLDER)
    problems = _Problems()
    budget = _Budget()
    chain = _read_chain(folder, problems)
    generations = _generations(folder, problems)
    pending = None if wanted is None else {_key(os.path.relpath(p, root)) for p in wanted}
    entries: dict[str, Entry] = {}
    failed: dict[str, int] = {}
    latest: frozenset[str] = frozenset()
    names = [os.path.basename(g.path) for g in generations]
    for name in sorted(set(chain) - set(names), key=lambda n: chain[n][0]):
        problems.add("missing", f"generation {chain[name][0]} ({name}) named by {CHAIN} is "
                                "missing", os.path.join(folder, name))
    for i, gen in enumerate(reversed(generations)):
        name = os.path.basename(gen.path)
        target = _Entries() if i == 0 or pending is None or pending else None
        try:
            c4 = _read_generation(gen, target, budget)
        except FileNotFoundError:
            problems.add("missing", f"generation {name} vanished while being read", gen.path)
            continue
        except (XmlRefused, OSError) as exc:
            problems.add("malformed", f"generation {name}: {_why(exc)}", gen.path)
            if isinstance(exc, _TooLarge):
                break
            continue
        expected = chain.get(name)
        if expected is None:
            problems.add("unverifiable", f"generation {name} is not in {CHAIN}", gen.path)
        elif expected[1] != c4:
            problems.add("altered", f"generation {name} is not the one {CHAIN} names (c4 "
                                    f"{c4}, expected {expected[1]})", gen.path)
        if target is None:
            continue
        for why in target.refused:
            problems.add("unsafe", f"generation {name}: {why}", gen.path)
        if i == 0:
            latest = frozenset(raw[0] for raw in target.entries)
        for path, size, good, was_failed in target.entries:
            if path in entries or (i and pending is not None and path not in pending):
                continue
            if was_failed:
                failed.setdefault(path, gen.number)
            if good or not was_failed:
                entries[path] = _entry(gen.number, path, size, good, failed.get(path))
                if pending is not None:
                    pending.discard(path)
    return History(root, tuple(generations), entries, latest, tuple(problems.done()))


def _why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, XmlRefused) else \
        f"cannot be read: {getattr(exc, 'strerror', None) or exc}"


def _read_chain(folder: str, problems: _Problems) -> dict[str, tuple[int, str]]:
    """Generation file name -> (number, c4) from the chain; a problem when it cannot be."""
    path = os.path.join(folder, CHAIN)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            data = b"".join(bytes(c) for c in _chunks(fd, imf.MAX_XML_BYTES))
        finally:
            os.close(fd)
        root = imf.parse_xml(data)
    except FileNotFoundError:
        problems.add("unverifiable", f"no {CHAIN}: the generations cannot be checked", path)
        return {}
    except (XmlRefused, OSError) as exc:
        problems.add("malformed", f"{CHAIN}: {_why(exc)}", path)
        return {}
    out: dict[str, tuple[int, str]] = {}
    for el in root:
        if imf._local(el.tag) != "hashlist":
            continue
        name = (imf._text(el, "path") or "").rpartition("/")[2]
        c4 = imf._text(el, "c4") or ""
        try:
            number = int(el.get("sequencenr") or "")
        except ValueError:
            number = -1
        if not name or number < 1 or not c4:
            problems.add("malformed", f"{CHAIN}: a generation without a path, number or c4",
                         path)
        else:
            out[name] = (number, c4)
    return out


def _generations(folder: str, problems: _Problems) -> list[Generation]:
    found: list[Generation] = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                m = _GENERATION.fullmatch(e.name)
                if m is None:
                    continue
                if len(found) >= MAX_GENERATIONS:
                    problems.add("malformed", f"more than {MAX_GENERATIONS} generations: refused",
                                 folder)
                    return []
                found.append(Generation(int(m[1]), e.path))
    except OSError as exc:
        problems.add("malformed", f"{FOLDER}/ cannot be listed: {exc.strerror or exc}", folder)
        return []
    found.sort(key=lambda g: g.number)
    numbers = [g.number for g in found]
    if len(set(numbers)) != len(numbers):
        problems.add("malformed", "two generation files have the same number", folder)
    if not found:
        problems.add("malformed", f"{FOLDER}/ holds no generation (.mhl) file", folder)
    return found


def _read_generation(gen: Generation, target: _Entries | None, budget: _Budget) -> str:
    """The generation's C4 id, its entries into ``target`` (when given), in one bounded
    read."""
    h = hashlib.sha512()
    parser = DefusedXMLParser(target=target, forbid_dtd=True, forbid_entities=True,
                              forbid_external=True) if target is not None else None
    with imf.open_bounded(gen.path, MAX_MHL_BYTES) as (fd, st):
        budget.take(st.st_size)
        for chunk in _chunks(fd, MAX_MHL_BYTES):
            h.update(chunk)
            if parser is not None:
                _feed(parser, chunk)
        if parser is not None:
            _feed(parser, None)
    return c4_id(h.digest())


def _feed(parser: DefusedXMLParser, chunk: memoryview | None) -> None:
    with imf.refusing():
        if chunk is None:
            parser.close()
        else:
            parser.feed(bytes(chunk))


# one ``<hash>`` of a generation: path, size, {format: hash} not failed, a failed one listed
Raw = tuple[str, int | None, dict[str, str], bool]


class _Entries:
    """A parser target that keeps a generation's ``hashes/hash`` entries and nothing else
    (no tree), refusing too many or too deep elements and too long texts. ``refused``: the
    entries whose path leads out of the tree, and why."""

    def __init__(self) -> None:
        self.entries: list[Raw] = []
        self.refused: list[str] = []
        self.bounds = imf.Bounds(MAX_ELEMENTS, MAX_DEPTH)
        self.section = ""
        self.entry: list[Any] | None = None          # [path, size, {format: hash}, failed]
        self.field: str | None = None
        self.attrs: dict[str, str] = {}
        self.text: list[str] = []
        self.length = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        depth = self.bounds.enter()
        name = imf._local(tag)
        if depth == 1 and name != "hashlist":
            raise XmlRefused(f"the root element is {name}, not an ASC MHL hashlist")
        if depth == 2:
            self.section = name
        elif depth == 3 and self.section == "hashes" and name == "hash":
            self.entry = [None, None, {}, False]
        elif depth == 4 and self.entry is not None:
            self.field, self.attrs, self.text, self.length = name.lower(), attrs, [], 0

    def data(self, text: str) -> None:
        if self.field is not None:
            self.length += len(text)
            if self.length > MAX_TEXT:
                raise XmlRefused(f"an element longer than {MAX_TEXT} characters: refused")
            self.text.append(text)

    def end(self, _tag: str) -> None:
        depth = self.bounds.leave()
        if depth == 4 and self.field is not None and self.entry is not None:
            text = "".join(self.text).strip()
            if self.field == "path":
                self.entry[0], self.entry[1] = text, self.attrs.get("size")
            elif self.field not in _NOT_HASHES and self.attrs.get("action") == "failed":
                self.entry[3] = True
            elif self.field not in _NOT_HASHES and text:
                self.entry[2][self.field] = text
            self.field = None
        elif depth == 3 and self.entry is not None:
            raw, size, good, failed = self.entry
            self.entry = None
            rel, why = imf._safe_relpath(raw or "")
            if rel is None:
                self.refused.append(f"path {raw!r} refused: {why}")
                return
            try:
                n = int(size) if size is not None else None
            except ValueError:
                n = None
            self.entries.append((_key(rel), n, good, failed))

    def close(self) -> None:
        return None


def _entry(generation: int, path: str, size: int | None, good: dict[str, str],
           failed: int | None) -> Entry:
    """The entry for a file: the fastest supported format its ``<hash>`` lists, or none
    (then ``hash`` names the formats listed, for the message)."""
    fmt = next((f for f in PREFERENCE if f in good and f in SUPPORTED), None)
    if fmt is None:
        return Entry(path, size, None, ", ".join(sorted(good)) or "no hash", generation, failed)
    value = good[fmt]
    return Entry(path, size, fmt, value if fmt == "c4" else value.lower(), generation, failed)


def _key(rel: str) -> str:
    """A relative path as the history's entries are keyed: / separators, NFC (a history made
    on macOS lists decomposed names)."""
    return unicodedata.normalize("NFC", rel.replace(os.sep, "/"))


# ---------------------------------------------------------------------------------------------
# verification

Hasher = Callable[[str, str], str]


def verify(history: History, paths: Iterable[str], *, complete: bool = False,
           hasher: Hasher | None = None) -> list[Problem]:
    """The history's problems, then each file's in ``paths`` (absolute, under the root): not
    listed, of another size, or with another hash than its entry (each file read at most once,
    by ``hasher(path, format)``, default :func:`hash_file`). ``complete``: the files were the
    whole tree, so a file the newest generation lists that is not there is missing."""
    hasher = hasher or hash_file
    problems = _Problems()
    problems.extend(history.problems)
    seen: set[str] = set()
    for path in paths:
        rel = _key(os.path.relpath(path, history.root))
        seen.add(rel)
        _check_file(history, path, rel, hasher, problems)
    if complete:
        for rel in sorted(history.latest - seen):
            if not os.path.lexists(os.path.join(history.root, rel)):
                problems.add("missing", f"{rel} is listed by generation "
                                        f"{history.generations[-1].number} but is not in the "
                                        "delivery", os.path.join(history.root, rel))
    return problems.done()


def _check_file(history: History, path: str, rel: str, hasher: Hasher,
                problems: _Problems) -> None:
    entry = history.entries.get(rel)
    if entry is None:
        problems.add("unverifiable", f"{rel} is not in the ASC MHL history (added after it "
                                     "was made, or left out of it)", path)
        return
    try:
        st = os.lstat(path)
    except OSError as exc:
        problems.add("missing", f"{rel} cannot be looked at: {exc.strerror or exc}", path)
        return
    if not stat.S_ISREG(st.st_mode):
        problems.add("unsafe", f"{rel} is not a regular file", path)
        return
    noted = f"; generation {entry.failed} recorded the mismatch" if entry.failed else ""
    if entry.size is not None and st.st_size != entry.size:
        problems.add("altered", f"{rel} is {st.st_size} bytes; the ASC MHL (generation "
                                f"{entry.generation}) says {entry.size}{noted}", path)
        return
    if entry.format is None:
        problems.add("unverifiable", f"{rel}: the ASC MHL gives no hash provgate can compute "
                                     f"({entry.hash})", path)
        return
    try:
        got = hasher(path, entry.format)
    except OSError as exc:
        problems.add("unverifiable", f"{rel} cannot be read: {exc.strerror or exc}", path)
        return
    if got != entry.hash:
        problems.add("altered", f"{rel} does not match the ASC MHL: {entry.format} {got}, "
                                f"expected {entry.hash} (generation {entry.generation}){noted}",
                     path)


def check(root: str, paths: list[str], *, complete: bool = False,
          hasher: Hasher | None = None) -> Checked:
    """Read the history at ``root`` for ``paths`` and verify them (:func:`read`,
    :func:`verify`)."""
    history = read(root, paths)
    problems = verify(history, paths, complete=complete, hasher=hasher)
    bad = {p.path for p in problems if p.path}
    return Checked(history, len(paths), sum(p not in bad for p in paths), problems)
