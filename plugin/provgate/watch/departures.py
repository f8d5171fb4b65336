"""Departures: files that left a watched tree (deleted, moved within it or out of it), found
live from events or at catch-up from the file cache, chained in the ledger's ``events``.

The daemon hears; these calls say what happened to the files the ledger knew, and record it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from provgate.errors import LedgerError
from provgate.ledger import Ledger, now_iso
from provgate.record import text_path

log = logging.getLogger("provgate")


@dataclass(frozen=True, slots=True)
class Departure:
    """``event`` is ``removed`` or ``moved`` (to ``dest``); ``row`` the file's cache row."""

    event: str
    row: dict[str, Any]
    dest: str = ""


def from_events(ledger: Ledger, heard: Iterable[tuple[str, str, str, bool]], roots: list[str],
                inside: Callable[[str, str], bool]) -> list[Departure]:
    """What left, from (src, dest, root, is_dir) events: a file the cache knew whose name is
    gone (replaced in place is not a departure: the new file is heard). ``inside`` says
    whether a move's destination is still watched."""
    out = []
    for src, dest, root, is_dir in heard:
        if not os.path.isdir(root):
            continue  # the root itself went away: caught up when it is back
        kept = bool(dest) and inside(dest, root)
        # the cache holds paths as text (undecodable bytes escaped): look up in that form,
        # but ask the filesystem with the real name
        rows = (ledger.cached_under(text_path(src)) if is_dir
                else list(ledger.cached_files([text_path(src)]).values()))
        for row in rows:
            if os.path.lexists(src if not is_dir else row["path"]):
                continue
            if kept:
                out.append(Departure("moved", row,
                                     text_path(dest) + row["path"][len(text_path(src)):]))
            else:
                out.append(Departure("removed", row))
    return out


def from_catch_up(ledger: Ledger, folder: str, seen: set[str],
                  fresh: dict[str | None, str]) -> list[Departure]:
    """What the cache knows under ``folder`` that a catch-up walk did not find: moved when
    the same content turned up at a new path in that walk (``fresh``: fingerprint -> path),
    removed otherwise."""
    gone = [r for r in ledger.cached_under(text_path(folder))
            if r["path"] not in seen and not os.path.lexists(r["path"])]
    return [Departure("moved", r, fresh[r["fingerprint"]]) if r["fingerprint"] in fresh
            else Departure("removed", r) for r in gone]


def record(ledger: Ledger, departures: list[Departure], user: str) -> None:
    """Chain the departures; provgate's own quarantine moves are already on record."""
    rows = [{"time": now_iso(), "event": d.event, "path": d.row["path"],
             "dest": d.dest or None, "fingerprint": d.row["fingerprint"],
             "decision_id": d.row["decision_id"], "actor": "daemon", "user": user}
            for d in departures
            if not ledger.moved_by_provgate(d.row["path"], d.row["fingerprint"])]
    try:
        ledger.record_departures(rows)
    except LedgerError as exc:
        log.error("departures not recorded: %s", exc)
        return
    for r in rows:
        log.info("%s %s%s", r["event"].upper(), r["path"],
                 f" -> {r['dest']}" if r["dest"] else "")
