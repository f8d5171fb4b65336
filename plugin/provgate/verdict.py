"""Verdict: combine a file's signals into one kind, keeping every piece of evidence.

The kind follows precedence.py (a declared source type decides at its level; otherwise the
strongest signal wins and any AI signal outranks a human one); conflicts are kept in the
evidence, never hidden; no signal at all is ``unknown``, never a clean bill.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provgate.precedence import kind_of, strongest
from provgate.probe import Metadata
from provgate.record import Verdict
from provgate.signals import Signal
from provgate.vocabulary import AI_KINDS

# a container's C2PA state: the loudest of its members' (a broken manifest anywhere inside it)
_STATE_WEIGHT = {s: i for i, s in enumerate(("absent", "valid_trusted", "valid_untrusted",
                                              "not_checked", "remote", "stripped", "invalid"))}


def judge(meta: Metadata, signals: list[Signal], c2pa: str,
          credentials: dict[str, Any] | None = None,
          warnings: tuple[str, ...] = ()) -> Verdict:
    """The verdict for one file. A read error with no signal at all makes it ``unreadable``;
    so does damage (ExifTool's truncation or corruption warning, or a structural check that
    finds the file cut short) unless an AI signal outranks it: what a damaged file's missing
    part held is unknown, so a human or algorithmic signal cannot clear it."""
    kind = kind_of(signals)
    error = meta.error
    if meta.error and not signals:
        kind = "unreadable"
    elif meta.damage and not meta.error:
        error = f"truncated or corrupt file: {meta.damage}"
        if kind not in AI_KINDS:
            kind = "unreadable"
    return Verdict(kind=kind, c2pa=c2pa, evidence=tuple(signals), error=error,
                   warnings=tuple(meta.warnings) + tuple(warnings),
                   credentials=credentials or {})


def combine_members(own: Verdict, members: list[tuple[str, Verdict]],
                    appended: bool = False) -> Verdict:
    """The verdict of an archive from its own metadata and its members' verdicts.

    Every member's evidence is kept with the member's path in its tag. A generated member
    makes the archive generated; a member that could not be judged makes it ``unreadable``
    unless an AI member already holds it harder, so nothing inside passes unjudged.

    ``appended``: the members are those of a zip appended to a file that is judged in its own
    right (a polyglot: ``own`` is the host media's verdict, or an archive's already combined),
    so its kind and error stand beside the members' (an unreadable host stays unreadable);
    otherwise ``own`` is ExifTool's view of the container and only its evidence counts.
    """
    what = "appended zip member" if appended else "archive member"
    evidence = list(own.evidence)
    unjudged: list[str] = []
    warnings = list(own.warnings)
    for name, v in members:
        evidence += [replace(s, tag=f"{what} {name}: {s.tag}",
                             meaning=f"{s.meaning} ({what} {name})") for s in v.evidence]
        warnings += [f"{what} {name}: {w}" for w in v.warnings]
        if v.kind == "unreadable":
            unjudged.append(f"{name} ({v.error or 'could not be read'})")
    # the strongest of the members' kinds (each one's precedence applied to its own evidence)
    kind = strongest([own.kind if appended else kind_of(own.evidence),
                      *(v.kind for _, v in members)])
    errors = [own.error] if appended and own.error else []
    if unjudged:
        errors.append(f"{len(unjudged)} {what}(s) could not be judged: "
                      + "; ".join(unjudged[:5]) + ("; ..." if len(unjudged) > 5 else ""))
    if (unjudged or (appended and own.kind == "unreadable")) and kind not in AI_KINDS:
        kind = "unreadable"
    c2pa = max([own.c2pa, *(v.c2pa for _, v in members)], key=lambda s: _STATE_WEIGHT.get(s, 0))
    warnings.append(f"zip appended to the file (a polyglot): {len(members)} member(s), each "
                    "judged" if appended else f"archive of {len(members)} member(s), each judged")
    return Verdict(kind, c2pa, tuple(evidence), "; ".join(errors) or None, tuple(warnings),
                   own.credentials)
