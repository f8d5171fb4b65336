"""Signals: what the signature catalogue recognises in a file's metadata.

The catalogue (``signatures.toml``) is data; this module only compiles and applies it.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provgate import data
from provgate.errors import ProvgateError
from provgate.probe import Metadata

DEFAULT_CATALOGUE = data.PACKAGE_DIR / "signatures.toml"
# A marker's regex sees at most this many characters from each end of a value (generator
# records start or end with their key: ComfyUI JSON opens with it, A1111 ends with "Steps:"), so
# no crafted value costs more than a bounded search; the evidence keeps the full length.
MATCH_WINDOW = 16 * 1024


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
        self._memo: dict[str, list[_Rule]] = {}
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

    def _rules_for(self, key: str) -> list[_Rule]:
        """Rules for one tag key; memoised, since the same few hundred keys recur per file."""
        rules = self._memo.get(key)
        if rules is None:
            low = key.lower()
            rules = list(self._exact.get(low, ()))
            rules.extend(rule for pat, rule in self._wild if fnmatch.fnmatchcase(low, pat))
            self._memo[key] = rules
        return rules

    def match(self, meta: Metadata, source: str = "exiftool",
              deadline: float | None = None) -> list[Signal]:
        """Every signal the catalogue finds in ``meta``, in tag order. ``deadline`` (a
        ``time.monotonic()`` value) bounds the whole file: past it, ``MatchDeadline``."""
        found: list[Signal] = []
        for full_key, key, value in meta.items():
            rules = self._rules_for(key)
            if not rules:
                continue
            for text in _values(value):
                if deadline is not None and time.monotonic() > deadline:
                    raise MatchDeadline(f"{meta.path}: matching the signal catalogue ran past "
                                        f"its deadline (at {full_key})")
                for rule in rules:
                    sig = self._apply(rule, full_key, text, source)
                    if sig is not None and sig not in found:
                        found.append(sig)
        return found

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
