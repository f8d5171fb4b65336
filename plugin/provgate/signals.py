"""Signals: what the signature catalogue recognises in a file's metadata.

The catalogue (``signatures.toml``) is data; this module only compiles and applies it: its
markers (tag, pattern) to the tags they name, and through ``recognise.py`` its generator names
and record shapes to every text value, wherever it sits.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provgate import data
from provgate.errors import ProvgateError
from provgate.probe import Metadata, plain_key
from provgate.recognise import Finding, Names, Recogniser, norm

DEFAULT_CATALOGUE = data.PACKAGE_DIR / "signatures.toml"
# A marker's regex sees at most this many characters from each end of a value (generator
# records start or end with their key: ComfyUI JSON opens with it, A1111 ends with "Steps:"), so
# no crafted value costs more than a bounded search; the evidence keeps the full length.
MATCH_WINDOW = 16 * 1024
# groups whose values describe the file or ExifTool's work, never a record someone wrote
_NOT_RECORDS = frozenset({"system", "file", "exiftool", "composite", "jumbf", "icc_profile",
                          "icc-header", "icc-meas", "icc-view"})
_KEYED = re.compile(r"\A\(([^()]{1,64})\) ")  # ID3 TXXX as ExifTool prints it: "(desc) value"
# a generator's name, by how it was found: marker id and meaning
_NAMED = {
    "software": ("generator-software", "a generator ({name}) named as the software that made "
                 "the file"),
    "model": ("generator-software", "a generator ({name}) named as the model that made the "
              "file"),
    "statement": ("generator-statement", "the text says a generator made the file ('{name}')"),
    "edit": ("generator-edit-statement", "the text says a generator edited the file ('{name}'):"
             " generated parts in it"),
    "mention": ("generator-mentioned", "a generator ({name}) mentioned in free text; unsigned "
                "and weak on its own"),
}


class MatchDeadline(ProvgateError):
    """Matching one file's metadata ran past the deadline the caller gave ``Catalogue.match``."""


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: where it was read, what it says, and what kind it points to."""

    kind: str
    meaning: str
    source: str  # exiftool | sidecar | c2pa
    tag: str
    value: str
    marker: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "meaning": self.meaning, "source": self.source,
                "tag": self.tag, "value": self.value, "marker": self.marker}


@dataclass(frozen=True)
class _Rule:
    marker: str
    kind: str | None  # None: a source-type field, whose value names the kind
    meaning: str
    pattern: re.Pattern[str] | None


@dataclass(frozen=True)
class _Key:
    """What the catalogue does with one tag key, worked out once per key."""

    rules: tuple[_Rule, ...]
    role: str | None  # software | model | text: how a generator's name there counts
    group: str
    record_key: str | None  # its normalised name, when a record shape uses it
    scan: bool  # a text value here may hold a generation record
    keyed: bool  # ID3 user text, "(key) value": the key counts in the group's record


class Catalogue:
    """The compiled signal catalogue."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.version: str = doc["version"]
        self.digest = data.digest(doc)
        self.codes = {code.lower(): (code, spec) for code, spec in
                      doc["source_type"]["codes"].items()}
        self._exact: dict[str, list[_Rule]] = {}
        self._wild: list[tuple[str, _Rule]] = []
        self._memo: dict[str, _Key] = {}
        names = doc.get("names", {})
        self.names = Names(names)
        self.recogniser = Recogniser(doc)
        self._roles = [(role, [t.lower() for t in names.get(f"{role}_fields", [])])
                       for role in ("software", "model", "text")]
        self._not_named = [t.lower() for t in names.get("except_fields", [])]
        self._find = functools.lru_cache(maxsize=8192)(self.names.find)
        dst = _Rule("digital-source-type", None, "digital source type", None)
        for tag in doc["source_type"]["tags"]:
            self._index(tag, dst)
        for m in doc["markers"]:
            pattern = re.compile(m["pattern"], re.IGNORECASE | re.DOTALL) if "pattern" in m else None
            rule = _Rule(m["id"], m["kind"], m["meaning"], pattern)
            for tag in m["tags"]:
                self._index(tag, rule)
        self._tags = [*doc["source_type"]["tags"], *(t for m in doc["markers"] for t in m["tags"]),
                      *doc.get("probe", {}).get("tags", [])]

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        doc = data.load_toml(path or DEFAULT_CATALOGUE, "signatures", builtin=path is None)
        path = path or DEFAULT_CATALOGUE
        for m in doc["markers"]:
            if "pattern" in m:
                try:
                    re.compile(m["pattern"])
                except re.error as exc:
                    raise data.ConfigError(f"{path}: markers.{m['id']}.pattern: {exc}") from exc
        return cls(doc)

    def _index(self, tag: str, rule: _Rule) -> None:
        if "*" in tag:
            self._wild.append((tag.lower(), rule))
        else:
            self._exact.setdefault(tag.lower(), []).append(rule)

    def tag_arguments(self) -> list[str]:
        """ExifTool arguments that ask for exactly the tags the catalogue reads."""
        args = []
        for tag in self._tags:
            group, name = tag.split(":", 1)
            args.append(f"-{group}:all" if "*" in name else f"-{tag}")
        return list(dict.fromkeys(args))

    def _key(self, key: str) -> _Key:
        """What applies to one tag key; memoised, since the same few hundred keys recur."""
        info = self._memo.get(key)
        if info is None:
            low = key.lower()
            rules = list(self._exact.get(low, ()))
            rules.extend(rule for pat, rule in self._wild if fnmatch.fnmatchcase(low, pat))
            group, _, name = key.partition(":")
            role = None
            if not any(fnmatch.fnmatchcase(low, pat) for pat in self._not_named):
                role = next((r for r, pats in self._roles
                             if any(fnmatch.fnmatchcase(low, pat) for pat in pats)), None)
            scan = group.lower() not in _NOT_RECORDS
            record_key = norm(name) if scan else None
            if record_key not in self.recogniser.record_keys:
                record_key = None
            if len(self._memo) > 65536:  # unregistered namespaces can make keys without end
                self._memo.clear()
            info = self._memo[key] = _Key(tuple(rules), role, group, record_key, scan,
                                          scan and group.startswith("ID3"))
        return info

    def match(self, meta: Metadata, source: str = "exiftool",
              deadline: float | None = None) -> list[Signal]:
        """Every signal the catalogue finds in ``meta``, in tag order. ``deadline`` (a
        ``time.monotonic()`` value) bounds the whole file: past it, ``MatchDeadline``."""
        found: list[Signal] = []
        budget = self.recogniser.budget(deadline)
        groups: dict[str, dict[str, tuple[str, Any]]] = {}
        memo = self._memo
        for full_key, value in meta.tags.items():  # every tag of every file: kept lean
            key = plain_key(full_key)
            info = memo.get(key) or self._key(key)
            if info.record_key is not None:
                groups.setdefault(full_key[:len(full_key) - len(key)] + info.group, {})[
                    info.record_key] = (full_key, value)
            if info.rules:
                texts = _values(value)
            elif isinstance(value, str):  # a number names no generator and holds no record
                if not info.role and (not info.scan or len(value) < 16):
                    continue  # most tags: too short to hold a record
                texts = [value]
            elif isinstance(value, list) and (info.role or info.scan):
                texts = [v for v in value if isinstance(v, str)]
            else:
                continue
            for text in texts:
                if deadline is not None and time.monotonic() > deadline:
                    raise MatchDeadline(f"{meta.path}: matching the signal catalogue ran past "
                                        f"its deadline (at {full_key})")
                strong = False
                for rule in info.rules:
                    sig = self._apply(rule, full_key, text, source)
                    if sig is not None:
                        strong = strong or sig.kind == "ai_generated"
                        _add(found, sig)
                if strong:
                    continue  # a marker already recognised it: one piece of evidence a value
                if info.keyed and (keyed := _KEYED.match(text)):
                    if (nk := norm(keyed.group(1))) in self.recogniser.record_keys:
                        groups.setdefault(full_key[:len(full_key) - len(key)] + info.group,
                                          {})[nk] = (full_key, text)
                if info.scan and self.recogniser.candidate(text):
                    finding = self.recogniser.text(text, budget)
                    if budget.expired:
                        raise MatchDeadline(f"{meta.path}: matching the signal catalogue ran "
                                            f"past its deadline (at {full_key})")
                    if finding is not None:  # a record says more than a name in it
                        _add(found, _found(finding, source, full_key, text))
                        continue
                if info.role is not None:
                    _add(found, self._named(info.role, full_key, text, source))
        for group, record in groups.items():
            shape = self.recogniser.group(record) if len(record) >= 2 else None
            if shape is not None:
                used = [record[k] for k in record if any(k in ks.keys for ks in shape.keys)]
                _add(found, Signal(
                    shape.kind, f"{shape.generator}: {shape.meaning} (the tags of {group} "
                    "read together as one record)", source, ", ".join(k for k, _ in used[:8]),
                    _short("; ".join(f"{k.rsplit(':', 1)[-1]}={v}" for k, v in used)), shape.id))
        return found

    def match_object(self, obj: Any, tag: str, source: str,
                     deadline: float | None = None) -> list[Signal]:
        """The record shapes applied to a value already parsed (a C2PA assertion's data)."""
        budget = self.recogniser.budget(deadline)
        finding = self.recogniser.object(obj, budget)
        if budget.expired:
            raise MatchDeadline(f"matching the signal catalogue ran past its deadline (at {tag})")
        if finding is None:
            return []
        return [_found(finding, source, tag, data.canonical_json(obj))]

    def _named(self, role: str, key: str, text: str, source: str) -> Signal | None:
        # the same software and camera strings recur in a delivery: short ones are memoised
        named = (self._find(text, role) if len(text) <= 256
                 else self.names.find(_window(text), role))
        if named is None:
            return None
        marker, meaning = _NAMED["model" if named.how == "software" and role == "model"
                                 else named.how]
        return Signal(named.kind, meaning.format(name=named.name), source, key, _short(text),
                      marker)

    def source_type(self, value: str) -> tuple[str, str, dict[str, Any]] | None:
        """(code, kind, spec) for a digital source type value in any of its spellings."""
        code = value.strip().rstrip("/").rsplit("/", 1)[-1]
        code = code.removeprefix("c2pa.")
        hit = self.codes.get(code.lower())
        if hit is None:
            return None
        name, spec = hit
        return name, spec["kind"], spec

    def _apply(self, rule: _Rule, key: str, text: str, source: str) -> Signal | None:
        if rule.kind is None:
            hit = self.source_type(text)
            if hit is None:
                return None
            code, kind, spec = hit
            return Signal(kind, f"digital source type {code}: {spec['meaning']}", source, key,
                          _short(text.strip()), rule.marker)
        if rule.pattern is not None and not rule.pattern.search(_window(text)):
            return None
        return Signal(rule.kind, rule.meaning, source, key, _short(text), rule.marker)


def _add(found: list[Signal], sig: Signal | None) -> None:
    if sig is not None and sig not in found:
        found.append(sig)


def _found(finding: Finding, source: str, tag: str, text: str) -> Signal:
    return Signal(finding.shape.kind, finding.meaning(), source, tag, _short(text),
                  finding.shape.id)


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items if v not in (None, "") and str(v).strip()]


def _window(text: str, limit: int = MATCH_WINDOW) -> str:
    """What a marker's regex sees of a value: all of it, or its first and last ``limit``
    characters joined by a NUL (no literal, ``\\s`` or word spans the gap; ``\\A`` and ``\\Z``
    keep their meaning)."""
    return text if len(text) <= 2 * limit else f"{text[:limit]}\0{text[-limit:]}"


def _short(text: str, limit: int = 300) -> str:
    """Evidence keeps enough of a value to recognise it, not a whole workflow graph."""
    if len(text) <= limit:
        return text
    searched = (f"; markers read its first and last {MATCH_WINDOW} chars"
                if len(text) > 2 * MATCH_WINDOW else "")
    return text[:limit] + f"... ({len(text)} chars{searched})"
