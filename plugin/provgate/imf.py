"""IMF and DCP packages: read the paperwork, place every track file, check the hashes.

An IMF package (SMPTE ST 2067) or a DCP (SMPTE ST 429 or Interop) is a folder whose
``ASSETMAP.xml`` (ST 429-9; ``ASSETMAP`` in an Interop DCP) maps asset ids to files, whose
packing lists (PKL, ST 429-8 / ST 2067-2) give each asset's hash, size and type, and whose
composition playlists (CPL, ST 2067-3 / ST 429-7) compose track files (MXF, one essence each)
into a timeline. provgate does not validate a package the way Netflix Photon does: it finds
what a CPL composes so that the essence is gated, says where each track file sits in the
composition (segment or reel, record timecode), tells package paperwork from media, and checks
that every listed file is there with the bytes its PKL declares.

- :func:`find_packages` lists the package folders under a folder.
- :func:`read` parses one package into a :class:`Package` (problems found while reading, such
  as an asset path leading out of the folder or an XML bomb, are in ``Package.problems``).
- :func:`verify` checks presence, size and PKL hash of every listed asset and that every
  track file a CPL references is in the package (or in another package given), reading each
  file at most once: pass ``digests`` (already computed) or ``hasher`` (the session's) to
  read none. :func:`hash_file` computes the session's sha256 fingerprint and the PKL's SHA-1
  in one read.

XML is parsed with defusedxml (DTDs, entities and external references refused) or, without
it, with expat and the same refusals; files over MAX_XML_BYTES, more than MAX_XML_ELEMENTS
elements or deeper than MAX_XML_DEPTH are refused before they cost memory. Asset paths are
relative paths inside the package folder: absolute paths, ``..``, URLs, backslashes and
symbolic links are refused.
"""

from __future__ import annotations

import base64
import contextlib
import binascii
import errno
import hashlib
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal
from xml.etree import ElementTree as ET
from xml.parsers import expat

try:  # PyPI defusedxml: the parser the Python docs recommend for untrusted XML
    from defusedxml.ElementTree import DefusedXMLParser as _DefusedParser
except ImportError:  # pragma: no cover - the dependency is declared; expat below refuses alike
    _DefusedParser = None

MAX_XML_BYTES = 16 << 20        # a feature CPL is a few MB
MAX_XML_ELEMENTS = 200_000     # a feature CPL with its essence descriptors: tens of thousands
MAX_XML_DEPTH = 64
CHUNK = 1 << 20

ASSETMAP_NAMES = ("assetmap.xml", "assetmap")   # SMPTE / Interop, any case
VOLINDEX_NAMES = ("volindex.xml", "volindex")

# the PKL's HashAlgorithm (ST 2067-2:2016 and later); SHA-1 when absent (ST 429-8)
HASH_ALGORITHMS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}

# files that travel with a package to describe or check it, not media to judge
_CHECKSUM = re.compile(
    r"(?i)(.*\.(md5|sha1|sha256|sha512|xxh64|xxh3|xxh128|c4|mhl|md5sum|sha1sum|sha256sum)"
    r"|checksums?(\.[a-z0-9]+)?|.*[._-]checksums?\.(txt|csv|xml))")
_PAPER_NAMES = {"CompositionPlaylist": "the composition playlist",
                "OutputProfileList": "the output profile list",
                "SidecarCompositionMap": "the sidecar composition map"}
# DCP reel assets that are not files
_NOT_FILES = {"MainMarkers", "CompositionMetadataAsset"}

ProblemKind = Literal["missing", "altered", "unsafe", "malformed", "unverifiable"]
Role = Literal["paperwork", "track_file", "asset", "unlisted"]


class XmlRefused(ValueError):
    """An XML document provgate will not parse (too large, a DTD or entity, too many
    elements, too deep) or cannot (not well-formed)."""


class PackageError(ValueError):
    """The folder is not a package (no asset map)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """An integrity problem: every kind holds the package (it is not what was packed).

    ``missing``: a listed or referenced file is not there; ``altered``: its size or hash is
    not the PKL's; ``unsafe``: a path that leads out of the package or through a link;
    ``malformed``: paperwork that cannot be read; ``unverifiable``: a file no PKL vouches for,
    or with a hash provgate cannot check.
    """

    kind: ProblemKind
    message: str
    path: str | None = None
    asset_id: str | None = None


@dataclass(frozen=True, slots=True)
class MapAsset:
    """An ASSETMAP entry. ``path`` is absolute, or None when the entry was refused."""

    id: str
    relpath: str
    path: str | None
    packing_list: bool = False


@dataclass(frozen=True, slots=True)
class PklAsset:
    """A PKL entry: what the file must be."""

    id: str
    hash: str | None          # base64, as written
    algorithm: str            # hashlib name: sha1 unless the PKL says otherwise
    size: int | None
    type: str
    original_name: str | None
    pkl: str                  # the PKL's own id

    def expected(self) -> bytes | None:
        """The declared digest's bytes, or None when it is absent or not base64."""
        if not self.hash:
            return None
        try:
            return base64.b64decode("".join(self.hash.split()), validate=True)
        except (binascii.Error, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class Resource:
    """One track file resource of a CPL, placed on the composition's timeline."""

    id: str
    track_file_id: str
    sequence: str             # MainImageSequence, MainAudioSequence, MainPicture (DCP)...
    track_id: str | None
    segment: int              # 1-based: the IMF segment or the DCP reel
    segment_id: str
    edit_rate: Fraction       # the resource's own (audio: often the sample rate)
    entry_point: int          # first edit unit used in the track file
    duration: int             # edit units used per repeat
    repeat_count: int
    record_in: int            # composition edit units from the start of the composition
    record_timecode: str      # HH:MM:SS:FF (";" before frames when drop frame)
    encrypted: bool = False   # a KeyId: the essence itself cannot be read


@dataclass(frozen=True, slots=True)
class Composition:
    """A CPL."""

    id: str
    title: str
    edit_rate: Fraction
    standard: Literal["imf", "dcp-smpte", "dcp-interop", "unknown"]
    path: str
    timecode_start: str
    duration: int             # composition edit units
    segments: int
    resources: tuple[Resource, ...]

    def track_file_ids(self) -> list[str]:
        """Every track file the CPL composes, once each, in timeline order."""
        return list(dict.fromkeys(r.track_file_id for r in self.resources))

    def uses(self, track_file_id: str) -> list[Resource]:
        """Where ``track_file_id`` sits in the composition (a file may be used many times)."""
        tid = normalise_id(track_file_id)
        return [r for r in self.resources if r.track_file_id == tid]


@dataclass(frozen=True, slots=True)
class Placement:
    """A track file's place in a composition, for a record or a report."""

    composition: Composition
    resource: Resource

    def describe(self) -> str:
        c, r = self.composition, self.resource
        unit = "reel" if c.standard.startswith("dcp") else "segment"
        return (f"'{c.title}' {unit} {r.segment}, {r.sequence}, record "
                f"{r.record_timecode} ({r.duration * r.repeat_count} edit units at "
                f"{_rate(r.edit_rate)} from {r.entry_point})")


@dataclass(frozen=True, slots=True)
class Package:
    """What a package's paperwork says, and the files its folder holds."""

    folder: str
    assetmap: str | None
    assets: dict[str, MapAsset]
    pkl: dict[str, PklAsset]
    compositions: tuple[Composition, ...]
    roles: dict[str, Role]                      # every file in the folder -> its role
    problems: tuple[Problem, ...]
    # digests of the paperwork, taken from the bytes parsed (path -> hashlib name -> bytes)
    digests: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["imf", "dcp", "unknown"]:
        standards = {c.standard for c in self.compositions}
        if "imf" in standards:
            return "imf"
        return "dcp" if any(s.startswith("dcp") for s in standards) else "unknown"

    def role(self, path: str) -> Role | None:
        """The role of the file at ``path`` (absolute), or None when it is not in the
        package folder."""
        return self.roles.get(path)

    def path_of(self, asset_id: str) -> str | None:
        a = self.assets.get(normalise_id(asset_id))
        return a.path if a else None

    def id_of(self, path: str) -> str | None:
        return next((a.id for a in self.assets.values() if a.path == path), None)

    def media(self) -> list[str]:
        """The files to judge as media: track files, other assets (sidecar assets of the
        package) and files the asset map does not list."""
        return [p for p, r in self.roles.items() if r != "paperwork"]

    def placements(self, asset_id: str) -> list[Placement]:
        """Every place in this package's compositions where a track file is used."""
        tid = normalise_id(asset_id)
        return [Placement(c, r) for c in self.compositions for r in c.resources
                if r.track_file_id == tid]


# ---------------------------------------------------------------------------------------------
# safe XML

class Bounds:
    """The elements a bounded XML read has met and how deep it is, refusing too many or too
    deeply nested ones (a crafted file must cost neither memory nor time without end)."""

    __slots__ = ("count", "depth", "max_depth", "max_elements")

    def __init__(self, max_elements: int, max_depth: int) -> None:
        self.max_elements, self.max_depth = max_elements, max_depth
        self.count = self.depth = 0

    def enter(self) -> int:
        """One more element opened: its depth (the root's is 1)."""
        self.count += 1
        self.depth += 1
        if self.count > self.max_elements:
            raise XmlRefused(f"more than {self.max_elements} elements: refused")
        if self.depth > self.max_depth:
            raise XmlRefused(f"nested deeper than {self.max_depth} elements: refused")
        return self.depth

    def leave(self) -> int:
        """An element closed: the depth it had."""
        self.depth -= 1
        return self.depth + 1


class _Counter:
    """A TreeBuilder target that refuses too many or too deeply nested elements."""

    __slots__ = ("bounds", "builder")

    def __init__(self) -> None:
        self.builder = ET.TreeBuilder()
        self.bounds = Bounds(MAX_XML_ELEMENTS, MAX_XML_DEPTH)

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self.bounds.enter()
        return self.builder.start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self.bounds.leave()
        return self.builder.end(tag)

    def data(self, text: str) -> None:
        self.builder.data(text)

    def close(self) -> ET.Element:
        return self.builder.close()


def parse_xml(data: bytes) -> ET.Element:
    """The root element of ``data``, parsed without DTDs, entities or external references,
    within the size, element and depth caps. XmlRefused otherwise."""
    if len(data) > MAX_XML_BYTES:
        raise XmlRefused(f"larger than {MAX_XML_BYTES >> 20} MiB: refused")
    if _DefusedParser is None:  # pragma: no cover
        return _parse_expat(data)
    target = _Counter()
    parser = _DefusedParser(target=target, forbid_dtd=True, forbid_entities=True,
                            forbid_external=True)
    with refusing():
        parser.feed(data)
        return parser.close()


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """A parser's errors as XmlRefused, saying what was wrong."""
    try:
        yield
    except XmlRefused:
        raise
    except ET.ParseError as exc:
        raise XmlRefused(f"not well-formed XML: {exc}") from None
    except ValueError as exc:  # defusedxml's DTDForbidden, EntitiesForbidden...
        raise XmlRefused(f"refused: {exc.__class__.__name__} ({exc})") from None


def _parse_expat(data: bytes) -> ET.Element:
    """The same refusals with the standard library's expat, for a Python without
    defusedxml: a document type declaration, any entity declaration and external entities
    stop the parse at once."""
    if len(data) > MAX_XML_BYTES:
        raise XmlRefused(f"larger than {MAX_XML_BYTES >> 20} MiB: refused")
    target = _Counter()
    p = expat.ParserCreate(namespace_separator=" ")

    def refuse(*_args: object) -> None:
        raise XmlRefused("refused: a DTD or an entity declaration")

    p.StartDoctypeDeclHandler = refuse
    p.EntityDeclHandler = refuse
    p.UnparsedEntityDeclHandler = refuse
    p.ExternalEntityRefHandler = refuse
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.buffer_text = True

    def qname(name: str) -> str:
        uri, sep, local = name.rpartition(" ")
        return f"{{{uri}}}{local}" if sep else local

    p.StartElementHandler = lambda name, attrs: target.start(qname(name), attrs)
    p.EndElementHandler = lambda name: target.end(qname(name))
    p.CharacterDataHandler = target.data
    try:
        p.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlRefused(f"not well-formed XML: {exc}") from None
    return target.close()


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _ns(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element | None, name: str | None = None) -> list[ET.Element]:
    if el is None:
        return []
    return [c for c in el if name is None or _local(c.tag) == name]


def _text(el: ET.Element | None, name: str, default: str | None = None) -> str | None:
    c = _child(el, name) if el is not None else None
    if c is None or c.text is None:
        return default
    return c.text.strip()


def _int(el: ET.Element | None, name: str, default: int | None = None) -> int | None:
    t = _text(el, name)
    try:
        return int(t) if t is not None else default
    except ValueError:
        return default


def normalise_id(raw: str) -> str:
    """``urn:uuid:ABC...`` -> ``abc...``: ids compare without the URN prefix and case."""
    s = raw.strip().lower()
    return s[9:] if s.startswith("urn:uuid:") else s


# ---------------------------------------------------------------------------------------------
# files

def hash_file(path: str, algorithms: Iterable[str] = ("sha256", "sha1"), *,
              dir_fd: int | None = None) -> dict[str, bytes]:
    """The digests of the file at ``path`` in one streaming read, without following a link
    (``{"sha256": ..., "sha1": ...}``). The session's fingerprint is
    ``"sha256:" + digests["sha256"].hex()``; a PKL hash is ``pkl_hash(digests["sha1"])``."""
    hs = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := os.readv(fd, [buf]):
            chunk = view[:n]
            for h in hs.values():
                h.update(chunk)
    finally:
        os.close(fd)
    return {a: h.digest() for a, h in hs.items()}


def pkl_hash(digest: bytes) -> str:
    """A digest as a PKL writes it (base64)."""
    return base64.b64encode(digest).decode("ascii")


@contextlib.contextmanager
def open_bounded(path: str, limit: int) -> Iterator[tuple[int, os.stat_result]]:
    """The file at ``path`` opened without following a link, refused (XmlRefused) unless it
    is a regular file of at most ``limit`` bytes: the descriptor and its stat."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise XmlRefused("not a regular file")
        if st.st_size > limit:
            raise XmlRefused(f"larger than {limit >> 20} MiB: refused")
        yield fd, st
    finally:
        os.close(fd)


def _read_limited(path: str) -> bytes:
    with open_bounded(path, MAX_XML_BYTES) as (fd, _st):
        chunks, total = [], 0
        while chunk := os.read(fd, CHUNK):
            total += len(chunk)
            if total > MAX_XML_BYTES:
                raise XmlRefused(f"larger than {MAX_XML_BYTES >> 20} MiB: refused")
            chunks.append(chunk)
        return b"".join(chunks)


def _safe_relpath(raw: str) -> tuple[str | None, str | None]:
    """(normalised relative path, None) or (None, why it is refused)."""
    p = raw.strip()
    if not p:
        return None, "an empty path"
    if any(ord(c) < 32 or c == "\x7f" for c in p):
        return None, "a control character in the path"
    if "\\" in p:
        return None, "a backslash in the path"
    if p.startswith("/") or re.match(r"[A-Za-z]:", p):
        return None, "an absolute path"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", p) or p.lower().startswith("file:"):
        return None, "a URL"
    parts = [s for s in p.split("/") if s not in ("", ".")]
    if ".." in parts:
        return None, "'..' leads out of the package folder"
    if not parts:
        return None, "an empty path"
    return "/".join(parts), None


def _resolve(folder: str, rel: str) -> tuple[str | None, str | None]:
    """The absolute path of ``rel`` under ``folder`` when no component is a symbolic link
    (a missing file is fine: verify reports it), else (None, why)."""
    here = folder
    parts = rel.split("/")
    for i, part in enumerate(parts):
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return here if i == len(parts) - 1 else os.path.join(folder, rel), None
        except OSError as exc:
            return None, f"cannot be looked at ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return None, "a symbolic link: not followed"
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None, "a path through something that is not a folder"
    return here, None


def _find_name(folder: str, names: Iterable[str]) -> str | None:
    try:
        entries = {e.name.lower(): e for e in os.scandir(folder)}
    except OSError:
        return None
    for n in names:
        e = entries.get(n)
        if e is not None and e.is_file(follow_symlinks=False):
            return e.path
    return None


def is_package(folder: str) -> bool:
    """Whether ``folder`` holds an asset map (a regular file, not a link)."""
    return _find_name(folder, ASSETMAP_NAMES) is not None


def find_packages(folder: str) -> list[str]:
    """The package folders (those with an ASSETMAP) at or under ``folder``, sorted. Links
    to folders are not followed."""
    found = []
    for here, dirs, _files in os.walk(folder, followlinks=False):
        dirs.sort()
        if is_package(here):
            found.append(os.path.abspath(here))
    return sorted(found)


def _walk_package(folder: str) -> Iterator[str]:
    """Every file in the package folder, not descending into a nested package or a link."""
    stack = [folder]
    while stack:
        here = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if not is_package(e.path):
                    stack.append(e.path)
            else:  # files, and links (the session's walk records those as it does elsewhere)
                yield e.path


# ---------------------------------------------------------------------------------------------
# reading

class _Reader:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.problems: list[Problem] = []
        self.digests: dict[str, dict[str, bytes]] = {}

    def problem(self, kind: ProblemKind, message: str, path: str | None = None,
                asset_id: str | None = None) -> None:
        self.problems.append(Problem(kind, message, path, asset_id))

    def xml(self, path: str, what: str) -> ET.Element | None:
        try:
            data = _read_limited(path)
        except FileNotFoundError:
            self.problem("missing", f"{what} {self.rel(path)} is missing", path)
            return None
        except XmlRefused as exc:
            self.problem("malformed", f"{what} {self.rel(path)}: {exc}", path)
            return None
        except OSError as exc:
            self.problem("malformed", f"{what} {self.rel(path)} cannot be read: "
                                      f"{exc.strerror or exc}", path)
            return None
        self.digests[path] = {a: hashlib.new(a, data).digest()
                              for a in ("sha256", "sha1")}
        try:
            return parse_xml(data)
        except XmlRefused as exc:
            self.problem("malformed", f"{what} {self.rel(path)}: {exc}", path)
            return None

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.folder)


def read(folder: str) -> Package:
    """Read the package in ``folder``: its asset map, packing lists and compositions.

    PackageError when the folder has no asset map. Everything else that is wrong (a refused
    path, paperwork that cannot be parsed) is a Problem in the package, which holds it.
    """
    folder = os.path.abspath(folder)
    am_path = _find_name(folder, ASSETMAP_NAMES)
    if am_path is None:
        raise PackageError(f"{folder}: no ASSETMAP: not an IMF package or a DCP")
    r = _Reader(folder)
    assets: dict[str, MapAsset] = {}
    root = r.xml(am_path, "the asset map")
    if root is not None and _local(root.tag) != "AssetMap":
        r.problem("malformed", f"{r.rel(am_path)} is not an asset map (root element "
                               f"{_local(root.tag)})", am_path)
        root = None
    for el in _children(_child(root, "AssetList") if root is not None else None, "Asset"):
        _map_asset(r, el, assets)

    # packing lists: the assets marked PackingList, else any XML asset whose root is one
    pkl: dict[str, PklAsset] = {}
    pkl_paths = [a.path for a in assets.values() if a.packing_list and a.path]
    if not pkl_paths:
        pkl_paths = [a.path for a in assets.values()
                     if a.path and a.relpath.lower().endswith(".xml") and _sniff(a.path)
                     == "PackingList"]
    if not pkl_paths and root is not None:
        r.problem("unverifiable", "the asset map lists no packing list: no hash can be "
                                  "checked", am_path)
    for path in pkl_paths:
        el = r.xml(path, "the packing list")
        if el is None:
            continue
        if _local(el.tag) != "PackingList":
            r.problem("malformed", f"{r.rel(path)} is marked a packing list but is a "
                                   f"{_local(el.tag)}", path)
            continue
        _pkl_assets(r, el, pkl)

    # compositions: the XML assets whose root is a CompositionPlaylist
    comps: list[Composition] = []
    paper: set[str] = {am_path, *pkl_paths}
    for a in assets.values():
        if a.path is None or a.path in paper:
            continue
        entry = pkl.get(a.id)
        is_xml = (entry is not None and "xml" in entry.type.lower()) or \
            a.relpath.lower().endswith(".xml")
        if not is_xml or not os.path.isfile(a.path):
            continue
        root_name = _sniff(a.path)
        if root_name not in ("CompositionPlaylist", "OutputProfileList",
                             "SidecarCompositionMap", "!DOCTYPE"):
            continue
        el = r.xml(a.path, _PAPER_NAMES.get(root_name, "the package XML"))
        paper.add(a.path)
        if el is not None and _local(el.tag) == "CompositionPlaylist":
            comp = _composition(r, el, a.path)
            if comp is not None:
                comps.append(comp)

    volindex = _find_name(folder, VOLINDEX_NAMES)
    if volindex:
        paper.add(volindex)
    track_files = {res.track_file_id for c in comps for res in c.resources}
    by_path = {a.path: a for a in assets.values() if a.path}
    roles: dict[str, Role] = {}
    for path in _walk_package(folder):
        a = by_path.get(path)
        rel = os.path.relpath(path, folder)
        if path in paper:
            roles[path] = "paperwork"
        elif a is not None and a.id in track_files:
            roles[path] = "track_file"
        elif _CHECKSUM.fullmatch(os.path.basename(path)) or rel.split(os.sep)[0] == "ascmhl":
            roles[path] = "paperwork"
        elif a is not None:
            roles[path] = "asset"
        else:
            roles[path] = "unlisted"
    return Package(folder, am_path, assets, pkl, tuple(comps), roles, tuple(r.problems),
                   r.digests)


def _sniff(path: str) -> str | None:
    """The local name of the root element of an XML file, from its first 4 KiB (no parse
    of the whole file: a track file named .xml costs nothing); ``"!DOCTYPE"`` when a
    document type declaration comes first (no package XML has one: refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            head = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    for m in re.finditer(r"<(!DOCTYPE|!ENTITY|[A-Za-z_][\w.:-]*)", text):
        return "!DOCTYPE" if m[1].startswith("!") else m[1].rpartition(":")[2]
    return None


def _map_asset(r: _Reader, el: ET.Element, out: dict[str, MapAsset]) -> None:
    raw_id = _text(el, "Id")
    if not raw_id:
        r.problem("malformed", "an asset map entry has no Id")
        return
    aid = normalise_id(raw_id)
    packing = (_text(el, "PackingList") or "").lower() in ("true", "1")
    chunks = _children(_child(el, "ChunkList"), "Chunk")
    if not chunks:
        r.problem("malformed", f"asset {aid} has no path in the asset map", asset_id=aid)
        return
    raw = _text(chunks[0], "Path") or ""
    if len(chunks) > 1:
        r.problem("unverifiable", f"asset {aid} ({raw}) is split over {len(chunks)} chunks "
                                  "or volumes: not supported", asset_id=aid)
        out[aid] = MapAsset(aid, raw, None, packing)
        return
    rel, why = _safe_relpath(raw)
    path = None
    if rel is not None:
        path, why = _resolve(r.folder, rel)
        if path and not os.path.lexists(path) and "%" in rel:
            decoded, why2 = _safe_relpath(urllib.parse.unquote(rel))
            if decoded is not None:
                alt, why3 = _resolve(r.folder, decoded)
                if alt and os.path.lexists(alt):
                    path, why = alt, None
                elif why3:
                    path, why = None, why3
            else:
                path, why = None, why2
    if path is None:
        r.problem("unsafe", f"asset {aid}: path {raw!r} refused: {why}", asset_id=aid)
    if aid in out:
        r.problem("malformed", f"asset {aid} is listed twice in the asset map", asset_id=aid)
        return
    out[aid] = MapAsset(aid, raw, path, packing)


def _pkl_assets(r: _Reader, root: ET.Element, out: dict[str, PklAsset]) -> None:
    pkl_id = normalise_id(_text(root, "Id") or "")
    for el in _children(_child(root, "AssetList"), "Asset"):
        raw_id = _text(el, "Id")
        if not raw_id:
            r.problem("malformed", f"packing list {pkl_id}: an asset has no Id")
            continue
        aid = normalise_id(raw_id)
        alg_el = _child(el, "HashAlgorithm")
        uri = (alg_el.get("Algorithm") or "").strip() if alg_el is not None else ""
        algorithm = HASH_ALGORITHMS.get(uri, "sha1") if uri else "sha1"
        if uri and uri not in HASH_ALGORITHMS:
            algorithm = f"unsupported:{uri}"
        entry = PklAsset(aid, _text(el, "Hash"), algorithm, _int(el, "Size"),
                         _text(el, "Type", "") or "", _text(el, "OriginalFileName"), pkl_id)
        if aid in out and (out[aid].hash, out[aid].size) != (entry.hash, entry.size):
            r.problem("malformed", f"asset {aid} is listed by two packing lists with "
                                   "different hashes or sizes", asset_id=aid)
        out.setdefault(aid, entry)


# ---------------------------------------------------------------------------------------------
# compositions and timecode

def _rational(text: str | None) -> Fraction | None:
    if not text:
        return None
    parts = text.split()
    try:
        if len(parts) == 2 and int(parts[1]) > 0 and int(parts[0]) > 0:
            return Fraction(int(parts[0]), int(parts[1]))
        if len(parts) == 1 and int(parts[0]) > 0:
            return Fraction(int(parts[0]))
    except ValueError:
        return None
    return None


def _rate(r: Fraction) -> str:
    return str(r.numerator) if r.denominator == 1 else f"{float(r):.3f}".rstrip("0")


def _standard(tag: str) -> Literal["imf", "dcp-smpte", "dcp-interop", "unknown"]:
    ns = _ns(tag)
    if "/2067-3/" in ns:
        return "imf"
    if "429-7" in ns:
        return "dcp-smpte"
    if "digicine.com" in ns:
        return "dcp-interop"
    return "unknown"


def _composition(r: _Reader, root: ET.Element, path: str) -> Composition | None:
    standard = _standard(root.tag)
    cid = normalise_id(_text(root, "Id") or "")
    title = _text(root, "ContentTitle") or _text(root, "ContentTitleText") or \
        os.path.basename(path)
    rate = _rational(_text(root, "EditRate"))
    # (segment id, [(sequence name, track id, [resource elements], default edit rate)])
    segments: list[tuple[str, list[tuple[str, str | None, list[ET.Element]]]]] = []
    seg_list = _child(root, "SegmentList")
    if seg_list is not None:  # IMF
        for seg in _children(seg_list, "Segment"):
            seqs = []
            for sq in _children(_child(seg, "SequenceList")):
                res = [x for x in _children(_child(sq, "ResourceList"), "Resource")
                       if _text(x, "TrackFileId")]
                if res:
                    seqs.append((_local(sq.tag), _text(sq, "TrackId"), res))
            segments.append((normalise_id(_text(seg, "Id") or ""), seqs))
    else:  # DCP: reels of assets; the asset's Id is the track file's
        for reel in _children(_child(root, "ReelList"), "Reel"):
            seqs = []
            for asset in _children(_child(reel, "AssetList")):
                if _local(asset.tag) in _NOT_FILES or _local(asset.tag).endswith("Metadata"):
                    continue
                if _text(asset, "Id"):
                    seqs.append((_local(asset.tag), None, [asset]))
            segments.append((normalise_id(_text(reel, "Id") or ""), seqs))
        if rate is None:
            first = next((a[2][0] for _s, seqs in segments for a in seqs
                          if "Picture" in a[0]), None) or \
                next((a[2][0] for _s, seqs in segments for a in seqs), None)
            rate = _rational(_text(first, "EditRate")) if first is not None else None
    if rate is None:
        r.problem("malformed", f"composition {title!r} ({r.rel(path)}) has no valid EditRate",
                  path)
        rate = Fraction(24)

    tc_el = _child(root, "CompositionTimecode")
    nominal = max(1, round(rate))
    tc_rate = _int(tc_el, "TimecodeRate", nominal) or nominal
    drop = (_text(tc_el, "TimecodeDropFrame") or "").lower() in ("true", "1")
    start_text = _text(tc_el, "TimecodeStartAddress") or "00:00:00:00"
    start = _tc_frames(start_text, tc_rate, drop)
    if start is None:
        r.problem("malformed", f"composition {title!r}: TimecodeStartAddress "
                               f"{start_text!r} is not a timecode", path)
        start = 0

    resources: list[Resource] = []
    seg_start = Fraction(0)   # seconds
    for index, (seg_id, seqs) in enumerate(segments, start=1):
        lengths: list[tuple[str, Fraction]] = []
        for seq_name, track_id, res_els in seqs:
            pos = seg_start
            for el in res_els:
                res_rate = _rational(_text(el, "EditRate")) or rate
                intrinsic = _int(el, "IntrinsicDuration", 0) or 0
                entry = _int(el, "EntryPoint", 0) or 0
                dur = _int(el, "SourceDuration") if seg_list is not None else \
                    _int(el, "Duration")
                if dur is None:
                    dur = max(0, intrinsic - entry)
                repeat = max(1, _int(el, "RepeatCount", 1) or 1)
                record_in = int(pos * rate)
                tc = _tc_string(start + record_in * tc_rate // nominal, tc_rate, drop)
                tfid = _text(el, "TrackFileId") if seg_list is not None else _text(el, "Id")
                resources.append(Resource(
                    normalise_id(_text(el, "Id") or ""), normalise_id(tfid or ""), seq_name,
                    normalise_id(track_id) if track_id else None, index, seg_id, res_rate,
                    entry, dur, repeat, record_in, tc, encrypted=_child(el, "KeyId") is not None))
                pos += Fraction(dur * repeat) / res_rate
            lengths.append((seq_name, pos - seg_start))
        main = [d for name, d in lengths if name in ("MainImageSequence", "MainPicture")
                or "Picture" in name]
        seg_start += main[0] if main else max((d for _n, d in lengths), default=Fraction(0))
    return Composition(cid, title, rate, standard, path, _tc_string(start, tc_rate, drop),
                       int(seg_start * rate), len(segments), tuple(resources))


def _drop_count(tc_rate: int) -> int:
    return round(tc_rate / 15) if tc_rate % 30 == 0 else 0   # 2 at 30, 4 at 60


def _tc_frames(text: str, tc_rate: int, drop: bool) -> int | None:
    """A timecode label (``01:00:00:00``; ``;`` or ``.`` before frames too) as a frame
    count at ``tc_rate``."""
    m = re.fullmatch(r"(\d{1,2})[:;.](\d{2})[:;.](\d{2})[:;.](\d{2,3})", text.strip())
    if m is None:
        return None
    hh, mm, ss, ff = map(int, m.groups())
    total = (hh * 3600 + mm * 60 + ss) * tc_rate + ff
    d = _drop_count(tc_rate) if drop else 0
    if d:
        minutes = hh * 60 + mm
        total -= d * (minutes - minutes // 10)
    return total


def _tc_string(frames: int, tc_rate: int, drop: bool) -> str:
    """A frame count at ``tc_rate`` as ``HH:MM:SS:FF`` (drop frame: ``HH:MM:SS;FF``)."""
    d = _drop_count(tc_rate) if drop else 0
    if d:
        per10 = tc_rate * 600 - d * 9
        per1 = tc_rate * 60 - d
        tens, rem = divmod(frames, per10)
        frames += d * 9 * tens + (d * ((rem - d) // per1) if rem > d else 0)
    ff = frames % tc_rate
    secs = frames // tc_rate
    sep = ";" if d else ":"
    return f"{secs // 3600 % 24:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}{sep}{ff:02d}"


# ---------------------------------------------------------------------------------------------
# verification

Hasher = Callable[[str, tuple[str, ...]], Mapping[str, bytes]]


def needed(package: Package) -> dict[str, str]:
    """Which digest each listed file needs (path -> hashlib name, sha1 for a PKL), for a
    session that hashes files itself: it adds that algorithm to the read it makes for the
    fingerprint and passes the result to :func:`verify` as ``digests``."""
    out = {}
    for aid, entry in package.pkl.items():
        a = package.assets.get(aid)
        if a and a.path and a.path not in package.digests and \
                not entry.algorithm.startswith("unsupported:"):
            out[a.path] = entry.algorithm
    return out


def verify(package: Package, *, digests: Mapping[str, Mapping[str, bytes]] | None = None,
           hasher: Hasher | None = None, others: Iterable[Package] = ()) -> list[Problem]:
    """The package's integrity problems: those found while reading it, then every PKL asset
    that is missing, not a regular file, of another size or with another hash than its PKL
    says, and every track file a CPL references that no package holds (a supplemental
    package's CPL may compose track files of the packages in ``others``).

    Each file is read at most once, and not at all when its digest is in ``digests``
    (path -> {hashlib name: digest bytes}, the session's own hashing) or its size already
    differs. ``hasher(path, algorithms)`` replaces the read (default :func:`hash_file`).
    Paperwork is checked against the bytes that were parsed.
    """
    problems = list(package.problems)
    hasher = hasher or (lambda path, algs: hash_file(path, algs))
    digests = digests or {}
    others = list(others)
    for aid, entry in sorted(package.pkl.items(), key=lambda it: it[0]):
        a = package.assets.get(aid)
        label = entry.original_name or aid
        if a is None:
            problems.append(Problem("missing", f"{label}: listed in packing list "
                                               f"{entry.pkl} but not in the asset map",
                                    asset_id=aid))
            continue
        if a.path is None:
            continue  # refused while reading: already a problem
        rel = os.path.relpath(a.path, package.folder)
        try:
            st = os.lstat(a.path)
        except FileNotFoundError:
            problems.append(Problem("missing", f"{rel} is missing (asset {aid})", a.path, aid))
            continue
        except OSError as exc:
            problems.append(Problem("missing", f"{rel} cannot be looked at: "
                                               f"{exc.strerror or exc}", a.path, aid))
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(Problem("unsafe", f"{rel} is not a regular file", a.path, aid))
            continue
        if entry.size is not None and st.st_size != entry.size:
            problems.append(Problem("altered", f"{rel} is {st.st_size} bytes; its packing list "
                                               f"says {entry.size}", a.path, aid))
            continue
        if entry.algorithm.startswith("unsupported:"):
            problems.append(Problem("unverifiable", f"{rel}: hash algorithm "
                                                    f"{entry.algorithm[12:]} is not supported",
                                    a.path, aid))
            continue
        expected = entry.expected()
        if expected is None:
            problems.append(Problem("unverifiable", f"{rel}: its packing list gives no "
                                                    "usable hash", a.path, aid))
            continue
        got = (package.digests.get(a.path) or digests.get(a.path) or {}).get(entry.algorithm)
        if got is None:
            try:
                got = hasher(a.path, (entry.algorithm,))[entry.algorithm]
            except FileNotFoundError:
                problems.append(Problem("missing", f"{rel} vanished while being checked",
                                        a.path, aid))
                continue
            except OSError as exc:
                problems.append(Problem("unverifiable", f"{rel} cannot be read: "
                                                        f"{exc.strerror or exc}", a.path, aid))
                continue
        if got != expected:
            problems.append(Problem(
                "altered", f"{rel} does not match its packing list: {entry.algorithm} "
                           f"{pkl_hash(got)}, expected {entry.hash}", a.path, aid))

    for comp in package.compositions:
        for tfid in comp.track_file_ids():
            if tfid in package.assets:
                a = package.assets[tfid]
                if tfid not in package.pkl and a.path is not None:
                    there = os.path.lexists(a.path)
                    problems.append(Problem(
                        "unverifiable" if there else "missing",
                        f"track file {a.relpath} of '{comp.title}' is in no packing list"
                        + ("" if there else " and is missing"), a.path, tfid))
                continue
            if any(tfid in o.assets for o in others):
                continue
            where = "; ".join(Placement(comp, r).describe() for r in comp.uses(tfid)[:3])
            problems.append(Problem("missing", f"'{comp.title}' composes track file {tfid}, "
                                               f"which no package given holds ({where})",
                                    asset_id=tfid))
    return problems


def composition_digest(composition: Composition, fingerprints: Mapping[str, str]) -> str:
    """What an approval of a composition binds to: sha256 over the CPL's fingerprint and
    every track file's, in timeline order (``fingerprints``: path or asset id -> the
    session's ``sha256:<hex>``; the CPL by its path). KeyError when one is missing."""
    h = hashlib.sha256(b"provgate composition v1\n")
    h.update(f"cpl {fingerprints[composition.path]}\n".encode())
    for tfid in composition.track_file_ids():
        h.update(f"{tfid} {fingerprints[tfid]}\n".encode())
    return "sha256:" + h.hexdigest()
