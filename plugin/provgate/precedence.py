"""Kind precedence: which of a file's signals decides its kind (README "What it reads").

Every signal stays in the evidence; this only chooses the kind:

1. A digital source type declared for the file itself (its active C2PA manifest, or XMP/IPTC)
   decides among the AI kinds at its level: a signed ``compositeWithTrainedAlgorithmicMedia``
   stays ``ai_composite`` even when the action's software agent is a generator's name, and a
   parent ingredient's ``trainedAlgorithmicMedia`` does not make an edit of it generated.
   A declared ``composite`` (or ``virtualRecording``) with a generator named or a generated
   part placed in it is ``ai_composite``.
2. Without an AI declaration, the strongest signal wins and any AI signal outranks a human or
   algorithmic one: a generated ingredient placed in a capture is ``ai_composite``
   (credentials.py maps it), a generator's record or its name as the making software
   ``ai_generated``, a mention ``ai_possible``.
3. A detector's finding (pixels, a plugin) is evidence, not a declaration: it never outranks a
   signed declaration (a source type in the active C2PA manifest, or a signed capture parent),
   of whatever kind. Unsigned XMP is trivially written, so there it competes like any signal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from provgate.signals import Signal
from provgate.vocabulary import AI_KINDS, KIND_RANK

# where metadata signals come from; anything else (pixels, a plugin) is a detector's finding
METADATA_SOURCES = frozenset({"exiftool", "sidecar", "c2pa"})
# ExifTool's view of a C2PA store (-G3:1): Doc1-N is the store's Nth manifest, the last active
_MANIFEST = re.compile(r"^Doc1-(\d+)[-:]")


def strongest(kinds: Sequence[str]) -> str:
    """The strongest of signal kinds, or ``unknown`` when there is none."""
    ranked = [k for k in kinds if k in KIND_RANK]
    return max(ranked, key=KIND_RANK.__getitem__) if ranked else "unknown"


def declarations(signals: Sequence[Signal]) -> list[Signal]:
    """The signals that declare the file's own source type: a digital source type in XMP/IPTC
    (file or sidecar), in the active C2PA manifest as c2pa-python reads it, or, when only
    ExifTool read the store, in the last manifest that gave evidence (the active manifest comes
    last in a store); and credentials.py's signed-capture parent."""
    found = []
    last = max((int(m.group(1)) for s in signals if s.source == "exiftool"
                and (m := _MANIFEST.match(s.tag))), default=None)
    for s in signals:
        if s.marker == "capture-parent":
            found.append(s)
        elif s.marker != "digital-source-type":
            continue
        elif s.source == "c2pa":
            if s.tag.startswith("active manifest:"):
                found.append(s)
        elif ":CBOR:" in f":{s.tag}":
            m = _MANIFEST.match(s.tag)
            if m is None or int(m.group(1)) == last:
                found.append(s)
        else:
            found.append(s)
    return found


def kind_of(signals: Sequence[Signal]) -> str:
    """The kind a file's signals give, by the precedence above; ``unknown`` for none."""
    declared = declarations(signals)
    signed = any(s.source == "c2pa" for s in declared)
    if signed:  # a detector never outranks a signed declaration
        signals = [s for s in signals if s.source in METADATA_SOURCES]
    ai_declared = strongest([s.kind for s in declared if s.kind in AI_KINDS])
    if ai_declared == "unknown":
        return strongest([s.kind for s in signals])
    detected = strongest([s.kind for s in signals if s.source not in METADATA_SOURCES])
    if not signed and KIND_RANK.get(detected, 0) > KIND_RANK[ai_declared]:
        return detected  # an unsigned tag anyone can write competes like any signal
    if ai_declared == "ai_possible" and any(
            s.kind in ("ai_generated", "ai_composite") for s in signals if s not in declared):
        return "ai_composite"
    return ai_declared
