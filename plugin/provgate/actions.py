"""Actions: the only module that moves files. It never deletes or overwrites a user's file.

A block in enforce mode moves the file into the quarantine folder under its path relative to
its root, with a JSON receipt beside it. Same filesystem: a hard link to the new name (which
fails rather than replace anything) and then the old name is removed. Across filesystems: copy
to a partial name, fsync, verify the sha256, then link into place and remove the source. Any
failure leaves the original where it was and says why. A media file's sidecars (``clip.mov.xmp``,
``clip.xmp``, ``clip.mov.c2pa``, ``clip.c2pa``) move with it, the same way, and come back with it.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from provgate import data
from provgate.assets import FileChanged, fingerprint
from provgate.errors import ActionError

RECEIPT_SUFFIX = ".provgate-receipt.json"
PARTIAL_SUFFIX = ".provgate-partial"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def plan_target(quarantine: Path, relpath: str, taken: set[Path] = frozenset()) -> Path:
    """A free name in the quarantine for ``relpath``: ``name~2.ext`` and so on on a clash,
    with files already there or names already given to other moves (``taken``)."""
    rel = Path(relpath)
    if rel.is_absolute() or ".." in rel.parts:
        rel = Path(rel.name)
    target = quarantine / rel
    n = 1
    while (target in taken or os.path.lexists(target)
           or os.path.lexists(str(target) + RECEIPT_SUFFIX)):
        n += 1
        target = quarantine / rel.parent / f"{rel.stem}~{n}{rel.suffix}"
    return target


def receipt(move: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The receipt written beside a quarantined file: enough to rebuild its ledger rows."""
    doc = {
        "receipt_version": 1,
        "move_id": move["id"],
        "decision_id": move["decision_id"],
        "original_path": _text(move["original_path"]),  # the exact name, or \xNN escapes
        "quarantined_path": _text(move["quarantined_path"]),
        "fingerprint": move["fingerprint"],
        "size": move["size"],
        "time": move["created"],
        "user": move["user"],
        "host": socket.gethostname(),
        "decision": {k: record.get(k) for k in ("kind", "c2pa", "zone", "rule", "action",
                                                 "reason", "policy_digest")},
        # the sidecars (XMP, C2PA) that travel with the file; restore brings them back too
        "sidecars": [{"original_path": _text(e["original_path"]),
                      "quarantined_path": _text(e["quarantined_path"]),
                      "fingerprint": e["fingerprint"], "size": e["size"]}
                     for e in move_sidecars(move)],
    }
    data.validate(doc, "receipt", "receipt")
    return doc


def quarantine(move: dict[str, Any], record: dict[str, Any]) -> None:
    """Carry out one planned move (a ``quarantine`` ledger row) and the sidecars it carries.
    Raises ActionError when the media file cannot be moved (its sidecars then stay too).

    Idempotent, so that a move interrupted by a crash can be finished at the next start.
    """
    src, dst = Path(move["original_path"]), Path(move["quarantined_path"])
    rec_path = Path(move["receipt_path"])
    if _already_moved(src, dst, move["fingerprint"]):
        _finish(src, dst)
        _write_receipt(rec_path, receipt(move, record))
    else:
        if not src.exists():
            raise ActionError(f"{src} is gone: nothing to quarantine")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            _write_receipt(rec_path, receipt(move, record))
            _place(src, dst, move["fingerprint"])
        except OSError as exc:
            raise ActionError(f"could not quarantine {src}: {_why(exc)}; the file was left in "
                              "place") from exc
        _finish(src, dst)
    # its sidecars follow only once the media file is in quarantine: a media file left in
    # place keeps its evidence beside it. A sidecar that cannot follow stays behind (an
    # orphan, held in a final zone) and the move says so; the media file's move stands.
    problems = place_sidecars(move_sidecars(move))
    if problems:
        move["sidecar_problems"] = problems
        record.setdefault("warnings", []).extend(problems)


def restore(move: dict[str, Any]) -> list[str]:
    """Put a quarantined file and its sidecars back, refusing (before anything moves) if
    something now sits at one of their original paths. Returns the sidecars put back."""
    src, dst = Path(move["quarantined_path"]), Path(move["original_path"])
    # the sidecars that went with it (and are still in quarantine) come back with it, to
    # their names as the ledger shows them, like the media file (``original_path`` is text)
    sidecars = [{**e, "original_path": _text(e["original_path"])} for e in move_sidecars(move)
                if os.path.lexists(e["quarantined_path"])]
    if os.path.lexists(dst) and not _same_file(src, dst):
        raise ActionError(f"cannot restore: {dst} exists now; move it away first")
    for e in sidecars:
        if os.path.lexists(e["original_path"]) and not _same_file(
                Path(e["quarantined_path"]), Path(e["original_path"])):
            raise ActionError(f"cannot restore: {e['original_path']} exists now (where the "
                              f"sidecar of {dst.name} goes back); move it away first")
    if not src.exists():
        raise ActionError(f"cannot restore: the quarantined copy {src} is missing")
    # sidecars first: if one cannot go back, the media file is still in quarantine and a
    # second restore finishes the job (a sidecar already back is no longer in quarantine)
    for e in sidecars:
        _put_back(Path(e["quarantined_path"]), Path(e["original_path"]), e["fingerprint"],
                  "sidecar ")
    _put_back(src, dst, move["fingerprint"])
    rec = Path(move["receipt_path"])
    if rec.exists():
        rec.rename(str(rec) + ".restored")
    return [e["original_path"] for e in sidecars]


def move_sidecars(move: dict[str, Any]) -> list[dict[str, Any]]:
    """The sidecars a move carries: each ``original_path``, ``quarantined_path``,
    ``fingerprint``, ``size`` (JSON text in the ledger row, a list in a planned move)."""
    raw = move.get("sidecars")
    if not raw:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def plan_sidecars(media: str, target: Path, taken: set[Path] = frozenset()
                  ) -> list[dict[str, Any]]:
    """The sidecars that travel with ``media`` (``clip.mov.xmp``, ``clip.xmp``,
    ``clip.mov.c2pa``, ``clip.c2pa``; not a ``clip.xmp`` another media file shares) and where
    each goes: beside ``target``, named after it (``clip~2.mov`` takes ``clip~2.mov.xmp``)."""
    from provgate.assets import sidecars_of

    out: list[dict[str, Any]] = []
    for side in sidecars_of(media, shared=False):
        entry = plan_sidecar(side, media, target,
                             {*taken, *(Path(e["quarantined_path"]) for e in out)})
        if entry:
            out.append(entry)
    return out


def plan_sidecar(side: str, media: str, target: Path, taken: set[Path] = frozenset()
                 ) -> dict[str, Any] | None:
    """One sidecar's move beside the media file's quarantined copy ``target``; a free name,
    never an existing file's. None when the sidecar cannot be read (it stays, an orphan)."""
    stem, suffix = os.path.splitext(os.path.basename(side))
    target = Path(target)
    # clip.mov.xmp follows clip.mov's new name; clip.xmp its new name without extension
    new_stem = target.name if stem == os.path.basename(media) else target.stem
    cand, n = target.parent / f"{new_stem}{suffix}", 1
    while cand in taken or os.path.lexists(cand):
        n += 1
        cand = target.parent / f"{new_stem}~{n}{suffix}"
    try:
        size = os.stat(side).st_size
        fp = fingerprint(side)
    except OSError:
        return None
    return {"original_path": side, "quarantined_path": str(cand), "fingerprint": fp,
            "size": size}


def place_sidecars(entries: list[dict[str, Any]]) -> list[str]:
    """Move sidecars into quarantine, each like a media file (hard link, or copy and verify,
    then remove the source; never over an existing file) and idempotent: one already there
    with its fingerprint is only finished. Returns what could not be moved, and why."""
    problems = []
    for e in entries:
        src, dst = Path(e["original_path"]), Path(e["quarantined_path"])
        try:
            if os.path.lexists(dst) and (_same_file(src, dst) or fingerprint(str(dst)) ==
                                         e["fingerprint"]):
                _finish(src, dst)  # moved before a crash: drop the source if it is the same
                continue
            if not src.exists():
                problems.append(f"sidecar {_text(str(src))} was gone before it could follow "
                                "its media file")
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            _place(src, dst, e["fingerprint"])
            _finish(src, dst)
        except OSError as exc:
            problems.append(f"sidecar {_text(str(src))} left in place: {_why(exc)}")
        except (ActionError, FileChanged) as exc:
            problems.append(f"sidecar {_text(str(src))} left in place: {exc}")
    return problems


def write_receipt(move: dict[str, Any], record: dict[str, Any]) -> None:
    """(Re)write a move's receipt, e.g. once a late sidecar joined it."""
    _write_receipt(Path(move["receipt_path"]), receipt(move, record))


def _put_back(src: Path, dst: Path, fp: str, what: str = "") -> None:
    """Restore one file from quarantine; finishing a restore a crash interrupted."""
    try:
        if not (os.path.lexists(dst) and _same_file(src, dst)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            _place(src, dst, fp)
    except OSError as exc:
        raise ActionError(f"could not restore {what}{dst}: {_why(exc)}; the file stays in "
                          "quarantine") from exc
    _finish(src, dst)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _text(path: str) -> str:
    """A path as JSON text can hold (undecodable bytes as ``\\xNN``), as in the ledger."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _already_moved(src: Path, dst: Path, fp: str) -> bool:
    if not dst.exists():
        return False
    if src.exists() and os.path.samefile(src, dst):
        return True
    return not src.exists() and fingerprint(str(dst)) == fp


def _place(src: Path, dst: Path, fp: str) -> None:
    """Make ``dst`` hold ``src``'s bytes without ever replacing an existing ``dst``."""
    try:
        os.link(src, dst)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    partial = Path(str(dst) + PARTIAL_SUFFIX)
    try:
        with open(src, "rb") as fin, open(partial, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, partial)
        if fingerprint(str(partial)) != fp:
            raise ActionError(f"copy of {src} does not match its fingerprint; left in place")
        try:
            os.link(partial, dst)
            partial.unlink()
        except OSError:
            if os.path.lexists(dst):
                raise
            os.rename(partial, dst)
    except BaseException:
        if partial.exists():
            partial.unlink()  # our own partial copy, never a user's file
        raise


def _finish(src: Path, dst: Path) -> None:
    """Remove the source name once ``dst`` verifiably holds the same bytes."""
    if src.exists():
        if not os.path.samefile(src, dst):
            try:
                if fingerprint(str(src)) != fingerprint(str(dst)):
                    raise ActionError(f"{src} changed during the move: kept both copies")
            except FileChanged as exc:
                raise ActionError(f"{src}: {exc}: kept both copies") from exc
        src.unlink()
        _fsync_dir(src.parent)
    _fsync_dir(dst.parent)


def _write_receipt(path: Path, doc: dict[str, Any]) -> None:
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # our own receipt file, never a user's


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return {
        errno.ENOSPC: "the quarantine filesystem is full",
        errno.EDQUOT: "the quarantine quota is exhausted",
        errno.EACCES: "permission denied on the quarantine folder",
        errno.EROFS: "the quarantine folder is on a read-only filesystem",
        errno.EEXIST: "a file with that name already exists in quarantine",
    }.get(exc.errno or 0, str(exc))


IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# the IPTC code a sidecar states for each kind; unknown, human and unreadable state none, since
# provgate has no provenance of its own to assert for them
KIND_SOURCE_TYPE = {"ai_generated": "trainedAlgorithmicMedia",
                    "ai_composite": "compositeWithTrainedAlgorithmicMedia",
                    "ai_possible": "composite", "algorithmic": "algorithmicMedia"}
SIDECAR_SUFFIX = ".xmp"


def sidecar_path(path: str) -> Path:
    return Path(path + SIDECAR_SUFFIX)


def write_sidecar(record: dict[str, Any], raw_path: str | None = None) -> str | None:
    """Write the verdict beside the file as ``NAME.EXT.xmp`` for DAMs and editorial tools.

    The file's own bytes are never touched. A sidecar provgate did not write is left alone
    (returns why); one it wrote before is replaced by a fresh one.
    """
    from provgate.probe import read_tags, write_tags

    side = sidecar_path(raw_path or record["path"])
    if side.exists():
        if not read_tags(str(side), ["XMP-provgate:DecisionID"]).get("XMP-provgate:DecisionID"):
            return f"sidecar {side.name} exists and is not provgate's: not written"
        side.unlink()  # our own earlier verdict
    tags = {"XMP-provgate:DecisionID": str(record["id"]), "XMP-provgate:Kind": record["kind"],
            "XMP-provgate:Action": record["action"], "XMP-provgate:Rule": record["rule"],
            "XMP-provgate:Zone": record["zone"], "XMP-provgate:Reason": record["reason"],
            "XMP-provgate:Time": record["time"],
            "XMP-provgate:PolicyDigest": record["policy_digest"]}
    if record["kind"] in KIND_SOURCE_TYPE:
        tags["XMP-iptcExt:DigitalSourceType"] = IPTC_DST + KIND_SOURCE_TYPE[record["kind"]]
    write_tags(str(side), tags, create=True)
    return None


def tag_file(path: str, source_type: str, tool: str | None = None) -> None:
    """Label working media a team made with AI, in the file itself, so provenance travels.

    A backup is kept beside the file until the write is read back and verified; on any
    failure the original bytes are put back.
    """
    from provgate.probe import read_tags, write_tags

    src = Path(path)
    backup = Path(str(src) + ".provgate-backup")
    if os.path.lexists(backup):
        raise ActionError(f"{backup} exists: a previous tag was interrupted; check it first")
    tags = {"XMP-iptcExt:DigitalSourceType": IPTC_DST + source_type}
    if tool:
        tags["XMP-iptcExt:AISystemUsed"] = tool
    shutil.copy2(src, backup)
    try:
        write_tags(str(src), tags)
        got = read_tags(str(src), ["XMP-iptcExt:DigitalSourceType"])
        if got.get("XMP-iptcExt:DigitalSourceType") != tags["XMP-iptcExt:DigitalSourceType"]:
            raise ActionError(f"ExifTool did not keep the tag in {src}; original restored")
    except BaseException:
        os.replace(backup, src)  # our own copy of the user's bytes goes back
        raise
    backup.unlink()
