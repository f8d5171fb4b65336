"""A run's records as the gate reads them: every file's record, folded into the units a
facility delivers (sequences, packages, ASC MHL histories), and what holds the delivery.

The CLI prints; this module decides what is shown and what holds. A pass means every file
and every unit passed: a unit's verdict never lets one of its files through.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from provgate import units
from provgate.assets import listed_files
from provgate.errors import EXIT_GATE_FAILED
from provgate.record import Brief, Record
from provgate.session import Session


@dataclass
class Gated:
    """What a run keeps once its records are shown: every file's brief (the ledger's and a
    delivery's view), and what was shown (a sequence as one line)."""

    files: list[Brief] = field(default_factory=list)
    shown: list[Brief] = field(default_factory=list)
    units: int = 0
    # a package's held files, by the package's path: what a producer approves or replaces
    inside: dict[str, list[Brief]] = field(default_factory=dict)
    # the unit each folded file belongs to
    unit_of: dict[str, str] = field(default_factory=dict)

    def held(self) -> list[Brief]:
        """What holds the delivery: every held unit or file shown, and every held file
        that no held line stands for (its unit passed, or it was shown as another record)."""
        held = {b.path for b in self.shown if b.held}
        return [b for b in self.shown if b.held] + [
            f for f in self.files if f.held and f.path not in held
            and self.unit_of.get(f.path) not in held]


@dataclass
class Outcome:
    """What a check concludes: a pass only when no file or unit holds, the delivery did not
    change while it was checked, and there was something to judge."""

    held: list[Brief]
    # files there now that the walk never listed: a transfer still running, a file slipped
    # in behind the walk (never judged, so never passed)
    appeared: list[str]
    # no media file was judged, and an empty delivery was not expected
    empty: bool

    @property
    def passed(self) -> bool:
        return not (self.held or self.appeared or self.empty)

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "FAILED"

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_GATE_FAILED


def conclude(gated: Gated, given: list[str], walked: set[str], allow_empty: bool) -> Outcome:
    """A check's outcome, once its run is over: ``given`` the paths it was given, ``walked``
    every file its walk listed."""
    return Outcome(gated.held(), sorted(listed_files(given) - walked),
                   not gated.files and not allow_empty)


def run(session: Session, paths: list[str], emit: Callable[[dict[str, Any]], None], *,
        frames: bool = False, progress: Callable[[int], None] | None = None,
        walked: set[str] | None = None,
        enrich: Callable[[Iterable[Record]], Iterable[Record]] = iter,
        extra: Callable[[Session], Iterable[Record]] = lambda _s: ()) -> Gated:
    """Gate ``paths`` through the session, ``emit``-ting each record as it comes (memory
    stays flat); frames and package files wait for the end of the run and come out as their
    units, unless ``frames`` (every file is shown; the units still count, unshown).
    ``enrich`` adds to each record; ``extra`` records (a timeline's missing media) come
    after the gate's; ``walked`` receives every file the walk listed."""
    gated = Gated()
    gather = units.Gather(session.policy, {
        a.id: {"ref": a.ref, "sequence": a.sequence}
        for a in session.ledger.approvals(include_inactive=False) if a.sequence})
    records = session.run(paths, progress=progress, seen=walked) if paths else iter(())
    for rec in itertools.chain(enrich(records), extra(session)):
        brief = rec.brief()
        gated.files.append(brief)
        if frames:
            emit(rec.to_json())
            gated.shown.append(brief)
        _show(gated, gather.add(brief, None if frames else rec.to_json), emit, frames)
    _show(gated, units.mhl_check(paths, gated.files, session.policy), emit, frames)
    _show(gated, gather.finish(), emit, frames)
    return gated


def _show(gated: Gated, items: Iterable[units.Shown], emit: Callable[[dict[str, Any]], None],
          frames: bool) -> None:
    """Emit what folded (with ``frames`` every file was emitted as it came: a unit still
    counts, for the verdict, and is not emitted)."""
    for item in items:
        if isinstance(item, (units.Unit, units.PackageUnit)):
            if not frames:
                emit(item.to_json())
            gated.shown.append(item.brief())
            gated.units += 1
            for b in item.frames:
                gated.unit_of[b.path] = item.path
            if isinstance(item, units.PackageUnit):
                gated.inside[item.path] = [b for b in item.files if b.held]
        elif item[1] is not None:  # with frames, only what no file said (an MHL history)
            emit(item[1])
            gated.shown.append(item[0])
