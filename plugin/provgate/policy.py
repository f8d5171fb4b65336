"""Policy: (zone, verdict) -> action, with approvals that turn a hold into a pass.

The policy is a TOML file validated by ``schemas/policy.schema.json``; the built-in default
(``default_policy.toml``) follows the streamer rule. Every decision names the policy line that
made it (``rule``) and says why in a sentence a producer understands (``reason``).
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provgate import data
from provgate.assets import Asset, GlobSet, matches
from provgate.sequences import frame_number
from provgate.config import Config
from provgate.errors import ConfigError
from provgate.record import Decision, Verdict
from provgate.vocabulary import ACTION_STRENGTH as _STRENGTH
from provgate.vocabulary import HOLDS, KINDS

if TYPE_CHECKING:
    from provgate.register import Reconciled

DEFAULT_POLICY = data.PACKAGE_DIR / "default_policy.toml"
_KIND_WORDS = {
    "ai_generated": "made by a generative AI model",
    "ai_composite": "real media with generated parts",
    "ai_possible": "provenance says generated parts may be in it",
    "algorithmic": "made or changed by non-generative algorithms",
    "human": "made by people, and its provenance says so",
    "unknown": "no provenance either way",
    "unreadable": "could not be read",
}


@dataclass(frozen=True)
class Scope:
    """Where a run gates: its show, episode and delivery (None: not known, e.g. a scan)."""

    show: str | None = None
    episode: str | None = None
    delivery: str | None = None


@dataclass(frozen=True)
class Approval:
    """Written approval: a studio reference bound to a file's fingerprint or to a path glob,
    with the guidance's category, the register entry it was made from, and a scope: an
    approval scoped to a show, episode or delivery clears files only in a run there."""

    id: int
    ref: str
    approver: str
    created: str
    fingerprint: str | None = None
    glob: str | None = None
    path: str | None = None
    expires: str | None = None
    note: str | None = None
    revoked: str | None = None
    category: str | None = None
    show: str | None = None
    episode: str | None = None
    delivery: str | None = None
    entry: str | None = None
    # an approval of an image sequence: the digest of its frames when it was given, and the
    # frames themselves ("1001 sha256:..." a line, sealed with the row). A file is cleared
    # only when it is one of those frames with that content; the sequence only while its
    # digest is this one (units.py): a frame changed, added or removed voids it
    sequence: str | None = None
    frames: str | None = None

    def active(self, now: datetime) -> bool:
        if self.revoked:
            return False
        return not self.expires or datetime.fromisoformat(self.expires) > now

    def covers(self, asset: Asset) -> bool:
        if self.sequence:
            number = frame_number(asset.path)
            return number is not None and asset.fingerprint is not None and \
                (number, asset.fingerprint) in self._frames and \
                bool(self.glob) and matches(asset.path, [self.glob], case_sensitive=True)
        if self.fingerprint:
            return asset.fingerprint == self.fingerprint
        return bool(self.glob) and matches(asset.path, [self.glob], case_sensitive=True)

    @functools.cached_property
    def _frames(self) -> frozenset[tuple[int, str]]:
        pairs = (line.split(" ", 1) for line in (self.frames or "").splitlines() if line)
        return frozenset((int(n), fp) for n, fp in pairs)

    def within(self, scope: Scope) -> bool:
        """Whether the run's scope is inside this approval's: each scope field the approval
        sets must be the run's (a run that does not know its delivery matches none)."""
        return all(want is None or want == have for want, have in (
            (self.show, scope.show), (self.episode, scope.episode),
            (self.delivery, scope.delivery)))

    def clears(self, asset: Asset, scope: Scope, now: datetime) -> bool:
        """Active, covering the file, and scoped to where it is gated."""
        return self.active(now) and self.covers(asset) and self.within(scope)

    @property
    def scope_line(self) -> str:
        """The scope in words, ``"show X, episode Y, delivery Z"``, or ``"any"``."""
        parts = [f"{k} {v}" for k, v in (("show", self.show), ("episode", self.episode),
                                         ("delivery", self.delivery)) if v]
        return ", ".join(parts) or "any"

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "ref": self.ref, "by": self.approver, "expires": self.expires}


@dataclass
class Policy:
    doc: dict[str, Any]
    source: str
    base_dir: Path
    # the delivery a check gates (``scoped``): not policy, so not in the digest
    context: Scope = field(default_factory=Scope, compare=False)
    digest: str = field(init=False)
    config: Config = field(init=False, compare=False)

    def __post_init__(self) -> None:
        self.digest = data.digest(self.doc)
        # paths, roots, trust and service settings: read from the same file, not decisions
        self.config = Config(self.doc, self.source, self.base_dir)
        self._zone_globs: list[tuple[str, GlobSet, GlobSet]] = []
        for name, zone in self.zones.items():
            for pat in zone.get("paths", []):
                _check_glob(pat, f"{self.source}: zones.{name}.paths")
            paths = zone.get("paths", [])
            self._zone_globs.append((name, GlobSet(g for g in paths if not g.startswith("/")),
                                     GlobSet(g for g in paths if g.startswith("/"))))
        # a zone's strictness: how hard its actions hold, over every kind and C2PA state
        self._strictness = {
            name: sum(_STRENGTH[self.action_for(name, k)[0]] for k in KINDS)
            + sum(_STRENGTH[a] for a in zone.get("c2pa", {}).values())
            for name, zone in self.zones.items()}
        # (root + "/", the root's parent + "/"): globs see the root's own name, so a root
        # that is itself a final folder is final
        self._root_prefixes = sorted(
            ((r.rstrip(os.sep) + os.sep, os.path.dirname(r.rstrip(os.sep)).rstrip(os.sep)
              + os.sep) for r in self.config.roots), key=lambda p: len(p[0]),
            reverse=True)
        # zones decided once per folder when every zone glob names folders (``**/final/**``)
        self._by_folder = all(p.endswith("/**") for z in self.zones.values()
                              for p in z.get("paths", []))
        self._folder_zone: dict[str, str] = {}
        if self.default_zone not in self.zones and self.default_zone != "default":
            raise ConfigError(f"{self.source}: default_zone: no zone named {self.default_zone!r} "
                              f"(zones: {', '.join(self.zones) or 'none'})")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Policy:
        """The policy at ``path``, ``PROVGATE_POLICY``, or the built-in default."""
        chosen = path or os.environ.get("PROVGATE_POLICY")
        p = Path(chosen) if chosen else DEFAULT_POLICY
        if chosen and not p.is_file():
            raise ConfigError(f"policy file not found: {p} (write one with `provgate policy init`)")
        source = str(p) if chosen else "built-in default policy"
        return cls(data.load_toml(p, "policy", builtin=not chosen), source, p.resolve().parent)

    # -- settings --------------------------------------------------------------------------

    @property
    def zones(self) -> dict[str, dict[str, Any]]:
        return self.doc.get("zones", {})

    @property
    def mode(self) -> str:
        return self.doc.get("mode", "warn")

    @property
    def default_zone(self) -> str:
        return self.doc.get("default_zone", "default")

    @property
    def exclude(self) -> list[str]:
        return self.doc.get("files", {}).get("exclude", [])

    @property
    def include(self) -> list[str]:
        return self.doc.get("files", {}).get("include", [])

    @property
    def skip_hidden(self) -> bool:
        return self.doc.get("files", {}).get("skip_hidden", True)

    @property
    def show(self) -> str | None:
        """The show this policy gates (``[delivery] show``), recorded on deliveries."""
        return self.doc.get("delivery", {}).get("show")

    @property
    def episode(self) -> str | None:
        return self.doc.get("delivery", {}).get("episode")

    def watched_delivery(self, root: str) -> str | None:
        """The delivery name ``provgate watch`` records the watched ``root`` under when the
        policy asks it to (``[delivery] watch = true``): its ``[delivery.names]`` entry
        (keyed by path, relative ones from the policy file's folder), else the root folder's
        own name; None when the daemon records no deliveries."""
        block = self.doc.get("delivery", {})
        if not block.get("watch"):
            return None
        root = os.path.normpath(os.path.abspath(root))
        for path, name in block.get("names", {}).items():
            if str(self.config.path(path)) == root:
                return name
        return os.path.basename(root) or root

    @property
    def scope(self) -> Scope:
        """Where this policy gates now: the check's delivery, show and episode, else the
        policy's own show and episode."""
        c = self.context
        return Scope(c.show or self.show, c.episode or self.episode, c.delivery)

    def scoped(self, delivery: str | None, show: str | None = None,
               episode: str | None = None) -> Policy:
        """This policy for one delivery's check (approvals scoped to it clear files there)."""
        return replace(self, context=Scope(show, episode, delivery))

    # -- decisions -------------------------------------------------------------------------

    def zone_of(self, asset: Asset, override: str | None = None) -> str:
        """The zone of a file, from its own path: never from the folder a command was
        pointed at, so ``.../final/a.jpg`` is final whether the delivery, a subfolder, the
        file or a ``--from`` list named it. The path as given and the real path (through
        links) are both matched, and the stricter zone wins, so a link cannot take a
        deliverable out of its zone.

        Relative globs see the path from the policy root that holds the file, the root's own
        folder name included (the whole absolute path when no root holds it); globs that
        start with ``/`` see the absolute path. Folder names are compared as a person reads
        them (Unicode-normalised, invisible characters and trailing dots or spaces dropped).
        """
        if override:
            return override
        if asset.link is False and self._by_folder:
            # the file is no link and every zone glob names folders: its folder decides
            folder = os.path.dirname(asset.path)
            zone = self._folder_zone.get(folder)
            if zone is None:
                zone = self._folder_zone[folder] = self._zone_of_path(asset.path, True)
            return zone
        return self._zone_of_path(asset.path, asset.link is False)

    def _zone_of_path(self, given: str, not_a_link: bool) -> str:
        hits: list[str] = []
        for path in _as_given_and_real(given, not_a_link):
            rel = _readable(self._below_root(path))
            hits += [name for name, rel_globs, abs_globs in self._zone_globs
                     if name not in hits and (rel_globs.match(rel) or abs_globs.match(path))]
        if not hits:
            return self.default_zone
        return max(hits, key=lambda z: (self._strictness[z], -hits.index(z)))

    def _below_root(self, path: str) -> str:
        for root, parent in self._root_prefixes:
            if path.startswith(root):
                return path[len(parent):].replace(os.sep, "/")
        return path.lstrip(os.sep).replace(os.sep, "/")

    @property
    def warnings(self) -> list[str]:
        """What in this policy cannot work as its author meant: a relative zone glob that
        does not start with ``**/`` matches, with no roots, only from the filesystem's top."""
        if self.config.roots:
            return []
        return [f"{self.source}: zones.{name}.paths: {pat!r} is relative and the policy has "
                f"no roots, so it only matches /{pat}; start it with **/ or set roots"
                for name, zone in self.zones.items() for pat in zone.get("paths", [])
                if not pat.startswith(("/", "**"))]

    def action_for(self, zone: str, kind: str) -> tuple[str, str]:
        """The action the policy gives ``kind`` in ``zone``, and the line that says so."""
        zactions = self.zones.get(zone, {}).get("actions", {})
        if kind in zactions:
            return zactions[kind], f"zones.{zone}.actions.{kind}"
        return self.doc["actions"][kind], f"actions.{kind}"

    def holds_unjudged(self, zone: str) -> bool:
        """Whether a file that cannot be judged is held in ``zone`` (a final zone): there a
        file the walk would skip gets a record instead of being left out."""
        return self.action_for(zone, "unreadable")[0] in HOLDS

    def decide(self, asset: Asset, verdict: Verdict, approvals: list[Approval] = (),
               zone: str | None = None, now: datetime | None = None,
               declared: Reconciled | None = None) -> Decision:
        """The action for one file, the policy line that chose it and the reason.
        ``declared``: what the vendor's GenAI register says of the file; its findings
        (undisclosed AI, the guidance's principles) raise the action by ``[register]``."""
        now = now or datetime.now(timezone.utc)
        zone = self.zone_of(asset, zone)
        zdoc = self.zones.get(zone, {})
        action, rule = self.action_for(zone, verdict.kind)
        floor = zdoc.get("c2pa", {}).get(verdict.c2pa)
        if floor and _STRENGTH[floor] > _STRENGTH[action]:
            action, rule = floor, f"zones.{zone}.c2pa.{verdict.c2pa}"
        reason = _reason(verdict, zone, action, rule)
        if declared is not None:
            from provgate.register import finding_actions  # only deliveries with a register

            reason += f" GenAI register: {declared.reason}"
            for finding, raised, line in finding_actions(declared, self.doc, zone,
                                                         self.holds_unjudged(zone)):
                if _STRENGTH[raised] > _STRENGTH[action]:
                    action, rule = raised, line
                    reason += f" {finding.reason[:1].upper()}{finding.reason[1:]}: {raised}."
        if action in HOLDS:
            scope = self.scope
            for appr in approvals:
                if appr.clears(asset, scope, now):
                    return Decision("allow", zone, f"approval #{appr.id}",
                                    f"{reason} Allowed by written approval {appr.ref} "
                                    f"({appr.approver}).", appr.summary())
        return Decision(action, zone, rule, reason)


    def integrity(self, zone: str, what: str) -> Decision:
        """A delivered unit that is not what was packed (a track file whose hash is not its
        PKL's, a file missing from its package): held wherever an unreadable file is."""
        action, _line = self.action_for(zone, "unreadable")
        return Decision(action, zone, "integrity", what)

    def void_approval(self, zone: str, kind: str, what: str) -> Decision:
        """A sequence whose approval was given for other frames: decided as if unapproved."""
        action, line = self.action_for(zone, kind)
        return Decision(action, zone, line, what)

    def missing_media(self, zone: str, what: str) -> Decision:
        """Media a cut uses that is not there (missing, offline, not a local file) blocks
        the cut: what cannot be judged cannot go, and no approval can bind to it."""
        return Decision("block", zone, "timeline.missing_media", what)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _as_given_and_real(path: str, not_a_link: bool = False) -> tuple[str, ...]:
    """The path, and where it really is when a link is on the way (folders cached;
    ``not_a_link``: the walk's lstat already saw the file itself is none)."""
    folder, name = os.path.split(path)
    real = os.path.join(_real_folder(folder), name)
    if not not_a_link and os.path.islink(real):
        real = os.path.realpath(real)
    return (path,) if real == path else (path, real)


_INVISIBLE = dict.fromkeys(c for c in range(0x2000, 0x2070)
                           if unicodedata.category(chr(c)) == "Cf")
_INVISIBLE[0xFEFF] = None


def _readable(rel: str) -> str:
    """A path as a person reads it: ``ＦＩＮＡＬ``, ``final\u200b``, ``final.`` and
    ``final `` all read "final" (Windows and macOS users cannot tell them apart)."""
    if rel.isascii() and " /" not in rel and "./" not in rel:
        return rel
    rel = unicodedata.normalize("NFKC", rel).translate(_INVISIBLE)
    return "/".join(part.rstrip(" .") or part for part in rel.split("/"))


def _reason(verdict: Verdict, zone: str, action: str, rule: str) -> str:
    what = _KIND_WORDS[verdict.kind]
    if ".c2pa." in rule:
        what = f"its Content Credentials are {verdict.c2pa.replace('_', ' ')}"
    top = verdict.deciding.meaning if verdict.deciding else (verdict.error or "")
    said = {"allow": "allowed", "flag": "flagged to socialize", "escalate":
            "held: needs written approval", "block": "blocked (quarantined in enforce mode)"}[action]
    detail = f" ({top})" if top and verdict.kind != "unknown" else ""
    return f"In zone {zone}, {verdict.kind}: {what}{detail}; {said}."


def _check_glob(pattern: str, where: str) -> None:
    if not pattern.strip() or re.search(r"\*{3,}", pattern):
        raise ConfigError(f"{where}: bad glob {pattern!r}")
    try:
        matches("x", [pattern])
    except Exception as exc:  # noqa: BLE001 - wcmatch raises several types
        raise ConfigError(f"{where}: bad glob {pattern!r}: {exc}") from exc


def check_approval_glob(pattern: str, roots: list[str]) -> str:
    """The glob made absolute, if it stays inside one of the policy's ``roots``; otherwise a
    ConfigError saying why not. Without roots no glob is accepted (one ``/tmp/**`` would
    clear everything below it): approve files one by one, or set ``roots``."""
    _check_glob(pattern, "approval")
    if not roots:
        raise ConfigError(f"approval glob {pattern!r} refused: the policy has no `roots`, so "
                          "only single files can be approved. Add roots = [\"/srv/delivery\"] "
                          "(the delivery folders) to the policy, or approve the files one by one")
    if ".." in Path(pattern).parts:
        raise ConfigError(f"approval glob {pattern!r} must not contain '..'")
    pattern = os.path.abspath(os.path.expanduser(pattern))
    fixed = Path(*[p for p in _fixed_parts(pattern)])
    if len(fixed.parts) < 2:
        raise ConfigError(f"approval glob {pattern!r} reaches the whole filesystem: name a folder")
    if not any(fixed == Path(r) or Path(r) in fixed.parents for r in roots):
        raise ConfigError(f"approval glob {pattern!r} reaches outside the roots "
                          f"({', '.join(roots)}): its fixed part {fixed} is in none of them")
    return pattern


def _fixed_parts(pattern: str) -> list[str]:
    parts = []
    for part in Path(pattern).parts:
        if any(c in part for c in "*?[{"):
            break
        parts.append(part)
    return parts
