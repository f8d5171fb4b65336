"""Deliveries: what a check of a delivery decided, kept as a chained, sealed ledger record.

A delivery record names the delivery, its show and episode, when and by whom it was checked,
its folders, the decision of every file in it, the verdict, the policy's and the register's
digests (and where that register was, so an approval can be made from one of its entries) and
the head of the decisions chain at that moment. A re-check of the same delivery is a new
record; ``changes`` says what differs from the one before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provgate.errors import ConfigError
from provgate.ledger import Ledger, now_iso
from provgate.record import Brief, text_path

if TYPE_CHECKING:
    from provgate.policy import Policy
    from provgate.register import Register


@dataclass(frozen=True, slots=True)
class Changes:
    """How a delivery differs from its previous record: files new, gone, and decided
    differently (another action, kind or content)."""

    previous: int
    new: tuple[str, ...]
    gone: tuple[str, ...]
    changed: tuple[str, ...]

    def line(self) -> str:
        if not (self.new or self.gone or self.changed):
            return f"same as delivery #{self.previous}"
        return (f"since delivery #{self.previous}: {len(self.changed)} changed, "
                f"{len(self.new)} new, {len(self.gone)} gone")


def name_of(given: Iterable[str]) -> str:
    """The default name of a delivery: its folder's name (the common folder of what was
    given), e.g. ``EP101`` for ``.../EP101/final``'s parent given, ``final`` for the folder."""
    paths = [os.path.abspath(p) for p in given]
    if not paths:
        return "delivery"
    common = os.path.commonpath(paths)
    if len(paths) == 1 and not os.path.isdir(common):
        common = os.path.dirname(common)
    return os.path.basename(common.rstrip(os.sep)) or common


def record(ledger: Ledger, name: str, roots: list[str], briefs: list[Brief], verdict: str,
           policy_digest: str, register_digest: str | None, actor: str, user: str, *,
           show: str | None = None, episode: str | None = None,
           register: Register | None = None,
           units: Iterable[Brief] = ()) -> tuple[int, Changes | None]:
    """Chain the delivery's record; returns its id and what changed since the last record of
    the same name (None for the first). ``register``: the GenAI register the check read, kept
    by path and root so that an approval can later be made from one of its entries.
    ``units``: the sequences and packages the check held as a whole (a package that fails its
    PKL, a sequence whose approval is void) with why: no file's own decision says it."""
    held_units = [{"path": u.path, "kind": u.kind, "action": u.action,
                   "problem": u.error or u.reason} for u in units if u.held]
    files = _files(briefs)
    previous = ledger.deliveries(name)
    head = ledger.heads().get("decisions", {}).get("head")
    ident = ledger.record_delivery({
        "time": now_iso(), "name": name, "roots": json.dumps(roots, ensure_ascii=False),
        "verdict": verdict, "files": len(files), "held": sum(b.held for b in briefs),
        "decisions": json.dumps(files, ensure_ascii=False, sort_keys=True),
        "policy_digest": policy_digest, "register_digest": register_digest,
        "decisions_head": head, "actor": actor, "user": user, "show": show,
        "episode": episode,
        "register": os.path.abspath(register.source) if register else None,
        "register_root": register.root if register else None,
        "units": json.dumps(held_units, ensure_ascii=False) if held_units else None})
    return ident, (changes(previous[-1], files) if previous else None)


def _files(briefs: list[Brief]) -> dict[str, dict[str, Any]]:
    return {b.path: {"id": b.id, "action": b.action, "kind": b.kind,
                     "fingerprint": b.fingerprint} for b in briefs}


def root_view(ledger: Ledger, root: str) -> list[Brief]:
    """The files a watched root holds, as last decided: each path's newest decision below
    it, without the files the daemon saw leave (removed, or moved: then under their new
    path, with the decision they had). A file provgate quarantined stays, blocked: it was
    delivered there. Each decision is read again through ``Ledger.last_decision``, which
    verifies it; a path whose decision does not verify is held (``unreadable``, escalated,
    no decision id), never passed."""
    prefix = text_path(os.path.abspath(root)).rstrip(os.sep) + os.sep
    below = _glob_literal(prefix) + "*"
    view: dict[str, dict[str, Any]] = {
        r["path"]: r for r in ledger.decisions(path=below, latest=True)}
    for e in ledger.events(path=below, verified=True):
        row = view.get(e["path"])
        if row is None or e["time"] < row["time"]:
            continue  # decided again after it left: a new file at that path
        del view[e["path"]]
        dest = e.get("dest")
        if e["event"] == "moved" and dest and dest.startswith(prefix) and (
                dest not in view or view[dest]["time"] < e["time"]):
            view[dest] = row
    out = []
    for path, row in sorted(view.items()):
        checked = ledger.last_decision(row["path"])
        if checked is None or checked["id"] != row["id"]:
            out.append(Brief(path, "unreadable", "escalate", "its decision does not verify in "
                             "the ledger (run `provgate ledger verify`)", None, None,
                             f"decision #{row['id']} does not verify", zone=row["zone"]))
            continue
        out.append(Brief(path, checked["kind"], checked["action"], checked["reason"], None,
                         checked["fingerprint"], checked["error"], id=checked["id"],
                         zone=checked["zone"]))
    return out


def record_root(ledger: Ledger, name: str, root: str, policy: Policy, user: str,
                register: Register | None = None,
                wholes: Callable[[list[Brief]], list[Brief]] | None = None
                ) -> tuple[int, Changes | None] | None:
    """Record a watched root as delivery ``name`` (``root_view``), unless its last record
    of that name already says the same: same folder, verdict and files (action, kind and
    content of each). ``wholes``: what only the whole shows (``units.whole_units``: a
    package against its PKL, an ASC MHL history), held units failing the delivery as in
    `check`. None when nothing was recorded, or the root holds nothing decided."""
    briefs = root_view(ledger, root)
    if not briefs:
        return None
    roots = [text_path(os.path.abspath(root))]
    units = [u for u in (wholes(briefs) if wholes else []) if u.held]
    verdict = "FAILED" if units or any(b.held for b in briefs) else "passed"
    last = latest(ledger, name)
    if last is not None and last["verdict"] == verdict and json.loads(last["roots"]) == roots:
        same = changes(last, _files(briefs))
        if not (same.new or same.gone or same.changed):
            return None
    return record(ledger, name, roots, briefs, verdict, policy.digest,
                  register.digest if register else None, "daemon", user,
                  show=policy.show, episode=policy.episode, register=register, units=units)


def _glob_literal(text: str) -> str:
    """``text`` as an SQLite GLOB that matches only itself (a root named ``[x]`` or ``a*``)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def latest(ledger: Ledger, name: str | None = None) -> dict[str, Any] | None:
    """The last delivery record that verifies (of ``name`` when given), or None."""
    rows = ledger.deliveries(name)
    return rows[-1] if rows else None


def register_of(delivery: dict[str, Any]) -> Register:
    """The GenAI register a delivery's check read, loaded again from where it was; refused
    (ConfigError) when the delivery had none, or the file changed since the check (its
    entries would not be the ones the check reconciled)."""
    from provgate import register

    path, root = delivery.get("register"), delivery.get("register_root")
    if not delivery.get("register_digest") or not path:
        raise ConfigError(f"delivery {delivery['name']!r} (#{delivery['id']}) was checked "
                          "without a GenAI register it recorded: name the register with "
                          "--register FILE")
    reg = register.load(path, root=root)
    if reg.digest != delivery["register_digest"]:
        raise ConfigError(f"the GenAI register {path} changed since delivery "
                          f"{delivery['name']!r} (#{delivery['id']}) was checked: check the "
                          "delivery again, or name the register with --register FILE")
    return reg


def changes(previous: dict[str, Any], files: dict[str, dict[str, Any]]) -> Changes:
    before = json.loads(previous["decisions"])
    same = ("action", "kind", "fingerprint")
    return Changes(previous["id"], tuple(sorted(set(files) - set(before))),
                   tuple(sorted(set(before) - set(files))),
                   tuple(sorted(p for p in set(files) & set(before)
                                if any(files[p][k] != before[p][k] for k in same))))
