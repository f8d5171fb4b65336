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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provgate.errors import ConfigError
from provgate.ledger import Ledger, now_iso
from provgate.record import Brief

if TYPE_CHECKING:
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
           register: Register | None = None) -> tuple[int, Changes | None]:
    """Chain the delivery's record; returns its id and what changed since the last record of
    the same name (None for the first). ``register``: the GenAI register the check read, kept
    by path and root so that an approval can later be made from one of its entries."""
    files = {b.path: {"id": b.id, "action": b.action, "kind": b.kind,
                      "fingerprint": b.fingerprint} for b in briefs}
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
        "register_root": register.root if register else None})
    return ident, (changes(previous[-1], files) if previous else None)


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
