"""Ledger: the append-only, hash-chained SQLite record. The only module that touches SQLite.

Tables (readable with any SQLite tool or datasette):
- ``decisions``: one row per decision, never updated or deleted (triggers refuse it); each row
  stores the previous row's hash and its own, over a canonical JSON of its fields;
- ``files``: path, size, mtime_ns, ctime_ns, inode -> fingerprint and verdict, so a rescan skips
  unchanged files;
- ``approvals``: written approvals; ``quarantine``: moves and restores with their state.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs
import sqlite_utils

from provgate import data
from provgate.errors import ConfigError, LedgerError
from provgate.policy import Approval

GENESIS = "0" * 64
# the fields the hash covers, in the order they are stored
CHAINED = ("id", "time", "path", "root", "fingerprint", "size", "kind", "c2pa", "evidence",
           "error", "zone", "rule", "action", "reason", "mode", "approval_id", "approval_ref",
           "policy_digest", "trust_digest", "tools", "actor", "user", "prev_hash")
_JSON_FIELDS = ("evidence", "tools")
_DECISION_COLUMNS = (*CHAINED, "hash")
_INSERT_DECISION = (f"INSERT INTO decisions ({', '.join(_DECISION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_DECISION_COLUMNS))})")
_FILE_COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "inode", "fingerprint", "catalogue",
                 "trust", "verdict", "decision_id", "decision_key", "seen")
_UPSERT_FILE = (f"INSERT OR REPLACE INTO files ({', '.join(_FILE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_FILE_COLUMNS))})")
# files that left a watched tree: their own chain, verified with the decisions'
EVENT_CHAINED = ("id", "time", "event", "path", "dest", "fingerprint", "decision_id", "actor",
                 "user", "prev_hash")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def row_hash(row: dict[str, Any], fields: tuple[str, ...] = CHAINED) -> str:
    return hashlib.sha256(data.canonical_json({k: row.get(k) for k in fields}).encode()).hexdigest()


def check_folder(path: Path) -> Path:
    """The folder of a ledger (or of a file kept beside it). Only the default folder (the
    user data folder) is ever created: a named folder that does not exist is a mistake (a
    typo would start a new, empty ledger), refused with exit 2."""
    folder = path.parent
    if not folder.is_dir() and folder != Path(platformdirs.user_data_dir("provgate")):
        raise ConfigError(f"the ledger's folder {folder} does not exist (or is not a folder): "
                          "create it, or give --ledger a path in an existing folder")
    return folder


class Ledger:
    """One ledger file; safe to share between a daemon and CLI processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path, readonly: bool = False, scratch: bool = False) -> None:
        """Open (or create) the ledger at ``path``. Only the default folder (the user data
        folder) is ever created: a ledger named in a folder that does not exist is a mistake
        (a typo would start a new, empty ledger), refused with exit 2. ``scratch`` is for a
        dry run: an existing ledger is opened read-only, a missing one is an empty ledger in
        memory, so nothing is written and no file or folder is created."""
        import urllib.parse

        self.path = Path(path)
        folder = check_folder(self.path)
        memory = scratch and not self.path.exists()
        readonly = readonly or (scratch and not memory)
        try:
            if readonly:
                if not self.path.is_file():
                    raise LedgerError(f"no ledger at {self.path}: run a scan first, or pass --ledger")
                uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
                if scratch and not Path(f"{self.path}-wal").exists():
                    # no writer has it open: read it as it is, since a read-only open of a
                    # WAL ledger would leave -wal and -shm files beside it
                    uri += "&immutable=1"
                conn = sqlite3.connect(uri, uri=True, timeout=30)
            elif memory:
                conn = sqlite3.connect(":memory:")
            else:
                folder.mkdir(parents=True, exist_ok=True)  # the default folder only
                conn = sqlite3.connect(str(self.path), timeout=30)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                _retry_locked(lambda: self.db.execute("PRAGMA journal_mode = WAL"))
                self.db.execute("PRAGMA synchronous = NORMAL")
                _retry_locked(self._create)
            else:
                self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc} "
                              "(is it a provgate ledger, writable, on a local disk?)") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        db = self.db
        if {"decisions", "files", "approvals", "quarantine", "events"} <= set(db.table_names()):
            self._migrate()
            return
        db.execute("BEGIN IMMEDIATE")  # two processes creating at once: one waits
        try:
            self._create_tables()
        except BaseException:
            db.rollback()
            raise
        db.commit()

    def _create_tables(self) -> None:
        db = self.db
        with db.atomic():
            if "decisions" not in db.table_names():
                db["decisions"].create({
                    "id": int, "time": str, "path": str, "root": str, "fingerprint": str,
                    "size": int, "kind": str, "c2pa": str, "evidence": str, "error": str,
                    "zone": str, "rule": str, "action": str, "reason": str, "mode": str,
                    "approval_id": int, "approval_ref": str, "policy_digest": str,
                    "trust_digest": str, "tools": str, "actor": str, "user": str,
                    "prev_hash": str, "hash": str}, pk="id")
                db["decisions"].create_index(["path"])
                db["decisions"].create_index(["fingerprint"])
                _append_only(db, "decisions")
            if "events" not in db.table_names():
                db["events"].create({
                    "id": int, "time": str, "event": str, "path": str, "dest": str,
                    "fingerprint": str, "decision_id": int, "actor": str, "user": str,
                    "prev_hash": str, "hash": str}, pk="id")
                db["events"].create_index(["path"])
                _append_only(db, "events")
            if "files" not in db.table_names():
                db["files"].create({
                    "path": str, "size": int, "mtime_ns": int, "ctime_ns": int, "inode": int,
                    "fingerprint": str,
                    "catalogue": str, "trust": str, "verdict": str, "decision_id": int,
                    "decision_key": str, "seen": str}, pk="path")
            if "approvals" not in db.table_names():
                db["approvals"].create({
                    "id": int, "ref": str, "approver": str, "fingerprint": str, "glob": str,
                    "path": str, "expires": str, "note": str, "created": str, "revoked": str,
                    "revoked_by": str}, pk="id")
            if "quarantine" not in db.table_names():
                db["quarantine"].create({
                    "id": int, "decision_id": int, "original_path": str, "quarantined_path": str,
                    "receipt_path": str, "fingerprint": str, "size": int, "state": str,
                    "created": str, "updated": str, "error": str, "user": str,
                    "sidecars": str}, pk="id")

    def _migrate(self) -> None:
        """Columns added since a ledger was made. The cache is an index, never evidence:
        its rows from before ``ctime_ns`` simply miss and are read again."""
        if "ctime_ns" not in self.db["files"].columns_dict:
            self.db.execute("ALTER TABLE files ADD COLUMN ctime_ns INTEGER")
        # the sidecars a quarantine move carries (JSON list); older moves carried none
        if "sidecars" not in self.db["quarantine"].columns_dict:
            try:
                self.db.execute("ALTER TABLE quarantine ADD COLUMN sidecars TEXT")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise

    # -- decisions -------------------------------------------------------------------------

    def append(self, rows: list[dict[str, Any]],
               files: Iterable[dict[str, Any]] = (),
               moves: Iterable[dict[str, Any]] = ()) -> list[int]:
        """Append decisions, update the file cache and open pending moves in one transaction.

        ``moves`` items carry ``row_index`` (the decision they belong to). Returns the ids.
        """
        ids: list[int] = []
        try:
            self.db.execute("BEGIN IMMEDIATE")
            last = self.db.execute(
                "SELECT id, hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
            next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            stored = []
            for row in rows:
                r = {k: row.get(k) for k in CHAINED if k != "prev_hash"}
                for k in _JSON_FIELDS:
                    r[k] = data.canonical_json(r[k] if r[k] is not None else [])
                r["id"], r["prev_hash"] = next_id, prev
                r["hash"] = prev = row_hash(r)
                stored.append(r)
                ids.append(next_id)
                next_id += 1
            # plain executemany on sqlite-utils' connection: its insert_all/upsert_all cost
            # ~0.1 ms a row in Python, a tenth of a small file's whole ExifTool read
            if stored:
                self.db.conn.executemany(_INSERT_DECISION, [
                    tuple(r[k] for k in _DECISION_COLUMNS) for r in stored])
            file_rows = [tuple(ids[f["row_index"]] if k == "decision_id" and
                               f.get("row_index") is not None else f.get(k)
                               for k in _FILE_COLUMNS) for f in files]
            if file_rows:
                self.db.conn.executemany(_UPSERT_FILE, file_rows)
            move_rows = [{**{k: v for k, v in m.items() if not k.startswith(("row_index", "_"))},
                          "decision_id": ids[m["row_index"]]} for m in moves]
            if move_rows:
                self.db["quarantine"].insert_all(move_rows)
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.db.rollback()
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc
        return ids

    def decisions(self, action: str | None = None, kind: str | None = None,
                  since: str | None = None, path: str | None = None,
                  limit: int | None = None, zone: str | None = None,
                  latest: bool = False) -> Iterator[dict[str, Any]]:
        """Decisions in id order, filtered; ``latest`` keeps each path's newest one only (the
        state a report describes; the older rows stay in the chain)."""
        where, params = [], {}
        for col, val in (("action", action), ("kind", kind), ("zone", zone)):
            if val:
                where.append(f"{col} = :{col}")
                params[col] = val
        if since:
            where.append("time >= :since")
            params["since"] = since
        if path:
            where.append("path GLOB :path")
            params["path"] = path if any(c in path for c in "*?[") else f"{path}*"
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        sql = "SELECT * FROM decisions" + cond
        if latest:
            sql = ("SELECT * FROM decisions WHERE id IN "
                   f"(SELECT max(id) FROM decisions{cond} GROUP BY path)")
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        for row in self.db.query(sql, params):
            yield _decode(row)

    def decision(self, ident: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM decisions WHERE id = ?", [ident]))
        return _decode(rows[0]) if rows else None

    def verify(self) -> tuple[int, int | None, str]:
        """(decisions checked, first broken id or None, message); the events chain too."""
        count, bad, message = _verify_chain(self.db, "decisions", CHAINED, "row")
        if bad is not None:
            return count, bad, message
        events, bad, message = (_verify_chain(self.db, "events", EVENT_CHAINED, "event")
                                if "events" in self.db.table_names() else (0, None, ""))
        if bad is not None:
            return count, bad, message
        tail = f" and {events} departures" if events else ""
        return count, None, f"{count} decisions{tail}, chain intact"

    # -- departures ------------------------------------------------------------------------

    def record_departures(self, rows: list[dict[str, Any]]) -> list[int]:
        """Chain events for files that left (``removed``) or moved within (``moved``, with
        ``dest``) a watched tree, and move or drop their file-cache rows, in one transaction.
        A moved file keeps its cached verdict: its new path is not read again."""
        ids: list[int] = []
        if not rows:
            return ids
        try:
            self.db.execute("BEGIN IMMEDIATE")
            last = self.db.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1"
                                   ).fetchone()
            next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            for row in rows:
                r = {**{k: row.get(k) for k in EVENT_CHAINED}, "id": next_id, "prev_hash": prev}
                r["hash"] = prev = row_hash(r, EVENT_CHAINED)
                self.db["events"].insert(r)
                if r["event"] == "moved" and r["dest"]:  # unless the new path is known already
                    self.db.execute("UPDATE OR IGNORE files SET path = ? WHERE path = ?",
                                    [r["dest"], r["path"]])
                self.db.execute("DELETE FROM files WHERE path = ?", [r["path"]])
                ids.append(next_id)
                next_id += 1
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.db.rollback()
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc
        return ids

    def events(self, since: str | None = None, path: str | None = None
               ) -> Iterator[dict[str, Any]]:
        if "events" not in self.db.table_names():
            return iter(())
        where, params = [], []
        if since:
            where.append("time >= ?")
            params.append(since)
        if path:
            where.append("path GLOB ?")
            params.append(path if any(c in path for c in "*?[") else f"{path}*")
        sql = "SELECT * FROM events" + (f" WHERE {' AND '.join(where)}" if where else "")
        return iter(self.db.query(sql + " ORDER BY id", params))

    # -- file cache ------------------------------------------------------------------------

    def cached_under(self, folder: str) -> list[dict[str, Any]]:
        """File-cache rows below ``folder`` (path, fingerprint, decision)."""
        prefix = folder.rstrip("/") + "/"
        return list(self.db.query(
            "SELECT path, fingerprint, decision_id FROM files WHERE path >= ? AND path < ?",
            [prefix, prefix[:-1] + "0"]))  # '0' sorts right after '/'

    def cached_files(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"SELECT * FROM files WHERE path IN ({marks})", chunk):
                out[row["path"]] = row
        return out

    # -- approvals -------------------------------------------------------------------------

    def add_approval(self, **fields: Any) -> int:
        with self.db.atomic():
            return self.db["approvals"].insert({**fields, "created": now_iso()}).last_pk

    def approvals(self, include_inactive: bool = True) -> list[Approval]:
        rows = self.db.query("SELECT * FROM approvals ORDER BY id")
        out = [Approval(id=r["id"], ref=r["ref"], approver=r["approver"], created=r["created"],
                        fingerprint=r["fingerprint"], glob=r["glob"], path=r["path"],
                        expires=r["expires"], note=r["note"], revoked=r["revoked"]) for r in rows]
        if include_inactive:
            return out
        now = datetime.now(timezone.utc)
        return [a for a in out if a.active(now)]

    def revoke_approval(self, ident: int, by: str) -> bool:
        with self.db.atomic():
            cur = self.db.execute("UPDATE approvals SET revoked = ?, revoked_by = ? "
                                  "WHERE id = ? AND revoked IS NULL", [now_iso(), by, ident])
            return cur.rowcount == 1

    # -- quarantine ------------------------------------------------------------------------

    def moves(self, state: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM quarantine" + (" WHERE state = ?" if state else "") + " ORDER BY id"
        return list(self.db.query(sql, [state] if state else []))

    def moved_by_provgate(self, original_path: str, fingerprint: str | None) -> bool:
        """True when provgate's own quarantine took this file away (not a departure)."""
        return self.db.execute(
            "SELECT 1 FROM quarantine WHERE original_path = ? AND fingerprint IS ? AND state IN "
            "('pending', 'done') LIMIT 1", [original_path, fingerprint]).fetchone() is not None

    def move(self, ident: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM quarantine WHERE id = ?", [ident]))
        return rows[0] if rows else None

    def moves_from(self, folder: str, state: str = "done") -> list[dict[str, Any]]:
        """Moves (newest first) of files that were directly in ``folder``: where a sidecar
        arriving late finds the media file provgate quarantined."""
        prefix = folder.rstrip("/") + "/"
        rows = self.db.query(
            "SELECT * FROM quarantine WHERE state = ? AND original_path >= ? AND "
            "original_path < ? ORDER BY id DESC", [state, prefix, prefix[:-1] + "0"])
        return [r for r in rows if "/" not in r["original_path"][len(prefix):]]

    def forget_files(self, paths: list[str]) -> None:
        """Drop file-cache rows, so those files are read again (a sidecar arrived or changed
        beside them: their size and times say nothing about it)."""
        if not paths:
            return
        with self.db.atomic():
            for i in range(0, len(paths), 500):
                chunk = paths[i:i + 500]
                self.db.execute(f"DELETE FROM files WHERE path IN ({','.join('?' * len(chunk))})",
                                chunk)

    def update_move(self, ident: int, **fields: Any) -> None:
        with self.db.atomic():
            self.db["quarantine"].update(ident, {**fields, "updated": now_iso()})


def _append_only(db: sqlite_utils.Database, table: str) -> None:
    for op in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, 'the {table} ledger is append-only'); END")


def _verify_chain(db: sqlite_utils.Database, table: str, fields: tuple[str, ...],
                  noun: str) -> tuple[int, int | None, str]:
    prev, count, expected_id = GENESIS, 0, 1
    for row in db.query(f"SELECT * FROM {table} ORDER BY id"):
        count += 1
        ident = row["id"]
        if ident != expected_id:
            return count, ident, f"{noun} {expected_id} is missing (next {noun} is {ident})"
        if row["prev_hash"] != prev:
            return count, ident, f"{noun} {ident} does not follow {noun} {ident - 1}"
        if row_hash(row, fields) != row["hash"]:
            return count, ident, f"{noun} {ident} was changed after it was written"
        prev, expected_id = row["hash"], expected_id + 1
    return count, None, ""


def _retry_locked(fn: Any, seconds: float = 30.0) -> Any:
    """Retry what SQLite refuses with "locked" without calling its busy handler (a journal
    mode change, a lock upgrade) while another process opens the same ledger."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in _JSON_FIELDS:
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out
