"""Sidecars in the daemon: a real sidecar is never judged on its own; it stands for its media
file, and one that arrives after its media file was quarantined follows it there."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from provgate import actions
from provgate.assets import is_real_sidecar, media_of
from provgate.errors import ProvgateError
from provgate.record import text_path
from provgate.session import Session
from provgate.watch.settle import SettleQueue, sidecar_name

log = logging.getLogger("provgate")


def stands_for(path: str, queue: SettleQueue, session: Session | None) -> list[str]:
    """What to gate for a settled path: the path itself, except for a real sidecar. It stands
    for its media file(s), judged again with it (their cached verdicts dropped: a sidecar
    changes nothing in the media file's size or times), unless a media file is still
    arriving (its own entry judges it, sidecar and all). A sidecar whose media file provgate
    quarantined follows it there in enforce mode; any other with no media file is an orphan,
    recorded as one (stat_asset)."""
    if not sidecar_name(path) or not is_real_sidecar(path):
        return [path]  # media, or a file that only has a sidecar's name
    media = media_of(path)
    if not media:
        followed = session is not None and follow_quarantined(path, session)
        return [] if followed else [path]
    due = [m for m in media if not queue.holds(m)]
    if due and session is not None:
        session.ledger.forget_files([text_path(m) for m in due])
    for m in due:
        log.info("%s arrived or changed: judging %s again with it", path, m)
    return due


def follow_quarantined(path: str, session: Session) -> bool:
    """A sidecar arriving after provgate quarantined its media file (enforce mode) is moved
    into the quarantine beside it and added to that move (ledger row and receipt), so a
    restore brings the pair back together. Its media file was blocked: the sidecar is part of
    that blocked asset, and left in the delivery it would hold the delivery as an orphan
    that nobody but provgate can pair again. In warn and audit modes nothing moves: it is
    recorded as an orphan."""
    if session.mode != "enforce":
        return False
    move = _quarantined_media(path, session)
    if move is None:
        return False
    entry = actions.plan_sidecar(path, move["original_path"], Path(move["quarantined_path"]))
    if entry is None:
        return False
    before = actions.move_sidecars(move)
    ledger = session.ledger
    # the intent is on record before the file moves; a crash in between leaves the sidecar in
    # place, an orphan the next catch-up holds, and a restore skips it
    ledger.update_move(move["id"], sidecars=json.dumps([*before, entry]))
    problems = actions.place_sidecars([entry])
    if problems:
        ledger.update_move(move["id"], sidecars=json.dumps(before) if before else None)
        log.error("%s", "; ".join(problems))
        return False
    try:
        actions.write_receipt({**move, "sidecars": [*before, entry]},
                              ledger.decision(move["decision_id"]) or {})
    except (OSError, ProvgateError) as exc:
        log.error("receipt of quarantine #%d not updated: %s", move["id"], exc)
    log.info("%s arrived after its media file was quarantined (#%d): moved beside it to %s",
             path, move["id"], entry["quarantined_path"])
    return True


def _quarantined_media(path: str, session: Session) -> dict | None:
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    for move in session.ledger.moves_from(text_path(folder)):
        orig = move["original_path"]
        base = os.path.basename(orig)
        if (base == stem or os.path.splitext(base)[0] == stem) and not \
                os.path.lexists(orig) and os.path.exists(move["quarantined_path"]):
            return move
    return None
