"""Structural recognisers: generation records found by what they are, wherever they sit.

The catalogue (``signatures.toml``) declares the shapes (``[[shapes]]``: keys that appear
together in one record, and the generator they identify) and the generator names
(``[names]``); this module only knows how to find records and names in a value and how to
apply a shape:

- JSON anywhere in a text value: whole, after a label (``Prompt: {...}``), escaped
  (``{\\"prompt\\": ...}``), nested in a JSON string, or in UTF-16 read as 8-bit text; every
  object in it, at any depth, is tried against the shapes;
- the tags of one metadata group read together as one record (PNG text chunks ``prompt``,
  ``seed``, ``steps``; a tool's own XMP namespace; QuickTime keys);
- text forms: the A1111 settings line, a command line, a job line;
- generator names, compared as words: named as the software that made the file, said to have
  made or edited it in free text, or only mentioned.

Every parse is bounded (``[records]``): characters parsed per value and per file, the depth
and number of objects walked, the JSON openings tried, and the caller's deadline. A value too
long or nested too deep to parse whole has its keys read from its two ends instead.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

_DECODER = json.JSONDecoder()
_WORDS = re.compile(r"[a-z]+|[0-9]+")
_NOT_KEY = re.compile(r"[^a-z0-9]+")
# a JSON key in text that could not be parsed whole (also escaped: \"key\":)
_JSON_KEY = re.compile(r'\\?"([^"\\\n]{1,64})\\?"\s*:')
_ESCAPED_SLASH = "\ufdd0"  # a noncharacter: stands in for an escaped backslash while unescaping

LIMITS = {"parse_chars": 4 << 20, "scan_chars": 64 << 10, "file_chars": 16 << 20,
          "depth": 64, "objects": 20000, "candidates": 8, "layers": 3}


@functools.lru_cache(maxsize=16384)
def norm(key: str) -> str:
    """A key as shapes compare it: lower case, letters and digits ("CFG scale" = "cfg_scale")."""
    return _NOT_KEY.sub("", key.lower())


def words(text: str) -> list[str]:
    """A text as names compare it: runs of letters and of digits ("DALL·E 3" = "dall e 3")."""
    return _WORDS.findall(text.lower())


@dataclass(frozen=True)
class KeySet:
    """At least ``min`` of ``keys`` (normalised) appear in a record."""

    keys: frozenset[str]
    min: int

    def met(self, keys: frozenset[str] | set[str]) -> bool:
        return len(self.keys & keys) >= self.min


@dataclass(frozen=True)
class Shape:
    """One kind of generation record, as declared in the catalogue."""

    id: str
    kind: str
    generator: str
    meaning: str
    form: str = "record"  # record | settings | text
    keys: tuple[KeySet, ...] = ()
    nodes_in: str | None = None  # "*": the record's own values are its nodes
    node_keys: tuple[KeySet, ...] = ()
    nodes: int = 0
    lead: str = ""  # settings: the key that opens the line ("Steps")
    hint: str = ""  # text: a literal the value must hold before the pattern is tried
    pattern: re.Pattern[str] | None = None

    def fits_keys(self, keys: frozenset[str] | set[str], flat: bool = False) -> bool:
        """The record's keys fit; ``flat``: node keys are looked for among them too (a value
        whose keys were read without its structure)."""
        if not all(k.met(keys) for k in self.keys):
            return False
        if flat and self.nodes:
            inside = self.nodes_in in (None, "*") or self.nodes_in in keys
            return inside and all(k.met(keys) for k in self.node_keys)
        return True

    def fits(self, obj: Mapping[str, Any], keys: frozenset[str]) -> bool:
        if not self.fits_keys(keys):
            return False
        if not self.nodes:
            return True
        if self.nodes_in == "*":
            members: Any = obj.values()
        else:
            members = next((v for k, v in obj.items() if norm(k) == self.nodes_in), None)
            if isinstance(members, Mapping):
                members = members.values()
            elif not isinstance(members, list):
                return False
        count = 0
        for node in islice(members, 1000):
            if isinstance(node, Mapping) and all(
                    k.met(frozenset(norm(n) for n in node)) for k in self.node_keys):
                count += 1
                if count >= self.nodes:
                    return True
        return False


@dataclass(frozen=True)
class Finding:
    """A record that fits a shape, and where in the value it was found."""

    shape: Shape
    how: str = ""

    def meaning(self) -> str:
        text = f"{self.shape.generator}: {self.shape.meaning}"
        return f"{text} ({self.how})" if self.how else text


class Budget:
    """What one file may still cost: characters parsed, and the caller's deadline."""

    def __init__(self, chars: int, deadline: float | None) -> None:
        self.chars = chars
        self.deadline = deadline
        self.expired = False

    def spend(self, n: int) -> bool:
        if n > self.chars:
            return False
        self.chars -= n
        return True

    def late(self) -> bool:
        if not self.expired and self.deadline is not None and time.monotonic() > self.deadline:
            self.expired = True
        return self.expired


def _keysets(items: list[dict[str, Any]]) -> tuple[KeySet, ...]:
    return tuple(KeySet(frozenset(norm(k) for k in item["of"]),
                        item.get("min", len(item["of"]))) for item in items)


def _shape(doc: dict[str, Any]) -> Shape:
    nodes = doc.get("nodes") or {}
    form = doc.get("form", "record")
    pattern = re.compile(doc["pattern"], re.IGNORECASE | re.DOTALL) if "pattern" in doc else None
    lead = doc.get("lead", "")
    return Shape(doc["id"], doc["kind"], doc["generator"], doc["meaning"], form,
                 _keysets(doc.get("keys", [])),
                 (nodes["in"] if nodes["in"] == "*" else norm(nodes["in"])) if nodes else None,
                 _keysets(nodes.get("keys", [])), nodes.get("count", 0), lead,
                 doc.get("hint", f"{lead}:" if lead else ""), pattern)


class Recogniser:
    """The catalogue's shapes, applied to values, parsed objects and groups of tags."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.limits = {**LIMITS, **doc.get("records", {})}
        self.shapes = tuple(_shape(s) for s in doc.get("shapes", []))
        self._records = [s for s in self.shapes if s.form == "record"]
        self._texts = [s for s in self.shapes if s.form != "record"]
        # shapes a group of tags can fit: no nodes (tag values are strings, not objects)
        self._flat = [s for s in self._records if not s.nodes]
        self.record_keys = frozenset(k for s in self._flat for ks in s.keys for k in ks.keys)
        self._any_key = frozenset(k for s in self._records for ks in s.keys for k in ks.keys)
        # shapes whose record is only its nodes (a ComfyUI API graph: {"3": {...}, "4": {...}})
        self._graphs = frozenset(s for s in self._records if s.nodes_in == "*")
        self._hints = tuple(dict.fromkeys(s.hint for s in self._texts if s.hint))

    def budget(self, deadline: float | None) -> Budget:
        return Budget(self.limits["file_chars"], deadline)

    def candidate(self, text: str) -> bool:
        """Cheap: whether a value could hold a record at all (most values cannot)."""
        if len(text) < 16:
            return False
        if "{" in text:
            return True
        for hint in self._hints:
            if hint in text:
                return True
        return "\x00" in text[:64] or ord(text[0]) > 0xFF

    def text(self, text: str, budget: Budget) -> Finding | None:
        """The first record found in a text value, by its most specific shape."""
        for reading, how in _readings(text, self.limits["parse_chars"], self.limits["scan_chars"]):
            found = self._in_text(reading, how, budget, 0)
            if found or budget.expired:
                return found
        return None

    def group(self, record: Mapping[str, Any]) -> Shape | None:
        """The shape the tags of one group fit together (keys already normalised)."""
        keys = frozenset(record)
        return next((s for s in self._flat if s.fits_keys(keys)), None)

    def object(self, obj: Any, budget: Budget) -> Finding | None:
        """The best record in an object already parsed (a C2PA assertion's data)."""
        return self._walk(obj, "", budget, 0)

    # -- text --------------------------------------------------------------------------------

    def _in_text(self, text: str, how: str, budget: Budget, layer: int) -> Finding | None:
        if "{" in text:
            found = self._json(text, how, budget, layer)
            if found or budget.expired:
                return found
        for shape in self._texts:
            if shape.hint and shape.hint not in text:
                continue
            if shape.form == "settings":
                if _settings_line(shape, _ends(text, self.limits["scan_chars"])):
                    return Finding(shape, how)
            elif shape.pattern is not None and shape.pattern.search(
                    _ends(text, self.limits["scan_chars"])):
                return Finding(shape, how)
        return None

    def _json(self, text: str, how: str, budget: Budget, layer: int) -> Finding | None:
        lim = self.limits
        if len(text) > lim["parse_chars"]:
            return self._scan(text, how, "too long to parse whole")
        if not budget.spend(len(text)):
            return self._scan(text, how, "the file's parse budget is spent")
        pos = _opening(text)
        tried = 0
        while pos >= 0 and tried < lim["candidates"] and not budget.late():
            tried += 1
            escaped = False
            try:
                obj, end = _DECODER.raw_decode(text, pos)
            except RecursionError:
                return self._scan(text, how, "nested too deep to parse")
            except ValueError:
                obj, end, escaped = _unescaped(text, pos), len(text), True
                if obj is None:
                    if tried == 1 and pos < 64:  # the value is JSON that does not parse
                        found = self._scan(text, how, "not valid JSON")
                        if found:
                            return found
                    pos = text.find("{", pos + 1)
                    continue
            label = text[:pos].strip()
            where = _join(how, "escaped JSON" if escaped else "",
                          f"after the label '{label[:40]}'" if label and pos <= 64 else
                          "JSON inside the text" if label else "")
            if isinstance(obj, str):  # a JSON string holding JSON
                if layer < lim["layers"] and "{" in obj:
                    found = self._in_text(obj, _join(where, "JSON in a JSON string"), budget,
                                          layer + 1)
                    if found:
                        return found
            else:
                found = self._walk(obj, where, budget, layer)
                if found:
                    return found
            pos = text.find("{", end)
        return None

    def _scan(self, text: str, how: str, why: str) -> Finding | None:
        """Keys read from the two ends of a value that cannot be parsed whole."""
        n = self.limits["scan_chars"]
        keys = frozenset(norm(k) for k in _JSON_KEY.findall(_ends(text, n)))
        shape = next((s for s in self._records if s.fits_keys(keys, flat=True)), None)
        if shape is None:
            return None
        return Finding(shape, _join(how, f"{why}: keys read from its first and last {n} chars"))

    def _walk(self, root: Any, how: str, budget: Budget, layer: int) -> Finding | None:
        """Every object of a parsed value (and JSON in its strings) against the shapes: the
        most specific (earliest) shape that any object fits names the record."""
        lim = self.limits
        best: tuple[int, Finding] | None = None
        stack: list[tuple[Any, int, str]] = [(root, 0, "")]
        seen = 0
        while stack:
            obj, depth, path = stack.pop()
            seen += 1
            if seen > lim["objects"] or (seen % 512 == 0 and budget.late()):
                break
            if isinstance(obj, Mapping):
                keys = frozenset(norm(k) for k in islice(obj, 4096) if isinstance(k, str))
                graph = any(isinstance(v, Mapping) for v in islice(obj.values(), 4))
                if graph or not keys.isdisjoint(self._any_key):
                    for i, shape in enumerate(self._records[: best[0] if best else None]):
                        if (graph or shape not in self._graphs) and shape.fits(obj, keys):
                            at = f"at {path}" if path else ""
                            best = (i, Finding(shape, _join(how, at)))
                            break
                    if best and best[0] == 0:
                        break
                children: Any = obj.items()
            elif isinstance(obj, list):
                children = enumerate(obj)
            else:
                continue
            if depth >= lim["depth"]:
                continue
            for key, value in islice(children, lim["objects"]):
                if isinstance(value, (Mapping, list)):
                    if value:
                        stack.append((value, depth + 1, f"{path}.{key}"))
                elif (isinstance(value, str) and layer < lim["layers"] and len(value) > 16
                      and "{" in value[:64]):
                    found = self._in_text(value, _join(how, f"JSON in the string at {path}.{key}"),
                                          budget, layer + 1)
                    if found:
                        i = self._records.index(found.shape) if found.shape in self._records \
                            else len(self._records)
                        if best is None or i < best[0]:
                            best = (i, found)
        return best[1] if best else None


def _readings(text: str, parse: int, scan: int) -> Iterator[tuple[str, str]]:
    """The value as read, then as the UTF-16 text it may really be: a writer's UTF-16 that
    was read byte by byte (a NUL beside every ASCII character) or with the wrong byte order
    (U+7B00 for "{"). Only the two ends of a value too long to parse are decoded again."""
    yield text, ""
    if len(text) > parse:
        text = _ends(text, scan)
    head = text[:64]
    if "\x00" in head and max(head) <= "\xff":
        raw = text.encode("latin-1", "replace")
        odd = raw[1::2].count(0) > raw[0::2].count(0)
        yield raw.decode("utf-16-le" if odd else "utf-16-be", "replace").strip("\x00\ufeff"), \
            "UTF-16 text read as 8-bit"
    elif sum(1 for c in head if ord(c) > 0xFF and not ord(c) & 0xFF) > len(head) // 2:
        swapped = text.encode("utf-16-le", "surrogatepass").decode("utf-16-be", "replace")
        yield swapped.strip("\x00\ufeff"), "UTF-16 read in the wrong byte order"


def _opening(text: str) -> int:
    """Where JSON may start: the first bracket near the start (after a label, or a quote for a
    JSON string), else the first object anywhere."""
    head = text[:64]
    starts = [i for i in (head.find("{"), head.find("["), head.find('"')) if i >= 0]
    if starts:
        return min(starts)
    return text.find("{")


def _unescaped(text: str, pos: int) -> Any:
    """JSON written with its quotes escaped (``{\\"a\\": 1}``), read one escaping level down."""
    if '\\"' not in text[pos:pos + 256]:
        return None
    flat = (text[pos:].replace("\\\\", _ESCAPED_SLASH).replace('\\"', '"')
            .replace(_ESCAPED_SLASH, "\\"))
    try:
        return _DECODER.raw_decode(flat, 0)[0]
    except (ValueError, RecursionError):
        return None


def _settings_line(shape: Shape, text: str) -> bool:
    """A ``Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1`` line (A1111's last line)."""
    lead = shape.hint
    pos, tries = text.find(lead), 0
    while pos >= 0 and tries < 8:
        tries += 1
        items = text[pos + len(lead): pos + 4096].split("\n", 1)[0].split(",")
        if items[0].strip()[:1].isdigit():
            keys = frozenset(norm(i.split(":", 1)[0]) for i in items[1:] if ":" in i)
            if shape.fits_keys(keys):
                return True
        pos = text.find(lead, pos + 1)
    return False


def _ends(text: str, n: int) -> str:
    return text if len(text) <= 2 * n else f"{text[:n]}\n{text[-n:]}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# -- generator names -------------------------------------------------------------------------


@dataclass(frozen=True)
class Named:
    """A generator found in a value: how it was named, the phrase, and the kind it points to."""

    how: str  # software | statement | edit | mention
    name: str
    kind: str


class Names:
    """Generator names compared as words (``[names]`` in the catalogue)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self._first: dict[str, list[tuple[tuple[str, ...], str, bool]]] = {}
        ambiguous = {tuple(words(n)) for n in doc.get("words", [])}
        for name in [*doc.get("generators", []), *doc.get("words", [])]:
            toks = tuple(words(name))
            word = toks in ambiguous
            forms = {toks, tuple(words("".join(toks)))}
            for form in forms:
                self._first.setdefault(form[0], []).append((form, name, word))
        for cands in self._first.values():
            cands.sort(key=lambda c: -len(c[0]))
        self._ai = sorted({tuple(words(n)) for n in doc.get("ai", [])}, key=lambda t: -len(t))
        self._ai_first = {t[0] for t in self._ai}
        self._made = frozenset(doc.get("made", []))
        self._edited = frozenset(doc.get("edited", []))
        self._links = frozenset(doc.get("links", []))
        self._firm = frozenset(doc.get("firm_links", []))
        self._fillers = frozenset(doc.get("fillers", []))
        self._negations = frozenset(doc.get("negations", []))
        self._verbs = self._made | self._edited

    def at(self, toks: list[str], i: int) -> tuple[int, str, bool] | None:
        """(length, name, is an everyday word) of the generator named at ``toks[i]``."""
        for form, name, word in self._first.get(toks[i], ()):
            if tuple(toks[i:i + len(form)]) == form:
                return len(form), name, word
        return None

    def _ai_at(self, toks: list[str], i: int) -> int:
        for form in self._ai:
            if tuple(toks[i:i + len(form)]) == form:
                return len(form)
        return 0

    def find(self, text: str, role: str) -> Named | None:
        """What ``text`` says of a generator, read as a field of ``role`` (software, model or
        text): a statement first, then a name."""
        toks = words(text)
        if not toks:
            return None
        if not self._verbs.isdisjoint(toks) or not self._ai_first.isdisjoint(toks):
            said = self._statement(toks)
            if said:
                return said
        if self._first.keys().isdisjoint(toks):
            return None
        for i in range(len(toks)):
            hit = self.at(toks, i)
            if hit is None:
                continue
            _n, name, word = hit
            if role == "software":
                return Named("software", name, "ai_generated")
            if not word:
                return Named("software" if role == "model" else "mention", name,
                             "ai_generated" if role == "model" else "ai_possible")
        return None

    def _negated(self, toks: list[str], i: int) -> bool:
        return any(t in self._negations for t in toks[max(0, i - 2):i])

    def _statement(self, toks: list[str]) -> Named | None:
        """"generated with Runway Gen-3", "made with suno", "AI-generated", "Midjourney
        generated", "edited with Adobe Firefly": a text that says a generator made (or
        edited) the file. A name that is also an everyday word ("runway", "sora") counts only
        right after a firm link ("made with Sora", not "created by Sora Tanaka")."""
        n = len(toks)
        for i, tok in enumerate(toks):
            if tok in self._verbs:
                if i + 1 >= n or toks[i + 1] not in self._links or self._negated(toks, i):
                    continue
                kind, how = (("ai_composite", "edit") if tok in self._edited
                             else ("ai_generated", "statement"))
                k = i + 2
                while k < n and k < i + 4 and toks[k] in self._fillers:
                    k += 1
                if k >= n:
                    continue
                length = self._ai_at(toks, k)
                if length:
                    return Named(how, " ".join(toks[i:k + length]), kind)
                hit = self.at(toks, k)
                if hit and (not hit[2] or (k == i + 2 and toks[i + 1] in self._firm)):
                    return Named(how, " ".join(toks[i:k + hit[0]]), kind)
            elif (tok in self._ai_first or tok in self._first) and not self._negated(toks, i):
                length = self._ai_at(toks, i)
                if not length:
                    hit = self.at(toks, i)
                    length = hit[0] if hit and not hit[2] else 0
                if length and i + length < n and toks[i + length] in self._made:
                    return Named("statement", " ".join(toks[i:i + length + 1]), "ai_generated")
        return None
