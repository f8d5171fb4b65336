"""Actions: the only module that moves files. It never deletes or overwrites a user's file.

A block in enforce mode moves the file into the quarantine folder under its path relative to
its root, with a JSON receipt beside it. Same filesystem: a hard link to the new name (which
fails rather than replace anything) and then the old name is removed. Across filesystems: copy
to a partial name, fsync, verify the sha256, then link into place and remove the source. Any
failure leaves the original where it was and says why.
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
        "original_path": move["original_path"],
        "quarantined_path": move["quarantined_path"],
        "fingerprint": move["fingerprint"],
        "size": move["size"],
        "time": move["created"],
        "user": move["user"],
        "host": socket.gethostname(),
        "decision": {k: record.get(k) for k in ("kind", "c2pa", "zone", "rule", "action",
                                                 "reason", "policy_digest")},
    }
    data.validate(doc, "receipt", "receipt")
    return doc


def quarantine(move: dict[str, Any], record: dict[str, Any]) -> None:
    """Carry out one planned move (a ``quarantine`` ledger row). Raises ActionError on failure.

    Idempotent, so that a move interrupted by a crash can be finished at the next start.
    """
    src, dst = Path(move["original_path"]), Path(move["quarantined_path"])
    rec_path = Path(move["receipt_path"])
    if _already_moved(src, dst, move["fingerprint"]):
        _finish(src, dst)
        _write_receipt(rec_path, receipt(move, record))
        return
    if not src.exists():
        raise ActionError(f"{src} is gone: nothing to quarantine")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _write_receipt(rec_path, receipt(move, record))
        _place(src, dst, move["fingerprint"])
    except OSError as exc:
        raise ActionError(f"could not quarantine {src}: {_why(exc)}; the file was left in place"
                          ) from exc
    _finish(src, dst)


def restore(move: dict[str, Any]) -> None:
    """Put a quarantined file back, refusing if something now sits at its original path."""
    src, dst = Path(move["quarantined_path"]), Path(move["original_path"])
    if os.path.lexists(dst):
        raise ActionError(f"cannot restore: {dst} exists now; move it away first")
    if not src.exists():
        raise ActionError(f"cannot restore: the quarantined copy {src} is missing")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _place(src, dst, move["fingerprint"])
    except OSError as exc:
        raise ActionError(f"could not restore {dst}: {_why(exc)}; the file stays in quarantine"
                          ) from exc
    _finish(src, dst)
    rec = Path(move["receipt_path"])
    if rec.exists():
        rec.rename(str(rec) + ".restored")


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
