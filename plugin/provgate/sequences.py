"""Image sequences: frame files grouped into the unit a facility delivers.

A VFX shot or a scan is delivered as frames (``plate.1001.exr`` ... ``plate.1240.exr``), and a
producer signs off the shot, not 240 lines. This module only groups and summarises; every
frame is still read, fingerprinted and judged by the session (one generated frame spliced
into a plate must be caught), and the summary here names the frames that decided the
sequence as ranges.

- :func:`group` turns paths into :class:`Sequence` objects and single files. Frames of one
  sequence share a folder, a name before the frame number (ending in ``.`` or ``_``, or
  nothing: ``00086400.dpx``), an extension (exactly, case included) and a padding. A lone
  numbered file stays a single file. A name whose number follows a letter (``shot_v002.exr``)
  is a version, not a frame.
- :func:`digest` is what an approval of a sequence binds to: sha256 over the ordered
  ``(frame, fingerprint)`` pairs, so changing, removing, adding or renumbering one frame
  changes it. It has the form of a file fingerprint (``sha256:<hex>``) so that it fits the
  same ledger column and schema; its input is domain-separated, so no file hashes to it.
- :func:`summarize` folds per-frame verdicts into the sequence's: the strongest kind, the
  frames that carry each kind and each evidence tag as ranges (``1001-1003, 1050``), and
  the frames whose kind differs from the frames around them.

Pure functions over typed values; nothing here touches the disk.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from provgate.vocabulary import AI_KINDS, KIND_RANK, KINDS

# image formats delivered frame by frame (lower case, without the dot). Movie, audio and
# package files are never frames: ``reel_001.mov`` and ``reel_002.mov`` are two files.
FRAME_EXTENSIONS = frozenset({
    "exr", "sxr", "dpx", "cin", "tif", "tiff", "tx", "png", "jpg", "jpeg", "jp2", "j2c", "j2k",
    "tga", "sgi", "rgb", "hdr", "pic", "bmp", "webp", "dng", "ari", "psd", "avif", "heic",
})

# a frame name: something ending in "." or "_" (or nothing), the frame number, one extension.
# The prefix is lazy, so the frame number is the last digit run before the extension.
_FRAME = re.compile(r"(?s)((?:.*?[._])?)([0-9]+)(\.[^.]+)", re.ASCII)

# How sequence kinds rank. Within one file, precedence.py lets any AI claim outrank a human
# one and "unknown" means no signal. Across the frames of a sequence a frame that is unknown
# is a frame not shown to be human, so the order is:
#   AI kinds by KIND_RANK > unreadable (a frame nobody could judge: held in final)
#   > the other ranked kinds by KIND_RANK (algorithmic) > unknown > human.
# A sequence is human only when every frame is.
_AI = sorted(AI_KINDS, key=KIND_RANK.__getitem__, reverse=True)
_REST = sorted((k for k in KIND_RANK if k not in AI_KINDS and k != "human"),
               key=KIND_RANK.__getitem__, reverse=True)
SEQUENCE_ORDER: tuple[str, ...] = (*_AI, "unreadable", *_REST, "unknown", "human")
SEQUENCE_RANK = {kind: len(SEQUENCE_ORDER) - i for i, kind in enumerate(SEQUENCE_ORDER)}
assert set(SEQUENCE_ORDER) == set(KINDS), "a kind is missing from the sequence order"

# at most this many neighbour callouts are kept; the rest are counted
MAX_CALLOUTS = 20

Range = tuple[int, int]


# ---------------------------------------------------------------------------------------------
# grouping

@dataclass(frozen=True, slots=True)
class Sequence:
    """Frames of one image sequence, in frame order.

    A frame's path is ``directory + prefix + number zero-padded to padding + suffix``, which
    reproduces the path it was grouped from exactly; paths are made on demand, so 100,000
    frames cost their numbers only.
    """

    directory: str     # the paths' folder with its trailing "/" ("" for bare names)
    prefix: str        # the name before the frame number, separator included: "plate."
    suffix: str        # the extension, dot included, case kept: ".exr"
    padding: int       # the frame number's width (numbers wider than it are not padded)
    frames: tuple[int, ...]
    gaps: tuple[Range, ...] = field(default=())

    @property
    def folder(self) -> str:
        """The folder the frames sit in ("" for bare names)."""
        return self.directory[:-1] or self.directory

    @property
    def pattern(self) -> str:
        """The file name pattern with the padding kept: ``plate.####.exr``."""
        return f"{self.prefix}{'#' * self.padding}{self.suffix}"

    @property
    def printf(self) -> str:
        """The printf form editorial tools read: ``plate.%04d.exr``."""
        return f"{self.prefix.replace('%', '%%')}%0{self.padding}d{self.suffix.replace('%', '%%')}"

    @property
    def path_pattern(self) -> str:
        """The pattern in its folder, the sequence's name in a record: ``/x/plate.####.exr``."""
        return self.directory + self.pattern

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def missing(self) -> int:
        """How many frames the gaps hold."""
        return sum(b - a + 1 for a, b in self.gaps)

    def name(self, frame: int) -> str:
        return f"{self.prefix}{frame:0{self.padding}d}{self.suffix}"

    def path(self, frame: int) -> str:
        """The path of ``frame`` (whether or not it is one of the sequence's frames)."""
        return self.directory + self.name(frame)

    def paths(self) -> Iterator[str]:
        """Every frame's path, in frame order."""
        for n in self.frames:
            yield self.path(n)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """``(frame, path)`` in frame order."""
        for n in self.frames:
            yield n, self.path(n)

    def __len__(self) -> int:
        return len(self.frames)

    def frame_of(self, path: str) -> int | None:
        """The frame number of ``path`` when it is one of this sequence's frames."""
        if not path.startswith(self.directory):
            return None
        name = path[len(self.directory):]
        m = _FRAME.fullmatch(name) if "/" not in name else None
        if m is None or m[1] != self.prefix or m[3] != self.suffix:
            return None
        n = int(m[2])
        if name != self.name(n):
            return None
        i = bisect_left(self.frames, n)
        return n if i < len(self.frames) and self.frames[i] == n else None

    def describe(self) -> str:
        """``plate.####.exr 1001-1240 (240 frames; 2 missing: 1100-1101)``."""
        text = f"{self.pattern} {self.first}-{self.last} ({self.count} frames"
        if self.gaps:
            text += f"; {self.missing} missing: {format_ranges(self.gaps, limit=10)}"
        return text + ")"


def _frame_name(path: str, extensions: frozenset[str]) -> tuple[int, re.Match[str]] | None:
    """Where the name of a path named like a frame starts, and its parts (prefix, number,
    extension); None for any other path. The one reading of a frame's name."""
    cut = path.rfind("/") + 1
    name = path[cut:]
    dot = name.rfind(".")
    if dot <= 0 or name[dot + 1:].lower() not in extensions:
        return None
    m = _FRAME.fullmatch(name)
    return None if m is None else (cut, m)


def sequence_key(path: str, extensions: frozenset[str] = FRAME_EXTENSIONS
                 ) -> tuple[str, str, str, int] | None:
    """(folder, prefix, extension, padding) of a path named like a frame, else None: the
    frames of one sequence share it."""
    found = _frame_name(path, extensions)
    return None if found is None else (path[:found[0]], found[1][1], found[1][3],
                                       len(found[1][2]))


def frame_number(path: str, extensions: frozenset[str] = FRAME_EXTENSIONS) -> int | None:
    """The frame number of a path named like a frame (``plate.1001.exr``: 1001), else None."""
    found = _frame_name(path, extensions)
    return None if found is None else int(found[1][2])


def group(paths: Iterable[str], *, extensions: Iterable[str] = FRAME_EXTENSIONS,
          min_frames: int = 2) -> list[Sequence | str]:
    """Sequences and single files, in the order their first path came in.

    ``paths`` are path strings (``/`` separated; the session's absolute paths). Frames are
    grouped only within one folder, one name, one extension and one padding; a group of fewer
    than ``min_frames`` frames stays single files. Paths that are not frames (another
    extension, no frame number) come back as they were given.

    Memory: a reference and an index per frame while grouping; a sequence keeps its frame
    numbers, not its paths.
    """
    if min_frames < 2:
        raise ValueError("min_frames must be at least 2: one frame is a file")
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    # (directory, prefix, suffix) -> ([path, ...], [input index, ...])
    groups: dict[tuple[str, str, str], tuple[list[str], list[int]]] = {}
    items: list[tuple[int, Sequence | str]] = []
    for index, path in enumerate(paths):
        found = _frame_name(path, exts)
        if found is None:
            items.append((index, path))
            continue
        cut, m = found
        key = (path[:cut], m[1], m[3])
        members = groups.get(key)
        if members is None:
            groups[key] = members = ([], [])
        members[0].append(path)
        members[1].append(index)
    for (directory, prefix, suffix), (members, indexes) in groups.items():
        start = len(directory) + len(prefix)
        digits = [p[start:len(p) - len(suffix)] for p in members]
        for width, chosen in _by_padding(digits):
            if len(chosen) < min_frames:
                items.extend((indexes[i], members[i]) for i in chosen)
                continue
            frames = sorted(int(digits[i]) for i in chosen)
            seq = Sequence(directory, prefix, suffix, width, tuple(frames), _gaps(frames))
            items.append((min(indexes[i] for i in chosen), seq))
        del digits
    items.sort(key=lambda item: item[0])
    return [item for _, item in items]


def _by_padding(digits: list[str]) -> list[tuple[int, list[int]]]:
    """Split frame numbers of one name by padding: ``0001`` has width 4 exactly; ``1001``,
    which has no leading zero, fits any width up to 4 (``10000`` is frame 10000 of a ####
    sequence). Numbers without a leading zero join the widest padded width they fit, else
    each other (width: the shortest of them). Returns (width, indexes into ``digits``)."""
    fixed = sorted({len(d) for d in digits if len(d) > 1 and d[0] == "0"})
    out: dict[int, list[int]] = {w: [] for w in fixed}
    free: list[int] = []
    for i, d in enumerate(digits):
        if len(d) > 1 and d[0] == "0":
            out[len(d)].append(i)
            continue
        fits = [w for w in fixed if w <= len(d)]
        if fits:
            out[fits[-1]].append(i)
        else:
            free.append(i)
    result = [(w, idx) for w, idx in out.items() if idx]
    if free:
        result.append((min(len(digits[i]) for i in free), free))
    return result


def _gaps(frames: list[int]) -> tuple[Range, ...]:
    return tuple((a + 1, b - 1) for a, b in zip(frames, frames[1:], strict=False) if b - a > 1)


# ---------------------------------------------------------------------------------------------
# ranges

def ranges(frames: Iterable[int]) -> list[Range]:
    """Consecutive frame numbers folded into ranges: 1001, 1002, 1003, 1050 ->
    [(1001, 1003), (1050, 1050)]. The frames are sorted first; duplicates count once."""
    out: list[list[int]] = []
    for n in sorted(set(frames)):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(a, b) for a, b in out]


def format_ranges(rs: Iterable[Range], limit: int | None = None) -> str:
    """``1001-1003, 1050``; past ``limit`` ranges, ``... and N more ranges``."""
    rs = list(rs)
    shown = rs if limit is None else rs[:limit]
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in shown)
    if len(shown) < len(rs):
        text += f" and {len(rs) - len(shown)} more ranges"
    return text


def _frames_word(rs: list[Range]) -> str:
    single = len(rs) == 1 and rs[0][0] == rs[0][1]
    return ("frame " if single else "frames ") + format_ranges(rs, limit=10)


# ---------------------------------------------------------------------------------------------
# digest

_DIGEST_DOMAIN = b"provgate image sequence v1\n"
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space: what a fingerprint is


def digest(frames: Iterable[tuple[int, str | None]]) -> str:
    """What an approval of a sequence binds to: sha256 over ``(frame, fingerprint)`` pairs in
    ascending frame order, as ``sha256:<hex>``. Changing one frame's bytes, dropping,
    adding or renumbering a frame changes it. A frame without a fingerprint (unreadable,
    vanished) leaves the sequence without a digest: ValueError, nothing to approve."""
    h = hashlib.sha256(_DIGEST_DOMAIN)
    last: int | None = None
    count = 0
    for frame, fp in frames:
        if last is not None and frame <= last:
            raise ValueError(f"frames out of order or repeated at frame {frame}")
        if not fp or _TOKEN.fullmatch(fp) is None:
            raise ValueError(f"frame {frame} has no usable fingerprint: the sequence cannot "
                             "be bound")
        h.update(b"%d %s\n" % (frame, fp.encode("ascii")))
        last = frame
        count += 1
    if not count:
        raise ValueError("an empty sequence has no digest")
    h.update(b"frames %d\n" % count)
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# summary

@dataclass(frozen=True, slots=True)
class KindFrames:
    """The frames of one kind."""

    kind: str
    frames: tuple[Range, ...]
    count: int


@dataclass(frozen=True, slots=True)
class TagFrames:
    """The frames whose verdict an evidence tag decided, for one kind."""

    tag: str
    kind: str
    frames: tuple[Range, ...]
    count: int


@dataclass(frozen=True, slots=True)
class Callout:
    """A run of frames whose kind differs from the frames around it."""

    kind: str
    frames: tuple[Range, ...]
    before: tuple[int, str] | None   # the frame just before the run and its kind
    after: tuple[int, str] | None    # the frame just after
    text: str


@dataclass(frozen=True, slots=True)
class SequenceVerdictParts:
    """A sequence's verdict, folded from its frames' verdicts.

    ``kind`` is the strongest frame kind (SEQUENCE_ORDER); ``frames`` the frames that carry
    it. ``kinds`` lists every kind present, strongest first: the policy should take the
    strongest action over all of them (``unreadable`` frames hold a final sequence even when
    an AI kind is its kind). ``evidence`` says which tag decided which frames.
    """

    kind: str
    frames: tuple[Range, ...]
    count: int
    kinds: tuple[KindFrames, ...]
    evidence: tuple[TagFrames, ...]
    callouts: tuple[Callout, ...]
    callouts_left_off: int = 0

    @property
    def unreadable(self) -> tuple[Range, ...]:
        return next((k.frames for k in self.kinds if k.kind == "unreadable"), ())

    def lines(self) -> list[str]:
        """Evidence lines for a record or a report: one per kind, per tag and per callout,
        each at most 400 characters (ranges past ten are counted, not listed)."""
        out = [f"{k.kind}: {_frames_word(list(k.frames))} ({k.count} of {self.count})"
               for k in self.kinds]
        out += [f"{t.tag}: {t.kind} on {_frames_word(list(t.frames))}" for t in self.evidence]
        out += [c.text for c in self.callouts]
        if self.callouts_left_off:
            out.append(f"{self.callouts_left_off} more runs of frames differ from their "
                       "neighbours")
        return [_cut(line, 400) for line in out]


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


class _RangeBuilder:
    """Ranges grown one frame at a time (frames arrive in ascending order)."""

    __slots__ = ("rs", "count")

    def __init__(self) -> None:
        self.rs: list[list[int]] = []
        self.count = 0

    def add(self, n: int) -> None:
        self.count += 1
        if self.rs and self.rs[-1][1] == n - 1:
            self.rs[-1][1] = n
        else:
            self.rs.append([n, n])

    def ranges(self) -> tuple[Range, ...]:
        return tuple((a, b) for a, b in self.rs)


def summarize(frame_kinds: Iterable[tuple[int, str, Iterable[str]]]) -> SequenceVerdictParts:
    """Fold ``(frame, kind, evidence_tags)`` per frame into the sequence's verdict.

    ``evidence_tags`` are the tags that decided the frame's kind (``OpenEXR:Prompt``); for
    an ``unknown`` frame usually none. Frames may come in any order; a frame given twice or
    an unknown kind is a ValueError.
    """
    rows = sorted(((n, k, tuple(t)) for n, k, t in frame_kinds), key=lambda r: r[0])
    if not rows:
        raise ValueError("a sequence has at least one frame")
    by_kind: dict[str, _RangeBuilder] = {}
    by_tag: dict[tuple[str, str], _RangeBuilder] = {}
    last: int | None = None
    for n, kind, tags in rows:
        if kind not in SEQUENCE_RANK:
            raise ValueError(f"frame {n}: {kind!r} is not a kind")
        if n == last:
            raise ValueError(f"frame {n} is given twice")
        last = n
        by_kind.setdefault(kind, _RangeBuilder()).add(n)
        for tag in dict.fromkeys(tags):
            by_tag.setdefault((tag, kind), _RangeBuilder()).add(n)
    order = sorted(by_kind, key=SEQUENCE_RANK.__getitem__, reverse=True)
    kinds = tuple(KindFrames(k, by_kind[k].ranges(), by_kind[k].count) for k in order)
    evidence = tuple(
        TagFrames(tag, kind, b.ranges(), b.count)
        for (tag, kind), b in sorted(by_tag.items(),
                                     key=lambda it: (-SEQUENCE_RANK[it[0][1]], it[0][0])))
    callouts, left_off = _callouts(rows, {k: b.count for k, b in by_kind.items()})
    return SequenceVerdictParts(order[0], kinds[0].frames, len(rows), kinds, evidence,
                                callouts, left_off)


def _callouts(rows: list[tuple[int, str, tuple[str, ...]]], counts: dict[str, int]
              ) -> tuple[tuple[Callout, ...], int]:
    """Every run of consecutive frames (in frame order, across gaps) whose kind is not the
    sequence's common kind: the kind most frames have, on a tie the weaker, so that the
    stronger is the one called out. At most MAX_CALLOUTS are kept; the rest are counted."""
    if len(counts) < 2:
        return (), 0
    top = max(counts.values())
    common = min((k for k, c in counts.items() if c == top), key=SEQUENCE_RANK.__getitem__)
    out: list[Callout] = []
    left_off = 0
    i, total = 0, len(rows)
    while i < total:
        kind = rows[i][1]
        j = i
        while j + 1 < total and rows[j + 1][1] == kind:
            j += 1
        if kind != common:
            if len(out) < MAX_CALLOUTS:
                run = _RangeBuilder()
                for n, _k, _t in rows[i:j + 1]:
                    run.add(n)
                before = (rows[i - 1][0], rows[i - 1][1]) if i > 0 else None
                after = (rows[j + 1][0], rows[j + 1][1]) if j + 1 < total else None
                rs = run.ranges()
                out.append(Callout(kind, rs, before, after,
                                   _callout_text(kind, list(rs), before, after)))
            else:
                left_off += 1
        i = j + 1
    return tuple(out), left_off


def _callout_text(kind: str, rs: list[Range], before: tuple[int, str] | None,
                  after: tuple[int, str] | None) -> str:
    single = len(rs) == 1 and rs[0][0] == rs[0][1]
    head = f"{_frames_word(rs)} {'is' if single else 'are'} {kind}"
    it = "it" if single else "them"
    if before and after and before[1] == after[1]:
        return f"{head}; frames around {it} are {before[1]}"
    parts = []
    if before:
        parts.append(f"frame {before[0]} before {it} is {before[1]}")
    if after:
        parts.append(f"frame {after[0]} after {it} is {after[1]}")
    return f"{head}; " + ", ".join(parts)
