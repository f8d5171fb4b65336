"""Deliveries: what a check of a delivery decided, kept as a chained, sealed ledger record.

A delivery record names the delivery, when and by whom it was checked, its folders, the
decision of every file in it, the verdict, the policy's and the register's digests and the
head of the decisions chain at that moment. A re-check of the same delivery is a new record;
``changes`` says what differs from the one before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from provgate.ledger import Ledger, now_iso
from provgate.record import Brief


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
           policy_digest: str, register_digest: str | None, actor: str, user: str
           ) -> tuple[int, Changes | None]:
    """Chain the delivery's record; returns its id and what changed since the last record of
    the same name (None for the first)."""
    files = {b.path: {"id": b.id, "action": b.action, "kind": b.kind,
                      "fingerprint": b.fingerprint} for b in briefs}
    previous = ledger.deliveries(name)
    head = ledger.heads().get("decisions", {}).get("head")
    ident = ledger.record_delivery({
        "time": now_iso(), "name": name, "roots": json.dumps(roots, ensure_ascii=False),
        "verdict": verdict, "files": len(files), "held": sum(b.held for b in briefs),
        "decisions": json.dumps(files, ensure_ascii=False, sort_keys=True),
        "policy_digest": policy_digest, "register_digest": register_digest,
        "decisions_head": head, "actor": actor, "user": user})
    return ident, (changes(previous[-1], files) if previous else None)


def changes(previous: dict[str, Any], files: dict[str, dict[str, Any]]) -> Changes:
    before = json.loads(previous["decisions"])
    same = ("action", "kind", "fingerprint")
    return Changes(previous["id"], tuple(sorted(set(files) - set(before))),
                   tuple(sorted(set(before) - set(files))),
                   tuple(sorted(p for p in set(files) & set(before)
                                if any(files[p][k] != before[p][k] for k in same))))
