"""The GenAI register: what the vendor declares, and how it is reconciled with what files say.

A delivery may carry ``GENAI-DISCLOSURE.csv`` (or ``.json``) at its root: one entry per use of
a generative AI tool, with the files it covers, the tool, its purpose, the guidance's category,
the environment it ran in, whether it may train on its inputs, temp or final, and the talent's
consent and the studio's approval references. ``schemas/register.schema.json`` is its contract.

- :func:`find` looks for it at a delivery root (any case; a link out of the root is refused);
  :func:`load` reads and validates it, bounded (vendors write it): at most ``MAX_BYTES``, at
  most ``MAX_ENTRIES`` entries, field lengths from the schema, with every problem named by line
  (CSV) or entry (JSON) and column, and what to write instead (ConfigError, exit 2).
- :meth:`Register.entries_for` says which entries cover a file. A ``files`` value is one or
  more patterns separated by ``;``, each relative to the delivery root and case-sensitive (as
  approvals): a path glob (``*``, ``?``, ``[..]``, ``**``, ``{a,b}``; ``\\`` reads as ``/``);
  one that matches a folder covers what is in it, one without ``/`` matches a name at any
  depth; frame numbers as ``####`` or ``%04d`` (padded to four digits, as sequences.py
  groups frames: ``sh010.1001.exr``, ``sh010.10001.exr``, not ``sh010.101.exr``); a shot
  name (a word with no ``/``, ``.``, wildcard or frame token) covers a folder of that name
  and every file whose name holds it between ``_ . -`` or spaces
  (``EP101_sh010_comp.1001.exr``).
- :func:`reconcile` joins a file's detected kind with the entries that cover it: disclosed,
  undisclosed, declared only, and the guidance's principles as findings with rule ids that the
  policy's ``[register]`` table maps to actions (:func:`action_for`).

Nothing here reads media, touches the ledger or decides an action on its own: the policy stage
does, with what :func:`reconcile` and :func:`action_for` return.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import os
import re
import stat
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import bracex
from wcmatch import glob as wglob

from provgate import data
from provgate.errors import ConfigError
from provgate.vocabulary import ACTION_STRENGTH, AI_KINDS, KIND_RANK

# -- the register's shape ---------------------------------------------------------------------

FILE_NAMES = ("GENAI-DISCLOSURE.csv", "GENAI-DISCLOSURE.json")
TEMPLATE = data.PACKAGE_DIR / "register_template.csv"
COLUMNS = ("id", "files", "tool", "version", "purpose", "category", "environment",
           "trains_on_inputs", "stage", "consent_ref", "approval_ref")
CATEGORIES = ("data_use", "creative_output", "talent_performance", "ethics_representation",
              "other")
ENVIRONMENTS = ("enterprise", "consumer")
STAGES = ("temp", "final")
# the categories whose entries say how the file itself was made (data use says what was given
# to a tool, not what came out of it)
CONTENT_CATEGORIES = frozenset(CATEGORIES) - {"data_use"}

# bounds: the register is written by vendors, so reading it must cost little whatever it holds
MAX_BYTES = 8 << 20            # 10,000 entries of 800 bytes each
MAX_ENTRIES = 10_000           # a register lists uses, not files: one entry covers a shot
MAX_PATTERNS = 32              # per entry, after {a,b} expansion
MAX_REGISTER_PATTERNS = 50_000
MAX_ERRORS = 20                # problems listed in one message (the count says how many more)

_YES = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}
_NAMES = frozenset(n.casefold() for n in FILE_NAMES)

# what to write instead, per field, in a producer's words (the error messages end with it)
_HINT = {
    "id": "give each use a short reference of letters, digits, '.', '_' or '-', unique in the "
          "register, at most 64 characters (GENAI-001)",
    "files": "name the delivered files it covers: a path from the top of the delivery "
             "(vfx/sh010/sh010_comp_v003.exr), a folder (vfx/sh010), a wildcard "
             "(vfx/*_comp_v*.exr), a frame sequence (sh010_comp.####.exr) or a shot name "
             "(sh010); separate several with ';'",
    "tool": "name the generative AI tool or service (Runway, Adobe Firefly, ElevenLabs)",
    "version": "write its version or model (Gen-3 Alpha), or leave it empty",
    "purpose": "say in a few words what the tool did (sky replacement, generated background "
               "plate, voice clone for ADR)",
    "category": "write one of " + ", ".join(CATEGORIES),
    "environment": "write enterprise (an enterprise-secured account or deployment the studio "
                   "accepts) or consumer (a personal or public service)",
    "trains_on_inputs": "write yes if the tool may train on or keep what it was given, no if "
                        "it may not",
    "stage": "write temp (temporary, to be replaced) or final (stays in the deliverable)",
    "consent_ref": "write the talent's consent reference (contract, rider or release), or "
                   "leave it empty",
    "approval_ref": "write the studio's written approval reference, or leave it empty",
}


# -- values -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Entry:
    """One declared use of a generative AI tool, as the vendor wrote it.

    ``files`` are the patterns as written (after ``;`` splitting); ``where`` says where the
    entry was declared (``GENAI-DISCLOSURE.csv line 7``) for messages and evidence."""

    id: str
    files: tuple[str, ...]
    tool: str
    version: str | None
    purpose: str
    category: str
    environment: str
    trains_on_inputs: bool
    stage: str
    consent_ref: str | None = None
    approval_ref: str | None = None
    where: str = ""
    _paths: tuple[_PathPattern, ...] = field(default=(), repr=False, compare=False)
    _shots: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def declared_kind(self) -> str | None:
        """The kind this entry declares for the files it covers (see :func:`declared_kind`)."""
        return declared_kind(self)[0]

    @property
    def label(self) -> str:
        """``GENAI-003 (Runway Gen-3: sky replacement)``: the entry in a sentence."""
        tool = f"{self.tool} {self.version}" if self.version else self.tool
        return f"{self.id} ({tool}: {self.purpose})"

    def to_dict(self) -> dict[str, Any]:
        """The entry in the schema's form (``files`` as a list)."""
        return {"id": self.id, "files": list(self.files), "tool": self.tool,
                "version": self.version, "purpose": self.purpose, "category": self.category,
                "environment": self.environment, "trains_on_inputs": self.trains_on_inputs,
                "stage": self.stage, "consent_ref": self.consent_ref,
                "approval_ref": self.approval_ref}


@dataclass(frozen=True, slots=True)
class Register:
    """A loaded, validated register. ``root`` is the delivery root its patterns are relative
    to (the folder it was found in, unless :func:`load` was told otherwise); ``digest`` the
    sha256 of the file's bytes, for records."""

    source: str
    entries: tuple[Entry, ...]
    digest: str
    root: str | None = None
    warnings: tuple[str, ...] = ()
    _index: _Index | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return os.path.basename(self.source)

    def entry(self, entry_id: str) -> Entry:
        """The entry with this id (``provgate approve --entry ID``), or a ConfigError."""
        try:
            return next(e for e in self.entries if e.id == entry_id)
        except StopIteration:
            known = ", ".join(e.id for e in self.entries[:10]) + (
                ", ..." if len(self.entries) > 10 else "")
            raise ConfigError(f"{self.source}: no entry {entry_id!r} (entries: "
                              f"{known or 'none'})") from None

    def entries_for(self, path: str | os.PathLike[str],
                    root: str | os.PathLike[str] | None = None) -> list[Entry]:
        """The entries that cover the file at ``path`` (absolute, or relative to the working
        folder), in register order. Patterns are matched against its path below ``root``
        (default: the register's own root); a file outside the root is covered by none.
        Matching is case-sensitive, as approvals are; names are compared in NFC (a Mac's NFD
        names match the register's composed ones)."""
        base = root if root is not None else self.root
        if base is None:
            raise ValueError("entries_for needs the delivery root of a register loaded "
                             "without one")
        comps = _components(os.fspath(path), os.fspath(base))
        if comps is None:
            return []
        index = self._index if self._index is not None else _Index.build(self.entries)
        return [self.entries[i] for i in sorted(index.covering(comps))]

    def unused(self, paths: Iterable[str | os.PathLike[str]],
               root: str | os.PathLike[str] | None = None) -> list[Entry]:
        """The entries that cover none of ``paths`` (a declared use with no file in this
        delivery: a typo in ``files``, or a file that was not delivered)."""
        used: set[str] = set()
        for p in paths:
            used.update(e.id for e in self.entries_for(p, root))
            if len(used) == len(self.entries):
                break
        return [e for e in self.entries if e.id not in used]

    def to_doc(self) -> dict[str, Any]:
        """The register in the schema's JSON form (valid against register.schema.json)."""
        return {"version": 1, "entries": [e.to_dict() for e in self.entries]}


class Finding(NamedTuple):
    """A rule the register raises for one file: ``rule`` is relative to the policy's
    ``[register]`` table (``undisclosed``, ``principles.trains_on_inputs``)."""

    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What the register and the file's own evidence say together.

    ``status``: ``disclosed`` (AI detected and declared), ``undisclosed`` (AI detected, no
    entry declares how the file was made), ``declared_only`` (entries cover it, its metadata
    shows no AI), ``none`` (no AI detected, nothing declared). ``kind`` is the file's kind
    after reconciliation (a declaration can raise it, never lower it); ``detected`` and
    ``declared`` the kinds each side says (None when it says none)."""

    status: str
    kind: str
    detected: str | None
    declared: str | None
    entries: tuple[Entry, ...]
    findings: tuple[Finding, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The form a decision record carries under ``register``."""
        return {"status": self.status, "kind": self.kind, "detected": self.detected,
                "declared": self.declared, "entries": [e.id for e in self.entries],
                "findings": [{"rule": f.rule, "reason": f.reason} for f in self.findings],
                "reason": self.reason}

    def signals(self) -> tuple[Any, ...]:
        """The covering entries that declare a kind, as evidence signals (source
        ``register``), for the verdict's evidence: the declaration is part of the evidence."""
        from provgate.signals import Signal
        out = []
        for e in self.entries:
            kind, why = declared_kind(e)
            if kind is None:
                continue
            value = json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True)
            out.append(Signal(kind=kind, meaning=f"declared in the GenAI register: {e.label}, "
                              f"{e.category.replace('_', ' ')}, {e.stage} ({why})",
                              source="register", tag=e.where or e.id, value=value,
                              marker=f"register.{e.category}"))
        return tuple(out)


# -- finding and reading ----------------------------------------------------------------------

def find(delivery_root: str | os.PathLike[str]) -> Path | None:
    """The register at the top of a delivery: ``GENAI-DISCLOSURE.csv`` or ``.json``, in any
    case. None when there is none (or the root is not a folder). A link to a file inside the
    delivery is followed (its real path is returned); a link out of the delivery, two
    registers, or a register that is not a regular file are refused (ConfigError, exit 2)."""
    root = os.fspath(delivery_root)
    try:
        with os.scandir(root) as it:
            hits = sorted((e for e in it if _fold(e.name) in _NAMES), key=lambda e: e.name)
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        raise ConfigError(f"cannot look for the GenAI register in {root}: "
                          f"{exc.strerror}") from exc
    if not hits:
        return None
    if len(hits) > 1:
        raise ConfigError(f"{root}: {len(hits)} GenAI registers ("
                          + ", ".join(e.name for e in hits)
                          + "): deliver one register per delivery")
    entry = hits[0]
    path = entry.path
    if entry.is_symlink():
        real_root = os.path.realpath(root)
        target = os.path.realpath(path)
        if os.path.commonpath([real_root, target]) != real_root:
            raise ConfigError(f"{path} is a link out of the delivery (to {target}): deliver "
                              "the register itself, not a link to it")
        path = target
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is not a regular file: the GenAI register is a CSV or "
                          "JSON file")
    return Path(path)


def discover(delivery_root: str | os.PathLike[str]) -> Register | None:
    """:func:`find` then :func:`load`, with the delivery root as the patterns' root."""
    path = find(delivery_root)
    return load(path, root=delivery_root) if path else None


def template() -> str:
    """The commented blank register ``provgate register template`` writes."""
    return TEMPLATE.read_text(encoding="utf-8")


def load(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
         ) -> Register:
    """Read and validate a register (``.csv`` or ``.json``). ``root`` is the delivery root
    its ``files`` are relative to (default: the folder the register is in). Every problem
    is reported at once (the first ``MAX_ERRORS``), each naming the line or entry and the
    column and saying what to write; ConfigError (exit 2)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ConfigError(f"{p}: a GenAI register is a .csv or .json file "
                          "(write one with `provgate register template`)")
    raw = _read_bounded(p)
    name = p.name
    if suffix == ".json":
        doc, where = _parse_json(raw, name)
        col = "key"
    else:
        doc, where = _parse_csv(raw, name)
        col = "column"
    problems = _schema_problems(doc, where, col, csv_form=suffix == ".csv")
    bad = {i for i, _ in problems if i is not None}
    if any(i is None for i, _ in problems):  # the document itself is wrong: nothing to build
        _raise(name, [m for _, m in problems])
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    total = 0
    for i, item in enumerate(doc["entries"]):
        if i in bad:
            continue
        try:
            entry = _entry(item, where[i])
        except _PatternError as exc:
            problems.append((i, f"{where[i]}, {col} files: {exc}"))
            continue
        if entry.id in seen:
            problems.append((i, f"{where[i]}, {col} id: {entry.id!r} is already the id of "
                                f"{seen[entry.id]}: {_HINT['id']}"))
            continue
        seen[entry.id] = where[i]
        total += len(entry._paths) + len(entry._shots)
        if total > MAX_REGISTER_PATTERNS:
            problems.append((i, f"{where[i]}: more than {MAX_REGISTER_PATTERNS} file patterns "
                                "in the register: cover files with folders, wildcards or "
                                "shots rather than one by one"))
            break
        entries.append(entry)
    if problems:
        _raise(name, [m for _, m in sorted(problems, key=lambda t: t[0])])
    examples = [e.id for e in entries if e.id.upper().startswith("EXAMPLE")]
    warnings = (f"{name}: {len(examples)} entr{'y is' if len(examples) == 1 else 'ies are'} "
                f"the template's example{'s' if len(examples) > 1 else ''} ("
                f"{', '.join(examples[:5])}{', ...' if len(examples) > 5 else ''}): replace "
                "them with real uses or delete them",) if examples else ()
    base = os.path.abspath(os.fspath(root)) if root is not None else str(p.resolve().parent)
    return Register(source=str(p), entries=tuple(entries),
                    digest="sha256:" + hashlib.sha256(raw).hexdigest(), root=base,
                    warnings=warnings, _index=_Index.build(entries))


def _read_bounded(p: Path) -> bytes:
    """The file's bytes, at most MAX_BYTES: a larger file is refused from its size alone; a
    FIFO or device is refused without reading (opened non-blocking)."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"GenAI register not found: {p} (write one with `provgate register "
                          "template`)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{p} is not a regular file: the GenAI register is a CSV or "
                              "JSON file")
        if st.st_size > MAX_BYTES:
            raise ConfigError(f"{p}: {st.st_size / 1e6:.1f} MB; a GenAI register is at most "
                              f"{MAX_BYTES >> 20} MiB ({MAX_ENTRIES} entries): it lists uses, "
                              "not files, so cover files with folders, wildcards, sequences "
                              "or shots")
        chunks, got = [], 0
        while got <= MAX_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > MAX_BYTES:
            raise ConfigError(f"{p}: grew past {MAX_BYTES >> 20} MiB while it was read: a "
                              "GenAI register is at most that")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{name} line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}): "
                          "save the register as UTF-8 (in Excel: CSV UTF-8)") from None


# -- CSV --------------------------------------------------------------------------------------

class _Lines:
    """The physical lines of a CSV text for csv.reader, skipping blank lines and '#' comment
    lines between records (never inside a quoted value), and counting lines."""

    def __init__(self, text: str) -> None:
        self._it = iter(io.StringIO(text, newline=""))
        self.line = 0
        self.start = 0
        self.at_start = True

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            s = next(self._it)
            self.line += 1
            if self.at_start:
                bare = s.strip()
                if not bare or _is_comment(bare):
                    continue
                self.start = self.line
                self.at_start = False
            return s


def _is_comment(text: str) -> bool:
    """A '#' line, also as a spreadsheet saves one (``"# note, with a comma",,,``)."""
    return text.lstrip().lstrip('"').lstrip().startswith("#")


def _delimiter(text: str) -> str:
    """',' unless the header row uses ';' (Excel in many European locales) or tabs."""
    for line in io.StringIO(text, newline=""):
        bare = line.strip()
        if bare and not _is_comment(bare):
            if "," in bare:
                return ","
            return ";" if ";" in bare else ("\t" if "\t" in bare else ",")
    return ","


def _column(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def _enum_word(value: str) -> str:
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def _parse_csv(raw: bytes, name: str) -> tuple[dict[str, Any], list[str]]:
    text = _decode(raw, name)
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=_delimiter(text), strict=True)
    header: list[str] | None = None
    entries: list[dict[str, Any]] = []
    where: list[str] = []
    problems: list[str] = []
    try:
        for row in reader:
            line = lines.start
            lines.at_start = True
            if row and _is_comment(row[0]):
                continue
            if header is None:
                header = [_column(c) for c in row]
                _check_header(header, name, line)
                continue
            if not any(c.strip() for c in row):
                continue
            if len(entries) >= MAX_ENTRIES:
                raise ConfigError(f"{name} line {line}: more than {MAX_ENTRIES} entries: a "
                                  "register lists uses, not files; cover many files with one "
                                  "entry (a folder, a wildcard, a sequence or a shot)")
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                problems.append(f"{name} line {line}: {len(row)} values but the header has "
                                f"{len(header)} columns: put a value that holds "
                                "a comma in double quotes")
                continue
            item: dict[str, Any] = {}
            for col, cell in zip(header, row, strict=False):  # short rows: empty cells
                value = cell.strip()
                if not value:
                    continue
                if col in ("category", "environment", "stage"):
                    value = _enum_word(value)
                elif col == "trains_on_inputs":
                    value = _YES.get(value.lower(), value)
                item[col] = value
            entries.append(item)
            where.append(f"{name} line {line}")
    except csv.Error as exc:
        start = lines.start if not lines.at_start else lines.line
        msg = str(exc)
        if "field limit" in msg:
            msg = ("a value longer than 131072 characters: a double quote opened on line "
                   f"{start} may never be closed")
        elif "unexpected end of data" in msg:
            msg = (f"a double quote opened on line {start} is never closed: close it, or "
                   "double a quote that is part of a value (\"\")")
        raise ConfigError(f"{name} line {start}: not valid CSV: {msg}") from None
    if header is None:
        raise ConfigError(f"{name}: no header row: the first line that is not a comment "
                          f"names the columns ({', '.join(COLUMNS)}); start from `provgate "
                          "register template`")
    if problems:
        _raise(name, problems)
    return {"entries": entries}, where


def _check_header(header: list[str], name: str, line: int) -> None:
    required = data.schema("register")["$defs"]["entry"]["required"]
    problems = []
    unknown = [c for c in header if c and c not in COLUMNS]
    if unknown:
        problems.append(f"{name} line {line}: unknown column(s) {', '.join(map(repr, unknown))}"
                        f": the columns are {', '.join(COLUMNS)}")
    if "" in header:
        problems.append(f"{name} line {line}: a column has no name: the columns are "
                        f"{', '.join(COLUMNS)}")
    dupes = sorted({c for c in header if c and header.count(c) > 1})
    if dupes:
        problems.append(f"{name} line {line}: column(s) {', '.join(dupes)} appear twice: keep "
                        "one of each")
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(f"{name} line {line}: missing column(s) {', '.join(missing)}: the "
                        f"header names the columns ({', '.join(COLUMNS)})")
    if problems:
        _raise(name, problems)


# -- JSON -------------------------------------------------------------------------------------

def _parse_json(raw: bytes, name: str) -> tuple[dict[str, Any], list[str]]:
    text = _decode(raw, name)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} line {exc.lineno} column {exc.colno}: not valid JSON: "
                          f"{exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply: a register is an object with an "
                          "\"entries\" array of flat objects") from None
    if isinstance(doc, list):
        doc = {"entries": doc}
    if not isinstance(doc, dict):
        raise ConfigError(f"{name}: a register is an object with an \"entries\" array (or an "
                          "array of entries)")
    entries = doc.get("entries")
    if isinstance(entries, list) and len(entries) > MAX_ENTRIES:
        raise ConfigError(f"{name}: {len(entries)} entries, more than {MAX_ENTRIES}: a "
                          "register lists uses, not files; cover many files with one entry (a "
                          "folder, a wildcard, a sequence or a shot)")
    items = entries if isinstance(entries, list) else []
    where = []
    for i, item in enumerate(items):
        ident = item.get("id") if isinstance(item, dict) else None
        label = f" (id {_show(ident)})" if isinstance(ident, str) and ident else ""
        where.append(f"{name} entry {i + 1}{label}")
    # files given as one string: split like the CSV column
    return doc, where


# -- validation -------------------------------------------------------------------------------

def _show(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 4] + "...'"


def _schema_problems(doc: dict[str, Any], where: list[str], col: str, csv_form: bool
                     ) -> list[tuple[int | None, str]]:
    """Every schema error, in a producer's words: ``(entry index or None, message)``."""
    out: list[tuple[int | None, str]] = []
    missing_seen: set[tuple[int, str]] = set()
    errors = sorted(data.validator("register").iter_errors(doc),
                    key=lambda e: [str(p).zfill(8) for p in e.absolute_path])
    for err in errors:
        path = list(err.absolute_path)
        if len(path) < 2 or path[0] != "entries":
            out.append((None, _top_problem(err, path)))
            continue
        i = int(path[1])
        loc = where[i] if i < len(where) else f"entry {i + 1}"
        if len(path) == 2:
            if err.validator == "required":
                for f in err.validator_value:
                    if isinstance(err.instance, dict) and f not in err.instance \
                            and (i, f) not in missing_seen:
                        missing_seen.add((i, f))
                        out.append((i, f"{loc}, {col} {f}: empty: {_HINT[f]}"))
            elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
                extra = sorted(k for k in err.instance if k not in COLUMNS)
                out.append((i, f"{loc}: unknown {col}(s) {', '.join(map(repr, extra))}: the "
                               f"{col}s are {', '.join(COLUMNS)}"))
            else:
                out.append((i, f"{loc}: an entry is an object of {', '.join(COLUMNS)}"))
            continue
        fieldname = str(path[2])
        item = f" (pattern {int(path[3]) + 1})" if len(path) > 3 else ""
        out.append((i, f"{loc}, {col} {fieldname}{item}: "
                       f"{_field_problem(err, fieldname, csv_form)}"))
    return out


def _field_problem(err: Any, fieldname: str, csv_form: bool) -> str:
    hint = _HINT.get(fieldname, "")
    value = err.instance
    v = err.validator
    if v == "enum":
        return f"{_show(value)} is not accepted: {hint}"
    if v == "type":
        if fieldname == "trains_on_inputs":
            return (f"{_show(value)} is not " + ("yes or no" if csv_form else "true or false")
                    + f": {hint}")
        return f"{_show(value)} is not text: {hint}"
    if v == "maxLength":
        return f"{len(value)} characters, at most {err.validator_value}: shorten it"
    if v == "minLength":
        return f"empty: {hint}"
    if v == "maxItems":
        return f"{len(value)} patterns, at most {err.validator_value}: {hint}"
    if v == "minItems":
        return f"no pattern: {hint}"
    if v == "pattern":
        return f"{_show(value)}: {hint}"
    return f"{err.message}: {hint}"


def _top_problem(err: Any, path: list[Any]) -> str:
    if path == ["entries"] and err.validator == "maxItems":
        return f"more than {MAX_ENTRIES} entries: cover many files with one entry"
    if err.validator == "required":
        return "no \"entries\": a register is an object with an \"entries\" array"
    if err.validator == "additionalProperties":
        extra = sorted(k for k in err.instance if k not in ("$schema", "version", "entries"))
        return (f"unknown key(s) {', '.join(map(repr, extra))}: a register holds "
                "\"entries\" (and optionally \"version\": 1)")
    key = ".".join(str(p) for p in path) or "(top level)"
    return f"{key}: {err.message}"


def _raise(name: str, problems: list[str]) -> None:
    shown = problems[:MAX_ERRORS]
    more = len(problems) - len(shown)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    body = "\n".join(f"  - {m}" for m in shown)
    tail = f"\n  ... and {more} more" if more else ""
    raise ConfigError(f"{name}: {len(problems)} problems in the GenAI register; fix them and "
                      f"deliver it again:\n{body}{tail}")


def _entry(item: dict[str, Any], where: str) -> Entry:
    files = item["files"]
    raw = [files] if isinstance(files, str) else list(files)
    patterns = tuple(p.strip() for r in raw for p in r.split(";") if p.strip())
    if not patterns:
        raise _PatternError(f"no pattern: {_HINT['files']}")
    paths: list[_PathPattern] = []
    shots: list[str] = []
    for pat in patterns:
        for m in _compile(pat):
            (shots if isinstance(m, str) else paths).append(m)
        if len(paths) + len(shots) > MAX_PATTERNS:
            raise _PatternError(f"more than {MAX_PATTERNS} patterns once {{a,b}} are "
                                "expanded: use a folder or a wildcard")
    opt = item.get
    return Entry(id=item["id"], files=patterns, tool=item["tool"].strip(),
                 version=(opt("version") or "").strip() or None,
                 purpose=item["purpose"].strip(), category=item["category"],
                 environment=item["environment"], trains_on_inputs=item["trains_on_inputs"],
                 stage=item["stage"], consent_ref=(opt("consent_ref") or "").strip() or None,
                 approval_ref=(opt("approval_ref") or "").strip() or None, where=where,
                 _paths=tuple(paths), _shots=tuple(dict.fromkeys(shots)))


# -- which files an entry covers --------------------------------------------------------------

class _PatternError(Exception):
    """A ``files`` pattern that cannot be used; the message says what to write."""


_META = re.compile(r"[*?\[]")
# frame numbers: #### (four digits, or more without a leading zero; # any), %04d, %d
_SEQ = re.compile(r"#+|%0?(\d*)d")
_TOKEN = re.compile(r"[^_.\- ]+")
_SEG_FLAGS = wglob.DOTGLOB | wglob.CASE


class _Glob:
    """One wildcard component of a pattern, translated and compiled on first use (most
    components of a large register are never reached: a literal before them differs)."""

    __slots__ = ("text", "_rx")

    def __init__(self, text: str) -> None:
        self.text = text
        self._rx: re.Pattern[str] | None = None

    def fullmatch(self, name: str) -> bool:
        rx = self._rx
        if rx is None:
            rx = self._rx = _segment_rx(self.text)
        return rx.fullmatch(name) is not None

    def __repr__(self) -> str:
        return f"_Glob({self.text!r})"


_Seg = str | _Glob


@dataclass(frozen=True, slots=True)
class _PathPattern:
    """A glob over path components, split at its ``**``: ``chunks[0]`` is anchored at the
    top, ``chunks[-1]`` at the end, the ones between are found leftmost-first. That is linear
    in the depth of the path for any number of ``**`` (one regular expression with several
    ``**`` backtracks: 28 s for three over a path a thousand folders deep). Each component
    is a literal or wcmatch's own translation of the glob (``DOTGLOB``, case-sensitive), so
    a pattern means what it means in approvals (``assets.matches``).

    ``key`` is what the register indexes it by: ``("top", (NAME, ...))``, its leading
    literal components, or ``("name", PREFIX)`` for a name at any depth with a literal
    beginning."""

    source: str
    chunks: tuple[tuple[_Seg, ...], ...]
    key: tuple[str, Any] | None = None
    # 1 when the pattern as written ends in ``**`` (``vfx/**`` is what is in vfx, as in
    # wcmatch, not a file named vfx); the ``**`` appended to cover a folder's content may
    # match nothing
    tail: int = 0

    def match(self, comps: tuple[str, ...]) -> bool:
        chunks = self.chunks
        n = len(comps)
        first = chunks[0]
        if len(chunks) == 1:
            return n == len(first) and _run_matches(first, comps, 0)
        last = chunks[-1]
        if len(first) + len(last) > n or not _run_matches(first, comps, 0) \
                or not _run_matches(last, comps, n - len(last)):
            return False
        pos, end = len(first), n - len(last)
        for chunk in chunks[1:-1]:
            k = len(chunk)
            while pos + k <= end and not _run_matches(chunk, comps, pos):
                pos += 1
            if pos + k > end:
                return False
            pos += k
        return end - pos >= self.tail


def _run_matches(run: tuple[_Seg, ...], comps: tuple[str, ...], at: int) -> bool:
    for j, seg in enumerate(run):
        c = comps[at + j]
        if isinstance(seg, str):
            if seg != c:
                return False
        elif not seg.fullmatch(c):
            return False
    return True


_NEVER = re.compile(r"(?!)")


@functools.lru_cache(maxsize=32768)
def _segment_rx(seg: str) -> re.Pattern[str]:
    """One wildcard component as a regex: wcmatch's translation, with frame-number tokens as
    digits (or the token itself, so a name with a real ``#`` still matches)."""
    marks: dict[str, str] = {}
    prefix = "pgseq"
    while prefix in seg:
        prefix += "q"

    def mark(m: re.Match[str]) -> str:
        token = m.group(0)
        n = len(token) if token.startswith("#") else int(m.group(1) or 1)
        key = f"{prefix}{len(marks)}x"
        # as sequences.py groups frames: a leading zero fixes the width, a number without
        # one may be wider (frame 10000 of a #### sequence)
        digits = r"0|[1-9]\d*" if n <= 1 else rf"0\d{{{n - 1}}}|[1-9]\d{{{n - 1},}}"
        marks[key] = f"(?:{digits}|{re.escape(token)})"
        return key

    try:
        rx = wglob.translate(_SEQ.sub(mark, seg), flags=_SEG_FLAGS)[0][0]
        for key, sub in marks.items():
            rx = rx.replace(key, sub)
        return re.compile(rx)
    except Exception:  # noqa: BLE001 - a component wcmatch cannot translate covers nothing
        return _NEVER


def _segment(seg: str) -> _Seg:
    return _Glob(seg) if _META.search(seg) or _SEQ.search(seg) else seg


def _literal_prefix(seg: _Seg) -> str:
    if isinstance(seg, str):
        return seg
    m = re.search(r"[*?\[#%]", seg.text)
    return seg.text[:m.start()] if m else seg.text


def _compile(pattern: str) -> list[_PathPattern | str]:
    """A ``files`` pattern as path patterns and shot words (a shot: a word with no '/',
    '.', wildcard or frame token). A pattern with no '/' matches a name at any depth; one
    that names a folder covers what is in it (like .gitignore)."""
    p = unicodedata.normalize("NFC", pattern.strip().replace("\\", "/"))
    if p.startswith("!"):
        raise _PatternError(f"{_show(pattern)}: exclusions ('!') are not supported: list "
                            "what the use covers")
    if p.startswith("/") or re.match(r"^[A-Za-z]:/", p):
        raise _PatternError(f"{_show(pattern)}: an absolute path: write the path from the top "
                            "of the delivery (vfx/sh010/...)")
    while p.startswith("./"):
        p = p[2:]
    if re.search(r"\*{3,}", p):
        raise _PatternError(f"{_show(pattern)}: '***' is not a wildcard: use * or **")
    try:
        alternatives = bracex.expand(p, limit=MAX_PATTERNS) if "{" in p else [p]
    except bracex.ExpansionLimitException:
        raise _PatternError(f"{_show(pattern)}: its {{a,b}} expand to more than "
                            f"{MAX_PATTERNS} patterns: use a wildcard") from None
    except Exception as exc:  # noqa: BLE001 - bracex raises several types
        raise _PatternError(f"{_show(pattern)}: {exc}") from None
    if not alternatives:
        raise _PatternError(f"{_show(pattern)}: no file or folder named: {_HINT['files']}")
    out: list[_PathPattern | str] = []
    for alt in alternatives:
        parts = [s for s in alt.split("/") if s]
        if not parts:
            raise _PatternError(f"{_show(pattern)}: no file or folder named: {_HINT['files']}")
        if any(s in (".", "..") for s in parts):
            raise _PatternError(f"{_show(pattern)}: '.' and '..' are not allowed: write the "
                                "path from the top of the delivery")
        anywhere = "/" not in alt
        if anywhere and "." not in alt and not _META.search(alt) and not _SEQ.search(alt):
            out.append(alt)
            continue
        tail = int(parts[-1] == "**")
        if anywhere:
            parts = ["**", *parts]
        parts.append("**")
        collapsed: list[str] = []
        for s in parts:
            if not (s == "**" and collapsed and collapsed[-1] == "**"):
                collapsed.append(s)
        chunks: list[list[_Seg]] = [[]]
        for s in collapsed:
            if s == "**":
                chunks.append([])
            else:
                chunks[-1].append(_segment(s))
        key: tuple[str, Any] | None = None
        lead = tuple(itertools.takewhile(lambda seg: isinstance(seg, str), chunks[0]))
        if lead:
            key = ("top", lead)
        elif len(chunks) == 3 and not chunks[0] and not chunks[2] and len(chunks[1]) == 1:
            start = _literal_prefix(chunks[1][0])
            key = ("name", start) if start else None
        out.append(_PathPattern(alt, tuple(tuple(c) for c in chunks), key, tail))
    return out


@dataclass(frozen=True, slots=True)
class _Index:
    """Which entries may cover a path, found without trying every pattern on every file:
    shot words by the words of each component, patterns by their literal first component or
    the literal beginning of a name matched at any depth; the rest are tried on every file."""

    shots: Mapping[str, tuple[int, ...]]
    shot_tokens: int
    top: Mapping[tuple[str, ...], tuple[tuple[int, _PathPattern], ...]]
    top_lengths: tuple[int, ...]
    names: Mapping[str, tuple[tuple[int, _PathPattern], ...]]
    name_lengths: tuple[int, ...]
    rest: tuple[tuple[int, _PathPattern], ...]

    @classmethod
    def build(cls, entries: Iterable[Entry]) -> _Index:
        shots: dict[str, list[int]] = {}
        top: dict[tuple[str, ...], list[tuple[int, _PathPattern]]] = {}
        names: dict[str, list[tuple[int, _PathPattern]]] = {}
        rest: list[tuple[int, _PathPattern]] = []
        for i, e in enumerate(entries):
            for word in e._shots:
                shots.setdefault(word, []).append(i)
            for p in e._paths:
                if p.key is None:
                    rest.append((i, p))
                else:
                    (top if p.key[0] == "top" else names).setdefault(p.key[1], []).append((i, p))
        tokens = max((len(_TOKEN.findall(w)) for w in shots), default=1)
        return cls({w: tuple(ix) for w, ix in shots.items()}, max(tokens, 1),
                   {k: tuple(v) for k, v in top.items()}, tuple(sorted({len(k) for k in top})),
                   {k: tuple(v) for k, v in names.items()},
                   tuple(sorted({len(k) for k in names})), tuple(rest))

    def covering(self, comps: tuple[str, ...]) -> set[int]:
        hit: set[int] = set()
        if self.shots:
            for run in _token_runs(comps, self.shot_tokens):
                hit.update(self.shots.get(run, ()))
        candidates: list[tuple[int, _PathPattern]] = []
        for n in self.top_lengths:
            if n > len(comps):
                break
            candidates += self.top.get(comps[:n], ())
        if self.names:
            for c in comps:
                for n in self.name_lengths:
                    if n > len(c):
                        break
                    candidates += self.names.get(c[:n], ())
        candidates += self.rest
        for i, p in candidates:
            if i not in hit and p.match(comps):
                hit.add(i)
        return hit


def _fold(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def _components(path: str, root: str) -> tuple[str, ...] | None:
    """The path's components below root (NFC), or None when it is not below root."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    parts = rel.split(os.sep)
    return tuple(c if c.isascii() else unicodedata.normalize("NFC", c) for c in parts)


def _token_runs(comps: tuple[str, ...], most: int) -> Iterator[str]:
    """Each component, and each run of up to ``most`` of its words (split at ``_ . -`` and
    spaces) with the separators between them: the strings a shot name can equal."""
    for c in comps:
        yield c
        spans = [m.span() for m in _TOKEN.finditer(c)]
        for i in range(len(spans)):
            for j in range(i, min(len(spans), i + most)):
                yield c[spans[i][0]:spans[j][1]]


# -- reconciliation ---------------------------------------------------------------------------

# how a purpose reads: a change to real footage (a part is generated) or generated material
_PART_WORDS = re.compile(
    r"\b(replac|extend|extension|fill|inpaint|outpaint|paint[- ]?out|remov|clean[- ]?up|"
    r"retouch|de-?ag|relight|face[- ]?swap|swap|lip[- ]?sync|dub|roto|matte|composit|comp\b|"
    r"enhanc|upscal|denois|restor|coloui?ri[sz]|insert|augment|modif|edit|touch[- ]?up|"
    r"beauty|fix|tweak|adjust|in[- ]?between)", re.IGNORECASE)
_WHOLE_WORDS = re.compile(
    r"\b(generat|text[- ]?to[- ]|image[- ]?to[- ]|txt2|img2|synthe|clon|replica|avatar|"
    r"from scratch|fully|entirely|concept art|storyboard|previ[sz]|animatic)", re.IGNORECASE)


def declared_kind(entry: Entry) -> tuple[str | None, str]:
    """The kind an entry declares for the files it covers, and why, in words.

    - ``data_use``: none. It declares what production material was given to a tool, not how
      the file was made; the file keeps its detected kind (the principles still apply).
    - otherwise the purpose decides when it says so: words of a change to real footage
      (replace, extend, fill, paint out, remove, de-age, relight, lip sync, upscale...) make
      ``ai_composite``; words of generated material (generated, text-to-image, synthetic,
      clone, digital replica, previz...) make ``ai_generated``; a change wins over generation
      ("generated sky replacement" is a composite).
    - a purpose that says neither: ``ai_composite`` for creative output, talent and
      performance, and ethics and representation (a declared use changed the file, at least
      in part), ``ai_possible`` for ``other``.

    The stage does not change the kind (temp material in a delivery is still generated
    material; the stage is what the policy and the principles look at)."""
    if entry.category not in CONTENT_CATEGORIES:
        return None, "data use: what was given to the tool, not how the file was made"
    if (m := _PART_WORDS.search(entry.purpose)):
        return "ai_composite", f"the purpose says a change to real media ({m.group(0)!r})"
    if (m := _WHOLE_WORDS.search(entry.purpose)):
        return "ai_generated", f"the purpose says generated material ({m.group(0)!r})"
    if entry.category == "other":
        return "ai_possible", "other use: may contain generated parts"
    return "ai_composite", (f"a {entry.category.replace('_', ' ')} use: generated parts at "
                            "least")


def _strongest(kinds: Iterable[str]) -> str | None:
    ranked = [k for k in kinds if k in KIND_RANK]
    return max(ranked, key=KIND_RANK.__getitem__) if ranked else None


def principles(entry: Entry, approvals: Collection[str] | None = None) -> list[Finding]:
    """The guidance's principles over one entry's declared fields.

    ``approvals``: the references of the approvals active in the ledger; when given, a final
    use whose ``approval_ref`` is not among them has no approval either."""
    out = []
    if entry.trains_on_inputs:
        out.append(Finding("principles.trains_on_inputs",
                           f"{entry.label}: the tool may train on or keep what it was given; "
                           "the guidance asks for tools that do not train on production "
                           "material"))
    if entry.environment == "consumer":
        out.append(Finding("principles.consumer_environment",
                           f"{entry.label}: run in a consumer environment, not an "
                           "enterprise-secured one"))
    if entry.category == "talent_performance" and not entry.consent_ref:
        out.append(Finding("principles.talent_without_consent",
                           f"{entry.label}: a talent and performance use with no consent "
                           "reference"))
    if entry.stage == "final":
        if not entry.approval_ref:
            out.append(Finding("principles.final_without_approval",
                               f"{entry.label}: a final use with no studio approval "
                               "reference"))
        elif approvals is not None and entry.approval_ref not in approvals:
            out.append(Finding("principles.final_without_approval",
                               f"{entry.label}: a final use whose approval reference "
                               f"{entry.approval_ref} is not an active approval in the "
                               "ledger"))
    return out


def reconcile(kind: str, evidence_kinds: Iterable[str], entries: Iterable[Entry],
              approvals: Collection[str] | None = None) -> Reconciled:
    """Join a file's detected kind (and the kinds of its evidence) with the entries that
    cover it. Pure: no I/O, no policy.

    Detected AI: the file's kind is an AI kind, or it is ``unknown``/``unreadable`` and an
    AI signal is in its evidence. A signed human or algorithmic declaration that outranked a
    detector's finding stays what the verdict said (its precedence stands), so it is not
    undisclosed AI.

    - detected, and an entry declares how the file was made: ``disclosed``; the kind is the
      stronger of the detected and declared ones (a declaration never lowers it);
    - detected, no such entry (none, or data use only): ``undisclosed`` with the finding
      ``undisclosed``; the kind stays;
    - not detected, an entry declares a kind: ``declared_only``; the file gets the declared
      kind (the strongest of its entries', :func:`declared_kind`), whatever its metadata said
      (unknown, human, algorithmic or unreadable: an AI claim outranks them, as in the
      verdict; the verdict's error stays in the record);
    - not detected, data-use entries only: ``declared_only``, the kind stays;
    - neither: ``none``.

    Every covering entry adds its principle findings (:func:`principles`)."""
    entries = tuple(entries)
    ev = tuple(evidence_kinds)
    if kind in AI_KINDS:
        detected: str | None = kind
    elif kind in ("unknown", "unreadable"):
        detected = _strongest(k for k in ev if k in AI_KINDS)
    else:
        detected = None
    declaring = [(e, *declared_kind(e)) for e in entries]
    declaring = [(e, k, why) for e, k, why in declaring if k is not None]
    declared = _strongest(k for _, k, _ in declaring)
    findings = [f for e in entries for f in principles(e, approvals)]
    names = ", ".join(e.label for e, _, _ in declaring)
    if detected and declaring:
        status = "disclosed"
        new_kind = _strongest([detected, declared])  # type: ignore[list-item]
        reason = (f"AI detected ({detected}) and declared in the GenAI register: {names}")
        if new_kind != detected:
            reason += f"; the declaration makes it {new_kind}"
        reason += "."
    elif detected:
        status = "undisclosed"
        new_kind = kind
        only = (" (the register covers it only with data use: "
                + ", ".join(e.label for e in entries) + ")") if entries else ""
        reason = (f"AI detected ({detected}) but no entry of the GenAI register declares "
                  f"how the file was made{only}.")
        findings.insert(0, Finding("undisclosed", f"undisclosed AI: the file shows {detected} "
                                                  "and no register entry declares it"))
    elif declaring:
        status = "declared_only"
        new_kind = declared  # type: ignore[assignment]
        _, _, why = next(t for t in declaring if t[1] == declared)
        reason = (f"declared in the GenAI register ({names}) though the file's metadata shows "
                  f"no AI (a re-render keeps none): {declared}, as {why}.")
    elif entries:
        status = "declared_only"
        new_kind = kind
        reason = ("declared in the GenAI register as data use only ("
                  + ", ".join(e.label for e in entries)
                  + "): what was given to the tool, not how the file was made.")
    else:
        status = "none"
        new_kind = kind
        reason = "no AI detected and none declared."
    return Reconciled(status, new_kind, detected, declared, entries, tuple(findings), reason)


# -- the policy's [register] table ------------------------------------------------------------

RULES = ("undisclosed", "principles.trains_on_inputs", "principles.consumer_environment",
         "principles.talent_without_consent", "principles.final_without_approval")
# what a policy without a [register] table gets: undisclosed AI is flagged, escalated in a
# zone that holds what it cannot judge (a final zone); each principle escalates
DEFAULT_ACTIONS = {"undisclosed": "flag", "principles.trains_on_inputs": "escalate",
                   "principles.consumer_environment": "escalate",
                   "principles.talent_without_consent": "escalate",
                   "principles.final_without_approval": "escalate"}
FINAL_DEFAULTS = {"undisclosed": "escalate"}


def action_for(policy: Mapping[str, Any], zone: str, rule: str, final: bool = False
               ) -> tuple[str, str]:
    """The action the policy gives a register finding in ``zone``, and the policy line
    (``zones.final.register.undisclosed``, ``register.principles.trains_on_inputs``).

    Looked up in ``[zones.ZONE.register]``, then ``[register]``; a policy that sets neither
    gets :data:`DEFAULT_ACTIONS` (``final``: the zone holds what it cannot judge, where
    undisclosed AI escalates)."""
    if rule not in DEFAULT_ACTIONS:
        raise ValueError(f"unknown register rule {rule!r}")
    tables = ((policy.get("zones", {}).get(zone, {}).get("register", {}),
               f"zones.{zone}.register"), (policy.get("register", {}), "register"))
    for table, prefix in tables:
        node: Any = table
        for part in rule.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, str):
            return node, f"{prefix}.{rule}"
    if final and rule in FINAL_DEFAULTS:
        return FINAL_DEFAULTS[rule], f"register.{rule}"
    return DEFAULT_ACTIONS[rule], f"register.{rule}"


def finding_actions(reconciled: Reconciled, policy: Mapping[str, Any], zone: str,
                    final: bool = False) -> list[tuple[Finding, str, str]]:
    """Each finding with its action and policy line, strongest first (ties keep order)."""
    out = [(f, *action_for(policy, zone, f.rule, final)) for f in reconciled.findings]
    return sorted(out, key=lambda t: -ACTION_STRENGTH[t[1]])


# -- what a recorded decision says; approvals made from an entry -------------------------------

def recorded_status(kind: str, evidence: Iterable[Mapping[str, Any]]
                    ) -> tuple[str, list[dict[str, Any]]]:
    """The reconciliation a decision row holds, read back from its evidence (the ledger keeps
    each declaring entry as a signal of source ``register``): the status as
    :func:`reconcile` named it, and the declared entries (``to_dict`` form). AI detected is a
    signal of an AI kind from the file itself, in a file not judged human or algorithmic."""
    declared = [s for s in evidence if s.get("source") == "register"]
    detected = kind not in ("human", "algorithmic") and any(
        s.get("kind") in AI_KINDS and s.get("source") != "register" for s in evidence)
    status = ("disclosed" if detected and declared else "undisclosed" if detected else
              "declared_only" if declared else "none")
    entries = {}
    for s in declared:  # one entry may be in the evidence more than once
        entry = _declared_entry(s)
        entries.setdefault(str(entry.get("id")), entry)
    return status, list(entries.values())


def _declared_entry(signal: Mapping[str, Any]) -> dict[str, Any]:
    try:
        entry = json.loads(signal.get("value") or "")
    except (TypeError, ValueError):
        entry = None
    # a row edited by hand may hold anything: only an entry with an id is taken as one
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return entry
    return {"id": str(signal.get("tag") or "")}


_MAX_FRAME_WIDTH = 8  # the widest frame number an approval glob spells out


def approval_glob(entry: Entry, root: str | os.PathLike[str]) -> str:
    """One absolute glob (``assets.matches``, case-sensitive, as approvals match) over what
    ``entry`` covers below ``root``: the approval ``provgate approve --entry`` makes. Each
    path pattern as the register reads it (a name at any depth when it has no ``/``, a
    folder with what is in it), a shot name as a folder or a run of words of a name, frame
    tokens as the widths sequences.py groups (up to eight digits)."""
    alts = [g for p in entry._paths for g in _path_globs(p.source)]
    alts += [g for shot in entry._shots for g in _shot_globs(shot)]
    # only what is a wildcard under assets' flags is escaped (wcmatch's escape() also
    # escapes '-', which an approval's fixed part must keep as it is on disk)
    top = re.sub(r"([*?\[\]{}\\])", r"\\\1", os.path.abspath(root))
    return f"{top}/{{{','.join(alts)}}}"


def _path_globs(pattern: str) -> list[str]:
    parts = [s for s in pattern.split("/") if s]
    body = "/".join(_glob_segment(s) for s in parts)
    if "/" not in pattern:
        body = f"**/{body}"
    return [body] if parts[-1] == "**" else [body, f"{body}/**"]


def _shot_globs(shot: str) -> list[str]:
    word, sep = _glob_literal(shot), "[_. -]"
    names = (word, f"{word}{sep}*", f"*{sep}{word}", f"*{sep}{word}{sep}*")
    return [g for n in names for g in (f"**/{n}", f"**/{n}/**")]


def _glob_segment(segment: str) -> str:
    """A register path component as an approval glob component: its wildcards kept, what
    would split the glob's ``{a,b}`` escaped, frame tokens as digit alternatives."""
    if segment == "**":
        return segment
    out, at = [], 0
    for m in _SEQ.finditer(segment):
        out += [_glob_literal(segment[at:m.start()]), _frame_digits(m)]
        at = m.end()
    return "".join([*out, _glob_literal(segment[at:])])


def _glob_literal(text: str) -> str:
    return re.sub(r"([,{}])", r"\\\1", text)


def _frame_digits(token: re.Match[str]) -> str:
    """A frame token as sequences.py reads it: ``####`` is four digits with a leading zero,
    or more without one; ``#`` and ``%d`` any number (or the token itself, as written)."""
    text = token.group(0)
    width = len(text) if text.startswith("#") else int(token.group(1) or 1)
    rest = "[0-9]"
    alts = ["0" + rest * (width - 1)] if width > 1 else ["0"]
    alts += ["[1-9]" + rest * (w - 1) for w in range(width, _MAX_FRAME_WIDTH + 1)]
    return "{" + ",".join([*alts, _glob_literal(text)]) + "}"
