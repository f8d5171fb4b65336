"""Ledger: the append-only, hash-chained and sealed SQLite record. The only module that touches
SQLite.

Tables (readable with any SQLite tool or datasette):
- ``decisions``, ``events`` (departures), ``approvals``, ``quarantine`` (moves) and ``updates``
  (the log of every change to an approval or a move: a revocation, a move's new state) are
  chains: each row stores the previous row's hash and its own, over a canonical JSON of its
  chained fields, and a seal, an HMAC of its hash with a key kept outside the ledger file;
- ``heads``: the sealed head of every chain (its row count and last hash), written in the
  same transaction as the rows, so removing the last rows (or all of them, or a table) shows;
- ``seal``: which key seals the ledger (its id, never the key), since when, and the rows that
  were only chained before (a ledger made before sealing is sealed from its state then);
- ``files``: path, size, mtime_ns, ctime_ns, inode -> fingerprint and verdict, so a rescan skips
  unchanged files. An index, never evidence: each row is sealed, and it is trusted only when
  the decision row it points to verifies and holds the same fingerprint and verdict.

The model is systemd-journald's sealing and Certificate Transparency's signed heads:
``checkpoint()`` gives the heads of every chain signed with the key, to keep elsewhere, and
``check_checkpoint()`` finds a row that existed then and is missing or changed now.
Every write is one ``BEGIN IMMEDIATE`` transaction retried on ``database is locked`` within a
deadline, so a daemon and CLI processes can share one ledger.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from provgate import data, safefs
from provgate.errors import ConfigError, LedgerError
from provgate.policy import Approval, Policy


def _import_sqlite_utils() -> Any:
    """sqlite-utils, imported where the schema is made or migrated (``Ledger._create``), as
    if numpy were absent: it imports numpy when installed (for column types provgate never
    writes), and either import is a noticeable share of a short run's start-up."""
    import sys

    if "numpy" in sys.modules:
        import sqlite_utils as module
        return module
    sys.modules["numpy"] = None  # type: ignore[assignment] # import numpy -> ImportError
    try:
        import sqlite_utils as module
    finally:
        del sys.modules["numpy"]
    return module


class Db:
    """The ledger's SQLite connection. Every read and write is provgate's own SQL (a chain
    needs exact control of what is hashed and stored); sqlite-utils makes and migrates the
    schema, imported only then (``Ledger._create``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts, as sqlite-utils' ``Database.query`` gives them (``params``: a
        sequence, or a dict for named parameters)."""
        cur = self.conn.execute(sql, params)
        keys = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(keys, row, strict=True))

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info([{table}])")}

    def close(self) -> None:
        self.conn.close()


log = logging.getLogger("provgate")
T = TypeVar("T")

GENESIS = "0" * 64
# the fields the hash covers, in the order they are stored
CHAINED = ("id", "time", "path", "root", "fingerprint", "size", "kind", "c2pa", "evidence",
           "error", "zone", "rule", "action", "reason", "mode", "approval_id", "approval_ref",
           "policy_digest", "trust_digest", "tools", "actor", "user", "prev_hash")
_JSON_FIELDS = ("evidence", "tools")
_GIVEN = tuple(k for k in CHAINED if k not in ("id", "prev_hash"))  # the ledger adds those
# files that left a watched tree: their own chain, verified with the decisions'
EVENT_CHAINED = ("id", "time", "event", "path", "dest", "fingerprint", "decision_id", "actor",
                 "user", "prev_hash")
# an approval as given, with the register entry it was made from, the guidance's category
# and its scope (a show, an episode, a delivery); its revocation is an ``updates`` row
APPROVAL_CHAINED = ("id", "ref", "approver", "fingerprint", "glob", "path", "expires", "note",
                    "created", "category", "show", "episode", "delivery", "entry", "sequence",
                    "frames", "prev_hash")
# a quarantine move as planned, with its owner (the process that planned it: pid, start time,
# host); its state, errors, late sidecars and a take-over (``taken_by``) are ``updates`` rows
MOVE_OWNER = ("owner_pid", "owner_start", "owner_host")
MOVE_CHAINED = ("id", "decision_id", "original_path", "quarantined_path", "receipt_path",
                "fingerprint", "size", "created", "user", *MOVE_OWNER, "prev_hash")
# one change to a row of a table with state: the new values of the columns it changed
UPDATE_CHAINED = ("id", "time", "tbl", "row_id", "fields", "user", "prev_hash")
# a delivery as checked: every file's decision, the verdict, and the decisions chain's head
DELIVERY_CHAINED = ("id", "time", "name", "roots", "verdict", "files", "held", "decisions",
                    "policy_digest", "register_digest", "decisions_head", "actor", "user",
                    "show", "episode", "register", "register_root", "units", "prev_hash")
# fields added to a chain after rows were written: hashed only when set, so a row written
# before them keeps its hash (an older ledger still verifies), and one set later shows
LATE_FIELDS = frozenset({"category", "show", "episode", "delivery", "entry", "sequence",
                         "frames", "register", "register_root", "units", *MOVE_OWNER})
# a decision about a file with no content to cache (unreadable) says nothing new when these
# are the same as the last one's
SAME_DECISION = ("fingerprint", "kind", "error", "zone", "rule", "action", "mode",
                 "policy_digest")
_FILE_COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "inode", "fingerprint", "catalogue",
                 "trust", "verdict", "decision_id", "decision_key", "seen")
_UPSERT_FILE = (f"INSERT OR REPLACE INTO files ({', '.join(_FILE_COLUMNS)}, seal) "
                f"VALUES ({', '.join('?' * (len(_FILE_COLUMNS) + 1))})")

KEY_ENV = "PROVGATE_SEAL_KEY"
KEY_SUFFIX = ".key"
SEAL_VERSION = 1
LOCK_DEADLINE = 60.0  # seconds a write keeps retrying "database is locked"
_BUSY_MS = 10_000     # SQLite's own wait inside each try


@dataclass(frozen=True)
class Chain:
    """A chained, sealed table: the fields its hash covers (ending with ``prev_hash``), the
    noun its rows are named by, and the columns whose changes go through ``updates``."""

    table: str
    fields: tuple[str, ...]
    noun: str
    mutable: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)  # every column, with its type


def _cols(fields: tuple[str, ...], ints: set[str], extra: dict[str, str] | None = None
          ) -> dict[str, str]:
    cols = {f: "INTEGER" if f in ints else "TEXT" for f in fields}
    cols.update(hash="TEXT", seal="TEXT")
    cols.update(extra or {})
    return cols


# Every chain, in the order ``verify`` walks them. A new one (deliveries) is one entry here:
# its table and head are added at the next open, and ``verify``/``checkpoint`` cover it.
CHAINS: dict[str, Chain] = {c.table: c for c in (
    Chain("decisions", CHAINED, "row",
          columns=_cols(CHAINED, {"id", "size", "approval_id"})),
    Chain("events", EVENT_CHAINED, "event", columns=_cols(EVENT_CHAINED, {"id", "decision_id"})),
    Chain("approvals", APPROVAL_CHAINED, "approval", ("revoked", "revoked_by"),
          _cols(APPROVAL_CHAINED, {"id"}, {"revoked": "TEXT", "revoked_by": "TEXT"})),
    Chain("quarantine", MOVE_CHAINED, "move", ("state", "updated", "error", "sidecars",
                                                "taken_by"),
          _cols(MOVE_CHAINED, {"id", "decision_id", "size", "owner_pid"},
                {"state": "TEXT", "updated": "TEXT", "error": "TEXT", "sidecars": "TEXT",
                 "taken_by": "TEXT"})),
    Chain("updates", UPDATE_CHAINED, "update", columns=_cols(UPDATE_CHAINED, {"id", "row_id"})),
    Chain("deliveries", DELIVERY_CHAINED, "delivery",
          columns=_cols(DELIVERY_CHAINED, {"id", "files", "held"})),
)}
_INDEXES = {"decisions": (("path",), ("fingerprint",)), "events": (("path",),),
            "updates": (("tbl", "row_id"),), "quarantine": (("state",),)}
_FILES_COLUMNS = {"path": "TEXT", "size": "INTEGER", "mtime_ns": "INTEGER",
                  "ctime_ns": "INTEGER", "inode": "INTEGER", "fingerprint": "TEXT",
                  "catalogue": "TEXT", "trust": "TEXT", "verdict": "TEXT",
                  "decision_id": "INTEGER", "decision_key": "TEXT", "seen": "TEXT",
                  "seal": "TEXT"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")




def row_hash(row: dict[str, Any], fields: tuple[str, ...] = CHAINED) -> str:
    """sha256 of the canonical JSON (``data.canonical_json``) of ``fields`` of ``row``; a
    late field (``LATE_FIELDS``) that is not set is left out."""
    return _hash_fields({k: row.get(k) for k in fields}, fields)


def _hash_fields(doc: dict[str, Any], fields: tuple[str, ...]) -> str:
    """``row_hash`` of a dict that holds exactly ``fields`` (it is not copied)."""
    late = [k for k in _late(fields) if doc[k] is None]
    if late:
        doc = {k: v for k, v in doc.items() if k not in late}
    return hashlib.sha256(data.canonical_json(doc).encode()).hexdigest()


@functools.lru_cache(maxsize=16)
def _late(fields: tuple[str, ...]) -> frozenset[str]:
    return LATE_FIELDS.intersection(fields)


def check_folder(path: Path) -> Path:
    """The folder of a ledger (or of a file kept beside it). Only the default folder (the
    user data folder) is ever created: a named folder that does not exist is a mistake (a
    typo would start a new, empty ledger), refused with exit 2."""
    folder = path.parent
    if not folder.is_dir() and folder != Path(platformdirs.user_data_dir("provgate")):
        raise ConfigError(f"the ledger's folder {folder} does not exist (or is not a folder): "
                          "create it, or give --ledger a path in an existing folder")
    return folder


def check_owner(path: Path, write: bool) -> None:
    """Refuse (LedgerError, exit 3) a ledger someone else holds: an existing ledger file owned
    by neither root, this user nor the policy's service user is never written (its owner could
    replace or rewrite it at will), and in a folder everyone may write (``/tmp``), where
    anyone could have made it (and its key, its ``-wal``) before provgate, it is not even
    read, nor is a ``-wal``, ``-shm`` or ``-journal`` someone else put beside it."""
    acc = safefs.Access.make()
    folders = {path.absolute().parent, Path(os.path.realpath(path)).parent}
    shared = [f for f in folders if _open_to_all(f)]
    for p in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if acc.owns(st) or not (shared or (write and p == path)):
            continue
        owner = safefs.user_name(st.st_uid)
        if shared:
            raise LedgerError(
                f"{p} belongs to {owner}, not to {acc.describe()}, and lies in {shared[0]}, "
                "which everyone may write: someone else made it there before provgate, to "
                "read or forge what it records; remove it (and look at what it holds), and "
                "keep the ledger in a folder of its own (e.g. /var/lib/provgate, or a private "
                "folder inside /tmp)")
        raise LedgerError(
            f"the ledger {p} belongs to {owner}, not to {acc.describe()}: provgate does not "
            "write a ledger another user holds (they could replace or rewrite it); if it is "
            f'the service\'s, name its user in the policy ([service] user = "{owner}"), '
            "else give a ledger of your own (--ledger)")


def _open_to_all(folder: Path) -> bool:
    try:
        return bool(os.stat(folder).st_mode & stat.S_IWOTH)
    except OSError:
        return False


# -- the seal key ----------------------------------------------------------------------------

def key_path_for(ledger: str | os.PathLike[str], given: str | os.PathLike[str] | None = None
                 ) -> Path:
    """Where the seal key of ``ledger`` is: ``given`` (a caller's, e.g. a policy's
    ``seal_key``), else ``PROVGATE_SEAL_KEY``, else beside the ledger as ``LEDGER.key``."""
    chosen = given or os.environ.get(KEY_ENV)
    if chosen:
        return Path(os.path.abspath(os.path.expanduser(os.fspath(chosen))))
    return Path(os.fspath(ledger) + KEY_SUFFIX)


class SealKey:
    """The HMAC-SHA256 key that seals a ledger. Never stored in the ledger: only its id."""

    def __init__(self, secret: bytes, path: Path | None = None, created: bool = False) -> None:
        self._secret = secret
        self.path = path
        self.created = created  # made by this process, just now
        self.id = hmac.new(secret, b"provgate seal key id", hashlib.sha256).hexdigest()[:16]

    def seal(self, *parts: str) -> str:
        """HMAC-SHA256 over the parts joined by US (0x1f), in hex."""
        return hmac.digest(self._secret, "\x1f".join(parts).encode("utf-8", "surrogatepass"),
                           "sha256").hex()

    def check(self, mac: str | None, *parts: str) -> bool:
        return bool(mac) and hmac.compare_digest(str(mac), self.seal(*parts))

    @classmethod
    def ephemeral(cls) -> SealKey:
        """For a ledger in memory (a dry run without a ledger file): nothing is kept."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def load(cls, path: Path, create: bool, roots: Iterable[str] = ()) -> SealKey | None:
        """The key at ``path``; created (0600, exclusively, never through a link) when it
        does not exist and ``create``; None when it does not exist and not ``create``."""
        for root in roots:
            top = os.path.realpath(root).rstrip(os.sep) + os.sep
            if os.path.realpath(path).startswith(top) or os.path.abspath(path).startswith(
                    os.path.abspath(root).rstrip(os.sep) + os.sep):
                raise ConfigError(f"the seal key {path} is inside the scanned root {root}: keep "
                                  f"it outside every scanned tree (set {KEY_ENV})")
        if create and not os.path.lexists(path):
            if not path.parent.is_dir():
                raise LedgerError(f"the seal key's folder {path.parent} does not exist: create "
                                  f"it, or point {KEY_ENV} elsewhere")
            secret = secrets.token_bytes(32)
            # with the service's group (producers who run approve): 0640 of that group
            gid = safefs.Access.make().gid
            mode = 0o600 if gid is None else 0o640
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode)
            except FileExistsError:
                pass  # another process made it just now: read theirs
            except OSError as exc:
                raise LedgerError(f"cannot create the seal key {path}: "
                                  f"{exc.strerror or exc}") from exc
            else:
                try:
                    if gid is not None:
                        os.fchown(fd, -1, gid)
                    os.fchmod(fd, mode)
                    os.write(fd, secret.hex().encode() + b"\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _fsync_folder(path.parent)
                log.info("created the seal key %s", path)
                return cls(secret, path, created=True)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> SealKey | None:
        deadline = time.monotonic() + 2.0
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            except OSError as exc:
                why = ("it is a symbolic link" if exc.errno == errno.ELOOP  # O_NOFOLLOW
                       else exc.strerror or str(exc))
                raise LedgerError(f"cannot read the seal key {path}: {why}") from exc
            try:
                st = os.fstat(fd)
                text = os.read(fd, 256)
            finally:
                os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LedgerError(f"the seal key {path} is not a regular file")
            if st.st_uid not in _trusted_owners(path):
                raise LedgerError(
                    f"the seal key {path} belongs to uid {st.st_uid}, neither root, you, nor "
                    "the ledger's owner: someone else made it and could forge the ledger with "
                    "it; remove it (and check the ledger)")
            if st.st_mode & 0o026:
                raise LedgerError(
                    f"the seal key {path} is open to others (mode {stat.filemode(st.st_mode)}): "
                    f"whoever can write or read it can forge the ledger; chmod 600 it (640 for "
                    f"a group that runs approve)")
            try:
                secret = bytes.fromhex(text.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                secret = b""
            if len(secret) >= 32:
                return cls(secret, path)
            if time.monotonic() > deadline:  # not one being written this instant
                raise LedgerError(f"the seal key {path} is not a provgate key (64 hex digits)")
            time.sleep(0.02)


def _trusted_owners(key: Path) -> set[int]:
    """Who may own a seal key: root, this user, and the owner of the ledger beside it (the
    service, when a producer's CLI shares its ledger)."""
    owners = {0, os.geteuid()}
    ledger = key.with_suffix("") if key.suffix == KEY_SUFFIX else None
    if ledger is not None:
        with contextlib.suppress(OSError):
            owners.add(os.stat(ledger).st_uid)
    return owners


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        safefs.fsync_dir(fd)
    finally:
        os.close(fd)


# -- verification results --------------------------------------------------------------------

@dataclass
class Verification:
    """What ``Ledger.check`` found: the rows of every chain, and the first problem."""

    counts: dict[str, int] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    bad: int | None = None          # the first broken row's id (0 when none is named)
    sealed: bool = False
    key_id: str | None = None
    since: str | None = None        # when sealing began
    chained_only: dict[str, int] = field(default_factory=dict)
    cache_unverified: int = 0

    def fail(self, message: str, bad: int | None = 0) -> Verification:
        if self.problem is None:
            self.problem, self.bad = message, bad if bad is not None else 0
        return self


class Ledger:
    """One ledger file; safe to share between a daemon and CLI processes (WAL, busy timeout,
    every write retried on "database is locked" within ``lock_deadline`` seconds)."""

    def __init__(self, path: str | Path, readonly: bool = False, scratch: bool = False,
                 seal_key: str | os.PathLike[str] | None = None,
                 roots: Iterable[str] = ()) -> None:
        """Open (or create) the ledger at ``path``. Only the default folder (the user data
        folder) is ever created: a ledger named in a folder that does not exist is a mistake
        (a typo would start a new, empty ledger), refused with exit 2. ``scratch`` is for a
        dry run: an existing ledger is opened read-only, a missing one is an empty ledger in
        memory, so nothing is written and no file or folder is created.

        ``seal_key`` is where its key is (default: ``PROVGATE_SEAL_KEY``, else ``PATH.key``),
        created at the first writable open; ``roots`` are the scanned trees it must not be in.
        A ledger written before sealing is sealed from its current state at that open."""
        import urllib.parse

        self.path = Path(path)
        self.lock_deadline = LOCK_DEADLINE
        folder = check_folder(self.path)
        memory = scratch and not self.path.exists()
        readonly = readonly or (scratch and not memory)
        self.readonly = readonly
        self.key_path = None if memory else key_path_for(self.path, seal_key)
        self.key: SealKey | None = None
        self._meta_ok = False
        self._warned: set[tuple[str, int]] = set()
        # the decisions there were when it was opened: rows after them were written while
        # this run lasted (``append_new``)
        self.opened_at = 0
        if not memory:
            check_owner(self.path, write=not readonly)
        if not readonly and not memory and self.path.exists() and not os.access(self.path,
                                                                                os.W_OK):
            raise LedgerError(f"cannot write the ledger {self.path}: attempt to write a "
                              "readonly database (the file is read-only for this user)")
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
                # created 0600 with no link followed (safefs), the default folder 0700 only
                safefs.create_private_file(folder / self.path.name, parents=True)
                conn = sqlite3.connect(str(self.path), timeout=_BUSY_MS / 1000)
            self.db = Db(conn)
            self.db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            if not readonly:
                _retry_locked(lambda: self.db.execute("PRAGMA journal_mode = WAL"))
                self.db.execute("PRAGMA synchronous = NORMAL")
                self.key = (SealKey.ephemeral() if memory else
                            SealKey.load(self.key_path, create=True, roots=roots))
                self._ensure()
                self.opened_at = self.db.conn.execute(
                    "SELECT coalesce(max(id), 0) FROM decisions").fetchone()[0]
            else:
                _retry_locked(lambda: self.db.execute(
                    "SELECT count(*) FROM sqlite_master").fetchone())
                assert self.key_path is not None
                self.key = SealKey.load(self.key_path, create=False, roots=roots)
                self._meta_ok = self._meta_valid()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc} "
                              "(is it a provgate ledger, writable, on a local disk?)") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every SELECT inside sees the same state, so a head and the
        rows it covers are read together while another process appends."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        _retry_locked(lambda: conn.execute("BEGIN"))
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _warn(self, what: str, ident: int, message: str) -> None:
        if (what, ident) not in self._warned:
            self._warned.add((what, ident))
            log.warning("%s", message)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction. "database is locked" (another
        process writing, or SQLite refusing without waiting) is retried, the whole
        transaction again, until ``lock_deadline``; then, or on any other error, LedgerError."""
        deadline = time.monotonic() + self.lock_deadline
        delay = 0.01
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    result = work()
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.conn.in_transaction:
                        self.db.conn.rollback()
                    raise
                return result
            except sqlite3.OperationalError as exc:
                if _locked(exc) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise LedgerError(f"cannot write the ledger {self.path}: {exc}"
                                  + (f" (still locked after {self.lock_deadline:.0f} s)"
                                     if _locked(exc) else "")) from exc
            except sqlite3.DatabaseError as exc:
                raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc

    def _chain_append(self, name: str, rows: list[dict[str, Any]],
                      extra: tuple[str, ...] = ()) -> list[int]:
        """Append ``rows`` to chain ``name`` (inside a write transaction): ids, previous hash,
        hash and seal, then the chain's sealed head. Refused when the table's last row is not
        the sealed head (rows removed or forged): nothing is appended to a damaged chain, or
        the next row would hide the damage. ``extra`` columns are stored, not hashed."""
        if not rows:
            return []
        chain = CHAINS[name]
        key = self._need_key()
        count, prev = self._head_for_append(name)
        cols = (*chain.fields, "hash", "seal", *extra)
        values, ids = [], []
        for row in rows:
            count += 1
            r = {k: row.get(k) for k in chain.fields}
            r["id"], r["prev_hash"] = count, prev
            prev = _hash_fields(r, chain.fields)
            values.append((*r.values(), prev, key.seal(name, str(count), prev),
                           *(row.get(k) for k in extra)))
            ids.append(count)
        # plain executemany on sqlite-utils' connection: its insert_all/upsert_all cost
        # ~0.1 ms a row in Python, a tenth of a small file's whole ExifTool read
        self.db.conn.executemany(
            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            values)
        self.db.conn.execute("UPDATE heads SET count = ?, head = ?, seal = ? WHERE chain = ?",
                             [count, prev, key.seal("head", name, str(count), prev), name])
        return ids

    def _head_for_append(self, name: str) -> tuple[int, str]:
        key = self._need_key()
        head = self.db.conn.execute("SELECT count, head, seal FROM heads WHERE chain = ?",
                                    [name]).fetchone()
        noun = CHAINS[name].noun
        if head is None or not key.check(head[2], "head", name, str(head[0]), head[1]):
            raise LedgerError(f"the ledger {self.path} is damaged: the {name} chain has no "
                              "valid sealed head; nothing more is written to it (run "
                              "`provgate ledger verify`)")
        last = self.db.conn.execute(f"SELECT id, hash FROM {name} ORDER BY id DESC LIMIT 1"
                                    ).fetchone() or (0, GENESIS)
        if tuple(last) != (head[0], head[1]):
            raise LedgerError(
                f"the ledger {self.path} is damaged: its {name} chain ends at {noun} {last[0]}, "
                f"its sealed head says {noun} {head[0]}; nothing more is written to it (run "
                "`provgate ledger verify`)")
        return int(head[0]), str(head[1])

    def _need_key(self) -> SealKey:
        if self.key is None:
            raise LedgerError(f"no seal key at {self.key_path}: the ledger cannot be written")
        return self.key

    def _log_updates(self, table: str, changes: list[tuple[int, dict[str, Any]]]) -> None:
        """Chain the new values of a row's state columns (inside a write transaction)."""
        t, user = now_iso(), _user()
        self._chain_append("updates", [
            {"time": t, "tbl": table, "row_id": ident, "fields": data.canonical_json(fields),
             "user": user} for ident, fields in changes])

    def _seal_file(self, values: tuple[Any, ...]) -> str:
        # repr of a tuple of str/int/None is unambiguous, and cheaper than JSON per file
        return self._need_key().seal("files", repr(values))

    # -- creating, migrating ---------------------------------------------------------------

    def _ensure(self) -> None:
        """Tables, columns, triggers, heads and the seal record, made or completed in one
        write transaction when anything is missing (a new ledger, an older one, a new chain);
        otherwise only the key is checked against the ledger's."""
        if self._complete():
            self._meta_ok = self._check_meta()
            return
        self._write(self._create)
        self._meta_ok = self._check_meta()

    def _complete(self) -> bool:
        tables = set(self.db.table_names())
        needed = {*CHAINS, "files", "heads", "seal"}
        if not needed <= tables:
            return False
        for chain in CHAINS.values():
            if not set(chain.columns) <= set(self.db.columns(chain.table)):
                return False
        if not set(_FILES_COLUMNS) <= set(self.db.columns("files")):
            return False
        meta = self._meta()
        return meta is not None and set(json.loads(meta["chains"] or "[]")) == set(CHAINS)

    def _create(self) -> None:
        db = self.db.conn
        schema = _import_sqlite_utils().Database(db)
        tables = set(self.db.table_names())
        data_tables = {*CHAINS, "files"} - {"updates"}
        fresh = not (tables & data_tables)
        traces = bool(tables & {"heads", "seal", "updates"}) or (
            "decisions" in tables and "seal" in self.db.columns("decisions"))
        for chain in CHAINS.values():
            table = schema[chain.table]
            if chain.table not in tables:
                table.create(chain.columns, pk="id")
            else:
                added = [c for c in chain.columns if c not in self.db.columns(chain.table)]
                for c in added:
                    table.add_column(c, chain.columns[c])
                if added:  # its update guard names the chained columns: made again below
                    db.execute(f"DROP TRIGGER IF EXISTS [{chain.table}_no_update]")
            for cols in _INDEXES.get(chain.table, ()):
                table.create_index(cols, index_name=f"idx_{chain.table}_{'_'.join(cols)}",
                                   if_not_exists=True)
        if "files" not in tables:
            schema["files"].create(_FILES_COLUMNS, pk="path")
        else:  # the cache is an index, never evidence: older rows simply miss
            have = self.db.columns("files")
            for c, t in _FILES_COLUMNS.items():
                if c not in have:
                    schema["files"].add_column(c, t)
        schema["heads"].create({"chain": "TEXT", "count": "INTEGER", "head": "TEXT",
                                "seal": "TEXT"}, pk="chain", if_not_exists=True)
        schema["seal"].create({"id": "INTEGER", "version": "INTEGER", "key_id": "TEXT",
                               "since": "TEXT", "chains": "TEXT", "chained_only": "TEXT",
                               "seal": "TEXT"}, pk="id", if_not_exists=True)
        meta = self._meta()
        if meta is None:
            if traces and not fresh:
                raise LedgerError(
                    f"the ledger {self.path} was sealed, but its seal record is gone: it was "
                    "tampered with; nothing is written to it (run `provgate ledger verify`, "
                    "compare with a checkpoint)")
            self._seal_current_state(legacy=not fresh)
        else:
            self._check_meta(raise_on_error=True)
            chains = json.loads(meta["chains"] or "[]")
            added = [c for c in CHAINS if c not in chains]
            for name in added:  # a chain new in this version: it starts empty, sealed now
                if db.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0]:
                    raise LedgerError(f"the ledger {self.path} has {name} rows no seal covers")
                self._put_head(name, 0, GENESIS)
            if added:
                self._put_meta(meta["since"], [*chains, *added],
                               json.loads(meta["chained_only"] or "{}"))
        for chain in CHAINS.values():
            _guard(self.db, chain)
        db.execute("CREATE TRIGGER IF NOT EXISTS heads_no_delete BEFORE DELETE ON heads "
                   "BEGIN SELECT RAISE(ABORT, 'the heads of the ledger are kept'); END")

    def _seal_current_state(self, legacy: bool) -> None:
        """Seal every chain as it is now: a new ledger's empty chains, or an older ledger's
        rows (decisions and events verified first, approvals and moves chained now, their
        state written as updates). Rows before this moment were only chained, never sealed."""
        db, key = self.db.conn, self._need_key()
        chained_only: dict[str, int] = {}
        for name in ("decisions", "events"):
            rows = list(self.db.query(f"SELECT * FROM [{name}] ORDER BY id"))
            problem = _walk(rows, CHAINS[name], None)
            if problem:
                raise LedgerError(f"the ledger {self.path} is broken ({problem[1]}): it is not "
                                  "sealed in that state; move it aside and start a new one")
            if rows:
                for op in ("update", "delete"):
                    db.execute(f"DROP TRIGGER IF EXISTS {name}_no_{op}")
                db.executemany(f"UPDATE [{name}] SET seal = ? WHERE id = ?",
                               [(key.seal(name, str(r["id"]), r["hash"]), r["id"]) for r in rows])
            self._put_head(name, len(rows), rows[-1]["hash"] if rows else GENESIS)
            chained_only[name] = len(rows)
        self._put_head("updates", 0, GENESIS)
        for name in ("approvals", "quarantine"):
            chain = CHAINS[name]
            rows = list(self.db.query(f"SELECT * FROM [{name}] ORDER BY id"))
            gap = next((i for i, r in enumerate(rows, 1) if r["id"] != i), None)
            if gap is not None:  # provgate never deleted one: someone did
                raise LedgerError(f"the ledger {self.path} is broken ({chain.noun} {gap} is "
                                  "missing): it is not sealed in that state; move it aside "
                                  "and start a new one")
            prev, out = GENESIS, []
            for r in rows:
                r["prev_hash"] = prev
                prev = row_hash(r, chain.fields)
                out.append((r["prev_hash"], prev, key.seal(name, str(r["id"]), prev), r["id"]))
            for op in ("update", "delete"):
                db.execute(f"DROP TRIGGER IF EXISTS {name}_no_{op}")
            db.executemany(f"UPDATE [{name}] SET prev_hash = ?, hash = ?, seal = ? WHERE id = ?",
                           out)
            self._put_head(name, len(rows), prev)
            chained_only[name] = len(rows)
            state = [(r["id"], {c: r[c] for c in chain.mutable}) for r in rows
                     if any(r[c] is not None for c in chain.mutable)]
            self._log_updates(name, state)
        for name in set(CHAINS) - {"decisions", "events", "updates", "approvals", "quarantine"}:
            # chains newer than sealing (deliveries): they start empty, sealed now
            if db.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0]:
                raise LedgerError(f"the ledger {self.path} has {name} rows no seal covers")
            self._put_head(name, 0, GENESIS)
        self._put_meta(now_iso(), list(CHAINS), chained_only if legacy else {})
        if legacy:
            # the cache is an index, never evidence: rows no seal vouches for are read again
            db.execute("DELETE FROM files")
            log.warning("sealed the ledger %s from its current state with the key %s (rows "
                        "before now were only chained)", self.path, self.key_path)

    def _put_head(self, name: str, count: int, head: str) -> None:
        key = self._need_key()
        self.db.conn.execute(
            "INSERT INTO heads (chain, count, head, seal) VALUES (?, ?, ?, ?) ON CONFLICT(chain) "
            "DO UPDATE SET count = excluded.count, head = excluded.head, seal = excluded.seal",
            [name, count, head, key.seal("head", name, str(count), head)])

    def _put_meta(self, since: str, chains: list[str], chained_only: dict[str, int]) -> None:
        key = self._need_key()
        ch, co = data.canonical_json(chains), data.canonical_json(chained_only)
        self.db.conn.execute(
            "INSERT OR REPLACE INTO seal (id, version, key_id, since, chains, chained_only, "
            "seal) VALUES (1, ?, ?, ?, ?, ?, ?)",
            [SEAL_VERSION, key.id, since, ch, co,
             key.seal("meta", str(SEAL_VERSION), key.id, since, ch, co)])

    def _meta(self) -> dict[str, Any] | None:
        if "seal" not in self.db.table_names():
            return None
        rows = list(self.db.query("SELECT * FROM seal WHERE id = 1"))
        return rows[0] if rows else None

    def seal_problem(self) -> str | None:
        """Why no row of this ledger can be verified (no seal key, another key, no seal
        record), or None."""
        return None if self._meta_ok else (self._meta_problem() or
                                           "its seal record does not verify")

    def _meta_problem(self) -> str | None:
        meta = self._meta()
        if meta is None:
            return "the ledger has no seal record"
        if self.key is None:
            return (f"no seal key at {self.key_path}: the seals cannot be checked (set "
                    f"{KEY_ENV}, or keep the key beside the ledger)")
        if meta["key_id"] != self.key.id:
            return (f"the ledger is sealed with another key (id {meta['key_id']}) than "
                    f"{self.key_path} (id {self.key.id})")
        if not self.key.check(meta["seal"], "meta", str(meta["version"]), meta["key_id"],
                              meta["since"] or "", meta["chains"] or "",
                              meta["chained_only"] or ""):
            return "the ledger's seal record was changed"
        return None

    def _check_meta(self, raise_on_error: bool = False) -> bool:
        problem = self._meta_problem()
        if problem and (raise_on_error or not self.readonly):
            raise LedgerError(f"{problem}: nothing is written to {self.path} "
                              "(run `provgate ledger verify`)")
        return problem is None

    def _meta_valid(self) -> bool:
        try:
            return self._meta_problem() is None
        except sqlite3.DatabaseError:
            return False

    # -- decisions -------------------------------------------------------------------------

    def append(self, rows: list[dict[str, Any]],
               files: Iterable[dict[str, Any]] = (),
               moves: Iterable[dict[str, Any]] = ()) -> list[int]:
        """Append decisions, update the file cache and open pending moves in one transaction.

        ``moves`` items carry ``row_index`` (the decision they belong to); each is chained
        with this process as its owner (``process_owner``). Returns the ids.
        """
        return self.append_new(rows, files, moves, since=None)[0]

    def append_new(self, rows: list[dict[str, Any]],
                   files: Iterable[dict[str, Any]] = (),
                   moves: Iterable[dict[str, Any]] = (), *, since: int | None
                   ) -> tuple[list[int], set[int]]:
        """``append``, except for what another process recorded meanwhile: a row whose path's
        latest decision came after decision ``since`` (this run's ``opened_at``) about the same
        content, with the same decision and judging context, is not written again (nor its
        file-cache row, nor its move: that process carries it out). Checked inside the write
        transaction, so a daemon and a CLI deciding one path at once record it once. Returns
        the ids (that process's for those rows) and the indexes of the rows left out."""
        prepared = []
        # by object, each alive in ``rows`` throughout: a run's records share one ``tools``
        encoded: dict[int, str] = {}
        for row in rows:
            r = {k: row.get(k) for k in _GIVEN}
            for k in _JSON_FIELDS:
                value = r[k]
                if value is None:
                    r[k] = "[]"
                    continue
                text = encoded.get(id(value))
                if text is None:
                    text = encoded[id(value)] = data.canonical_json(value)
                r[k] = text
            prepared.append(r)
        files, moves = list(files), list(moves)
        known = set(MOVE_CHAINED) | set(CHAINS["quarantine"].mutable)
        for m in moves:
            unknown = {k for k in m if k not in known and not k.startswith(("row_index", "_"))}
            if unknown:
                raise LedgerError(f"a quarantine move has fields the ledger does not keep: "
                                  f"{', '.join(sorted(unknown))} (add them to ledger.py)")

        def work() -> tuple[list[int], set[int]]:
            theirs = {} if since is None else self._recorded_since(prepared, files, since)
            fresh = [i for i in range(len(prepared)) if i not in theirs]
            by_index = dict(theirs)
            by_index.update(zip(fresh, self._chain_append("decisions",
                                                          [prepared[i] for i in fresh]),
                                strict=True))
            ids = [by_index[i] for i in range(len(prepared))]
            file_rows = []
            for f in files:
                if f.get("row_index") in theirs:
                    continue
                values = tuple(ids[f["row_index"]] if k == "decision_id" and
                               f.get("row_index") is not None else f.get(k)
                               for k in _FILE_COLUMNS)
                file_rows.append((*values, self._seal_file(values)))
            if file_rows:
                self.db.conn.executemany(_UPSERT_FILE, file_rows)
            owner = process_owner()
            planned = [{**m, **owner, "decision_id": ids[m["row_index"]]} for m in moves
                       if m["row_index"] not in theirs]
            if planned:
                mutable = CHAINS["quarantine"].mutable
                qids = self._chain_append("quarantine", planned, extra=mutable)
                self._log_updates("quarantine", [(q, {c: m.get(c) for c in mutable})
                                                 for q, m in zip(qids, planned, strict=True)])
            return ids, set(theirs)

        return self._write(work)

    def _recorded_since(self, rows: list[dict[str, Any]], files: list[dict[str, Any]],
                        since: int) -> dict[int, int]:
        """Row index -> the id of a decision recorded after ``since`` that says the same about
        the same file: the latest about its path, verified, and either its file-cache row (its
        own seal, same fingerprint, decision key and judging context: catalogue, judging code,
        sidecars) matches this row's, or, for a file with no content to cache, its fields do."""
        latest: dict[str, int] = {}
        paths = sorted({r["path"] for r in rows})
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            for path, ident in self.db.conn.execute(
                    f"SELECT path, max(id) FROM decisions WHERE path IN "
                    f"({','.join('?' * len(chunk))}) GROUP BY path", chunk):
                if ident > since:
                    latest[path] = ident
        if not latest:
            return {}
        found, cached = list(latest), []
        for i in range(0, len(found), 500):
            chunk = found[i:i + 500]
            cached += self.db.query(
                f"SELECT * FROM files WHERE path IN ({','.join('?' * len(chunk))})", chunk)
        cache = self._trusted_cache(cached)
        mine = {f["row_index"]: f for f in files if f.get("row_index") is not None}
        out = {}
        for i, r in enumerate(rows):
            ident = latest.get(r["path"])
            if ident is None:
                continue
            if i in mine:
                theirs = cache.get(r["path"])
                if theirs and theirs["decision_id"] == ident and all(
                        theirs[k] == mine[i].get(k)
                        for k in ("fingerprint", "decision_key", "catalogue")):
                    out[i] = ident
                continue
            row = next(iter(self.db.query("SELECT * FROM decisions WHERE id = ?", [ident])),
                       None)
            if row and self._row_ok(CHAINS["decisions"], row) and all(
                    row[k] == r.get(k) for k in SAME_DECISION):
                out[i] = ident
        return out

    def decisions(self, action: str | None = None, kind: str | None = None,
                  since: str | None = None, path: str | None = None,
                  limit: int | None = None, zone: str | None = None,
                  latest: bool = False, mark: bool = False) -> Iterator[dict[str, Any]]:
        """Decisions in id order, filtered; ``latest`` keeps each path's newest one only (the
        state a report describes; the older rows stay in the chain). ``mark``: each row says
        whether it verifies (``verified``; None when the ledger cannot be verified at all),
        for a listing that shows every row."""
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
        # superseded_by: the next decision about the same path with other content (a file
        # decided while it was still being written, then again once complete). Read, never
        # stored: the rows stay as they were chained.
        sql = ("SELECT *, (SELECT min(n.id) FROM decisions n WHERE n.path = d.path AND "
               "n.id > d.id AND n.fingerprint IS NOT d.fingerprint) AS superseded_by "
               "FROM decisions d" + cond)
        if latest:
            sql = ("SELECT *, NULL AS superseded_by FROM decisions WHERE id IN "
                   f"(SELECT max(id) FROM decisions{cond} GROUP BY path)")
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        for row in self.db.query(sql, params):
            yield self._marked("decisions", row) if mark else _decode(row)

    def _marked(self, name: str, row: dict[str, Any]) -> dict[str, Any]:
        ok = self._row_ok(CHAINS[name], row) if self._meta_ok else None
        return {**_decode(row), "verified": ok}

    def last_decision(self, path: str) -> dict[str, Any] | None:
        """The newest decision about ``path`` (exactly that path), if it verifies."""
        rows = list(self.db.query("SELECT * FROM decisions WHERE path = ? ORDER BY id DESC "
                                  "LIMIT 1", [path]))
        if not rows or not self._meta_ok or not self._row_ok(CHAINS["decisions"], rows[0]):
            return None
        return _decode(rows[0])

    def decision(self, ident: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM decisions WHERE id = ?", [ident]))
        return _decode(rows[0]) if rows else None

    # -- verifying -------------------------------------------------------------------------

    def verify(self) -> tuple[int, int | None, str]:
        """(decisions checked, first broken id or None, message): every chain's links,
        hashes and seals, its row count against its sealed head, the state of approvals and
        moves against their update log."""
        v = self.check()
        if v.problem is not None:
            return v.counts.get("decisions", 0), v.bad, v.problem
        return v.counts.get("decisions", 0), None, _summary(v)

    def check(self) -> Verification:
        """The whole verification, as data (``verify`` and ``checkpoint`` use it)."""
        with self._snapshot():
            try:
                return self._check()
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # a value edited by hand that is not what provgate wrote (JSON that is not
                # an object, a wrong type): the ledger is broken, not the verifier
                return Verification(problem=f"a row holds a value provgate never wrote "
                                            f"({type(exc).__name__}: {exc}): edited by hand",
                                    bad=0)

    def _check(self) -> Verification:
        v = Verification()
        tables = set(self.db.table_names())
        meta = self._meta() if "seal" in tables else None
        key = self.key
        heads = {r["chain"]: r for r in self.db.query("SELECT * FROM heads")} \
            if "heads" in tables else {}
        if meta is None:
            legacy = not (tables & {"heads", "updates"}) and not (
                "decisions" in tables and "seal" in self.db.columns("decisions"))
            meta_problem: str | None = (
                "the ledger is not sealed yet (written before sealing): it is sealed from its "
                "current state at the next write with its key" if legacy else
                "the ledger was sealed, but its seal record is gone")
            sealed_chains = list(heads)
        else:
            v.key_id, v.since = meta["key_id"], meta["since"]
            v.chained_only = json.loads(meta["chained_only"] or "{}")
            meta_problem = self._meta_problem()
            sealed_chains = json.loads(meta["chains"] or "[]")
        seals = key if meta_problem is None else None
        v.sealed = seals is not None
        for name, chain in CHAINS.items():
            if name not in tables:
                if name in sealed_chains or name in ("decisions", "events"):
                    v.fail(f"the {name} table is missing (it was dropped)")
                continue
            if name not in sealed_chains and "hash" not in self.db.columns(name):
                continue  # an older ledger's approvals and moves: not chained yet
            problem = _walk(self.db.query(f"SELECT * FROM [{name}] ORDER BY id"), chain,
                            seals, v)
            if problem:
                v.fail(problem[1], problem[0])
                continue
            if name not in sealed_chains:
                continue
            count, last = v.counts.get(name, 0), v.heads.get(name, GENESIS)
            head = heads.get(name)
            if head is None:
                v.fail(f"the sealed head of the {name} chain is missing")
            elif seals is not None and not seals.check(head["seal"], "head", name,
                                                       str(head["count"]), head["head"]):
                v.fail(f"the sealed head of the {name} chain was changed")
            elif head["count"] > count:
                v.fail(f"{chain.noun} {count + 1} to {chain.noun} {head['count']} are missing: "
                       f"the {name} chain ends at {chain.noun} {count}, its sealed head says "
                       f"{head['count']} (the last rows were removed)", count + 1)
            elif (head["count"], head["head"]) != (count, last):
                v.fail(f"the {name} chain does not end at its sealed head ({chain.noun} "
                       f"{head['count']}; {count} rows now): rows were added or replaced "
                       "without the key", head["count"] + 1)
        if "updates" in tables and {"approvals", "quarantine"} <= tables:
            problem = self._check_state()
            if problem:
                v.fail(*problem)
        if meta_problem:
            v.fail(meta_problem)
        if "files" in tables and seals is not None and "seal" in self.db.columns("files"):
            rows = list(self.db.query("SELECT * FROM files"))
            v.cache_unverified = len(rows) - len(self._trusted_cache(rows))
        return v

    def _check_state(self) -> tuple[str, int] | None:
        """Every approval's and move's state columns against the update log."""
        logs: dict[tuple[str, int], dict[str, Any]] = {}
        for u in self.db.query("SELECT * FROM updates ORDER BY id"):
            if u["tbl"] not in ("approvals", "quarantine"):
                return f"update {u['id']} names no table with state ({u['tbl']!r})", u["id"]
            logs.setdefault((u["tbl"], u["row_id"]), {}).update(json.loads(u["fields"] or "{}"))
        for name in ("approvals", "quarantine"):
            chain = CHAINS[name]
            ids = set()
            for r in self.db.query(f"SELECT * FROM [{name}] ORDER BY id"):
                ids.add(r["id"])
                state = logs.get((name, r["id"]), {})
                changed = [c for c in chain.mutable if r.get(c) != state.get(c)]
                if changed:
                    return (f"{chain.noun} {r['id']} does not match its update log: "
                            f"{', '.join(changed)} changed by hand", r["id"])
            stray = sorted(i for t, i in logs if t == name and i not in ids)
            if stray:
                return f"the update log names {chain.noun} {stray[0]}, which is missing", stray[0]
        return None

    def heads(self) -> dict[str, dict[str, Any]]:
        """The sealed head of every chain, {chain: {"count", "head"}}, as it is now: what a
        receipt, report or pre-delivery JSON can carry to say when it was made."""
        out = {}
        for r in self.db.query("SELECT * FROM heads ORDER BY chain"):
            if r["chain"] in CHAINS and self.key and self.key.check(
                    r["seal"], "head", r["chain"], str(r["count"]), r["head"]):
                out[r["chain"]] = {"count": r["count"], "head": r["head"]}
        return out

    def checkpoint(self) -> dict[str, Any]:
        """The heads and counts of every chain, signed with the seal key: keep it elsewhere
        (a ticket, another host, a WORM bucket), and ``check_checkpoint`` it later. Refused
        (LedgerError) for a ledger that does not verify now."""
        v = self.check()
        if v.problem is not None:
            raise LedgerError(f"the ledger does not verify, no checkpoint made: {v.problem}")
        key = self._need_key()
        doc: dict[str, Any] = {
            "provgate_checkpoint": 1, "ledger": str(self.path.resolve()), "time": now_iso(),
            "key_id": key.id,
            "chains": {n: {"count": v.counts.get(n, 0), "head": v.heads.get(n, GENESIS)}
                       for n in CHAINS}}
        doc["signature"] = key.seal("checkpoint", data.canonical_json(doc))
        return doc

    def check_checkpoint(self, doc: dict[str, Any]) -> str | None:
        """None when every row the checkpoint covers is still here, unchanged; else why not.
        (The chains themselves are checked by ``verify``: a row the checkpoint's head still
        links to cannot be changed without breaking its chain.)"""
        if not isinstance(doc, dict) or doc.get("provgate_checkpoint") != 1 or \
                not isinstance(doc.get("chains"), dict):
            return "not a provgate checkpoint"
        key = self.key
        if key is None:
            return f"no seal key at {self.key_path}: the checkpoint cannot be checked"
        body = {k: v for k, v in doc.items() if k != "signature"}
        if doc.get("key_id") != key.id:
            return (f"the checkpoint was signed with another key (id {doc.get('key_id')}) than "
                    f"the ledger's {self.key_path} (id {key.id}): the key was replaced")
        if not key.check(doc.get("signature"), "checkpoint", data.canonical_json(body)):
            return "the checkpoint's signature does not verify: it was edited, or is not this key's"
        return self.check_heads(doc["chains"], f"the checkpoint of {doc.get('time')}")

    def check_heads(self, chains: dict[str, Any], what: str = "the checkpoint") -> str | None:
        """None when, for every chain in ``chains`` ({chain: {"count", "head"}}: a
        checkpoint's, or where a receipt says the ledger was), its row ``count`` is still
        here with the hash ``head``; else why not (truncated, rolled back, rewritten since).
        The rows up to it are checked by ``verify``: a row the head links to cannot change
        without breaking the chain. Heads that are not signed (a receipt's) are only a claim
        of where the ledger was, checked against it."""
        if not isinstance(chains, dict):
            return f"{what} holds no chain heads"
        tables = set(self.db.table_names())
        for name, head in sorted(chains.items()):
            if name not in CHAINS or not isinstance(head, dict):
                return f"{what} names {name!r}, which is no chain of the ledger"
            count, want = int(head.get("count") or 0), head.get("head")
            noun = CHAINS[name].noun
            if count == 0:
                continue
            if name not in tables:
                return f"the {name} table is gone; {what} holds {count} of its rows"
            row = self.db.conn.execute(f"SELECT hash FROM [{name}] WHERE id = ?",
                                       [count]).fetchone()
            if row is None:
                have = self.db.conn.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0]
                return (f"{noun} {count} of {name}, the last at {what}, is missing ({have} "
                        "rows now): the ledger was truncated or rolled back")
            if row[0] != want:
                return (f"{noun} {count} of {name} is not the one at {what}: the chain up to "
                        "it was rewritten")
        return None

    # -- verified reads --------------------------------------------------------------------

    def _verified(self, name: str, where: str = "", params: Iterable[Any] = ()
                  ) -> list[dict[str, Any]]:
        """Rows of chain ``name`` that verify: hash, seal, and for a table with state, its
        state columns equal to its update log, whose sealed head must match the table. A row
        that does not verify is left out (and logged): never trusted, never acted on."""
        if not self._meta_ok or self.key is None:
            self._warn(name, 0, f"the ledger {self.path} cannot be verified "
                       f"({self._meta_problem() or 'unknown'}): its {name} are not trusted")
            return []
        with self._snapshot():
            return self._verified_rows(CHAINS[name], where, list(params))

    def _verified_rows(self, chain: Chain, where: str, params: list[Any]
                       ) -> list[dict[str, Any]]:
        name = chain.table
        rows = list(self.db.query(f"SELECT * FROM [{name}]{where} ORDER BY id", params))
        if not rows:
            return rows
        logs: dict[int, dict[str, Any]] = {}
        forged: set[int] = set()
        if chain.mutable:
            if not self._tail_ok("updates"):
                self._warn("updates", 0, "the ledger's update log does not end at its sealed "
                           f"head: no {name} row is trusted (run `provgate ledger verify`)")
                return []
            ids = [r["id"] for r in rows]
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for u in self.db.query(
                        f"SELECT * FROM updates WHERE tbl = ? AND row_id IN "
                        f"({','.join('?' * len(chunk))}) ORDER BY id", [name, *chunk]):
                    if self._row_ok(CHAINS["updates"], u):
                        logs.setdefault(u["row_id"], {}).update(json.loads(u["fields"] or "{}"))
                    else:
                        forged.add(u["row_id"])
        out = []
        for r in rows:
            state = logs.get(r["id"], {})
            if r["id"] not in forged and self._row_ok(chain, r) and all(
                    r.get(c) == state.get(c) for c in chain.mutable):
                out.append(r)
            else:
                self._warn(name, r["id"], f"{chain.noun} {r['id']} of the ledger {self.path} "
                           "does not verify: ignored (run `provgate ledger verify`)")
        return out

    def _row_ok(self, chain: Chain, r: dict[str, Any]) -> bool:
        key = self.key
        return (key is not None and r.get("hash") is not None
                and row_hash(r, chain.fields) == r["hash"]
                and key.check(r.get("seal"), chain.table, str(r["id"]), r["hash"]))

    def _tail_ok(self, name: str) -> bool:
        """The chain's rows end at its sealed head and number as many (cheap: no walk)."""
        return self._head_intact(name, count=True)

    def _head_intact(self, name: str, count: bool = False) -> bool:
        """The chain's last row is its sealed head: rows cut from the end show here. With
        ``count``, the rows also number as many (a full count: once, not per batch)."""
        key = self.key
        head = self.db.conn.execute("SELECT count, head, seal FROM heads WHERE chain = ?",
                                    [name]).fetchone()
        if key is None or head is None or not key.check(head[2], "head", name, str(head[0]),
                                                        head[1]):
            return False
        last = self.db.conn.execute(f"SELECT max(id) FROM [{name}]").fetchone()[0]
        if (last or 0) != head[0] or (count and self.db.conn.execute(
                f"SELECT count(*) FROM [{name}]").fetchone()[0] != head[0]):
            return False
        row = self.db.conn.execute(f"SELECT hash FROM [{name}] WHERE id = ?", [last]).fetchone()
        return (row[0] if row else GENESIS) == head[1]

    # -- departures ------------------------------------------------------------------------

    def record_delivery(self, row: dict[str, Any]) -> int:
        """Chain one delivery record (see ``deliveries.py``); returns its id."""
        return self._write(lambda: self._chain_append("deliveries", [row]))[0]

    def deliveries(self, name: str | None = None) -> list[dict[str, Any]]:
        """Delivery records that verify, oldest first (of one name when given)."""
        if "deliveries" not in self.db.table_names():
            return []
        where, params = (" WHERE name = ?", [name]) if name else ("", [])
        # a ledger read before its first write in this version has no show/episode columns
        return [{"show": None, "episode": None, **r}
                for r in self._verified("deliveries", where, params)]

    def record_departures(self, rows: list[dict[str, Any]]) -> list[int]:
        """Chain events for files that left (``removed``) or moved within (``moved``, with
        ``dest``) a watched tree, and move or drop their file-cache rows, in one transaction.
        A moved file keeps its cached verdict: its new path is not read again."""
        if not rows:
            return []

        def work() -> list[int]:
            ids = self._chain_append("events", rows)
            for r in rows:
                if r.get("event") == "moved" and r.get("dest"):
                    # unless the new path is known already; re-sealed under its new path
                    old = list(self.db.query("SELECT * FROM files WHERE path = ?", [r["path"]]))
                    if old and self._file_ok(old[0]):
                        values = tuple(r["dest"] if k == "path" else old[0][k]
                                       for k in _FILE_COLUMNS)
                        self.db.conn.execute(_UPSERT_FILE.replace("OR REPLACE", "OR IGNORE"),
                                             (*values, self._seal_file(values)))
                self.db.conn.execute("DELETE FROM files WHERE path = ?", [r["path"]])
            return ids

        return self._write(work)

    def events(self, since: str | None = None, path: str | None = None,
               verified: bool = False, mark: bool = False) -> Iterator[dict[str, Any]]:
        """Departures in id order, filtered; ``verified``: only rows whose hash and seal
        verify (what a decision is taken on: a forged "removed" row must not drop a held
        file from a delivery); ``mark``: every row, each saying whether it verifies (as
        ``decisions``)."""
        if "events" not in self.db.table_names():
            return iter(())
        where, params = [], []
        if since:
            where.append("time >= ?")
            params.append(since)
        if path:
            where.append("path GLOB ?")
            params.append(path if any(c in path for c in "*?[") else f"{path}*")
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        if verified:
            return iter(self._verified("events", cond, params))
        rows = self.db.query("SELECT * FROM events" + cond + " ORDER BY id", params)
        return (self._marked("events", r) for r in rows) if mark else rows

    # -- file cache ------------------------------------------------------------------------

    def _file_ok(self, row: dict[str, Any]) -> bool:
        return self.key is not None and self.key.check(
            row.get("seal"), "files", repr(tuple(row.get(k) for k in _FILE_COLUMNS)))

    def _trusted_cache(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The cache rows that may stand for a reading: sealed as written. The seal covers
        the path, the stat, the fingerprint, the verdict and the decision it came with, so
        only a holder of the key can make one; re-hashing the decision row behind each (as
        ``ledger verify`` does) would add no proof and cost a JSON encoding per file."""
        if not self._meta_ok or not self._head_intact("decisions"):
            return {}
        return {r["path"]: r for r in rows if r.get("decision_id") and self._file_ok(r)}

    def verified_cache(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        """File-cache rows for ``paths`` that verify (see ``_trusted_cache``); any other row
        is a miss, so the file is read again: the cache is an index, never evidence."""
        out: dict[str, dict[str, Any]] = {}
        with self._snapshot():
            for i in range(0, len(paths), 500):
                chunk = paths[i:i + 500]
                marks = ",".join("?" * len(chunk))
                rows = list(self.db.query(f"SELECT * FROM files WHERE path IN ({marks})", chunk))
                out.update(self._trusted_cache(rows))
        return out

    def cached_files(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        """The file cache for ``paths``: verified entries only (``verified_cache``)."""
        return self.verified_cache(paths)

    def cached_under(self, folder: str) -> list[dict[str, Any]]:
        """Verified file-cache rows below ``folder`` (path, fingerprint, decision)."""
        prefix = folder.rstrip("/") + "/"
        with self._snapshot():
            rows = list(self.db.query("SELECT * FROM files WHERE path >= ? AND path < ?",
                                      [prefix, prefix[:-1] + "0"]))  # '0' sorts after '/'
            trusted = self._trusted_cache(rows)
        return [{k: r[k] for k in ("path", "fingerprint", "decision_id")}
                for r in trusted.values()]

    def forget_files(self, paths: list[str]) -> None:
        """Drop file-cache rows, so those files are read again (a sidecar arrived or changed
        beside them: their size and times say nothing about it)."""
        if not paths:
            return

        def work() -> None:
            for i in range(0, len(paths), 500):
                chunk = paths[i:i + 500]
                self.db.conn.execute(
                    f"DELETE FROM files WHERE path IN ({','.join('?' * len(chunk))})", chunk)

        self._write(work)

    # -- approvals -------------------------------------------------------------------------

    def add_approval(self, **fields: Any) -> int:
        unknown = set(fields) - set(APPROVAL_CHAINED)
        if unknown:
            raise LedgerError(f"an approval has fields the ledger does not keep: "
                              f"{', '.join(sorted(unknown))}")
        row = {**fields, "created": now_iso()}
        return self._write(lambda: self._chain_append("approvals", [row]))[0]

    def approvals(self, include_inactive: bool = True) -> list[Approval]:
        """Approvals whose rows verify (hash, seal, revocation state against the update
        log): a row put in by hand, or edited, never clears a file."""
        # .get: a ledger opened read-only before its first write in this version lacks the
        # late columns (category, scope), which are then unset
        out = [Approval(id=r["id"], ref=r["ref"], approver=r["approver"], created=r["created"],
                        fingerprint=r["fingerprint"], glob=r["glob"], path=r["path"],
                        expires=r["expires"], note=r["note"], revoked=r["revoked"],
                        category=r.get("category"), show=r.get("show"),
                        episode=r.get("episode"), delivery=r.get("delivery"),
                        entry=r.get("entry"), sequence=r.get("sequence"),
                        frames=r.get("frames"))
               for r in self._verified("approvals")]
        if include_inactive:
            return out
        now = datetime.now(timezone.utc)
        return [a for a in out if a.active(now)]

    def revoke_approval(self, ident: int, by: str) -> bool:
        def work() -> bool:
            row = self.db.conn.execute("SELECT revoked FROM approvals WHERE id = ?",
                                       [ident]).fetchone()
            if row is None or row[0] is not None:
                return False
            change = {"revoked": now_iso(), "revoked_by": by}
            self.db.conn.execute("UPDATE approvals SET revoked = ?, revoked_by = ? WHERE id = ?",
                                 [change["revoked"], by, ident])
            self._log_updates("approvals", [(ident, change)])
            return True

        return self._write(work)

    # -- quarantine ------------------------------------------------------------------------

    def moves(self, state: str | None = None, verified: bool = True) -> list[dict[str, Any]]:
        """Quarantine moves in id order; only those that verify unless ``verified`` is
        False (a report shows every row of a ledger it says is broken; nothing acts on one)."""
        where, params = (" WHERE state = ?", [state]) if state else ("", [])
        if verified:
            return self._verified("quarantine", where, params)
        return list(self.db.query(f"SELECT * FROM quarantine{where} ORDER BY id", params))

    def take_moves(self, state: str, daemon_runs: bool = False) -> list[dict[str, Any]]:
        """The moves in ``state`` (pending, failed) this process may carry out, in id order:
        its own, and those whose owner is gone (``owner_state``: the process that planned or
        last took the move runs no more). Those it takes over are marked ``taken_by`` it (an
        update) in one transaction, so two processes never both take one. A move in the hands
        of a live process (in flight: a daemon's, a paused CLI's) or of another host is never
        taken. While a watch daemon runs on this ledger (``daemon_runs``, said by a CLI), the
        moves of daemon decisions and those planned before moves had owners are left to it."""
        candidates = self.moves(state)
        if daemon_runs and candidates:
            ids, daemons = sorted({m["decision_id"] for m in candidates}), set()
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                daemons.update(d for (d,) in self.db.conn.execute(
                    f"SELECT id FROM decisions WHERE actor = 'daemon' AND id IN "
                    f"({','.join('?' * len(chunk))})", chunk))
            candidates = [m for m in candidates if m["decision_id"] not in daemons]
        mine, gone = [], []
        for m in candidates:
            who = _holder(m)
            status = owner_state(who) if who else ("alive" if daemon_runs else "gone")
            if status != "alive":
                (mine if status == "me" else gone).append(m)
        if not gone:
            return mine
        me = data.canonical_json(process_owner())

        def work() -> list[dict[str, Any]]:
            taken, t = [], now_iso()
            for m in gone:
                row = self.db.conn.execute("SELECT state, taken_by FROM quarantine WHERE id = ?",
                                           [m["id"]]).fetchone()
                if row is None or tuple(row) != (m["state"], m["taken_by"]):
                    continue  # changed since it was read: another process took it first
                self.db.conn.execute("UPDATE quarantine SET taken_by = ?, updated = ? WHERE "
                                     "id = ?", [me, t, m["id"]])
                taken.append({**m, "taken_by": me, "updated": t})
            self._log_updates("quarantine", [(m["id"], {"taken_by": me, "updated": t})
                                             for m in taken])
            return taken

        return sorted([*mine, *self._write(work)], key=lambda m: m["id"])

    def moved_by_provgate(self, original_path: str, fingerprint: str | None) -> bool:
        """True when provgate's own quarantine took this file away (not a departure)."""
        return bool(self._verified(
            "quarantine", " WHERE original_path = ? AND fingerprint IS ? AND state IN "
            "('pending', 'done')", [original_path, fingerprint]))

    def move(self, ident: int) -> dict[str, Any] | None:
        """Move ``ident`` if its row verifies (else None: never restored, never carried out)."""
        rows = self._verified("quarantine", " WHERE id = ?", [ident])
        return rows[0] if rows else None

    def moves_from(self, folder: str, state: str = "done") -> list[dict[str, Any]]:
        """Moves (newest first) of files that were directly in ``folder``: where a sidecar
        arriving late finds the media file provgate quarantined."""
        prefix = folder.rstrip("/") + "/"
        rows = self._verified("quarantine", " WHERE state = ? AND original_path >= ? AND "
                              "original_path < ?", [state, prefix, prefix[:-1] + "0"])
        return [r for r in reversed(rows) if "/" not in r["original_path"][len(prefix):]]

    def update_move(self, ident: int, **fields: Any) -> None:
        """Change a move's state columns: the row is updated and the change chained."""
        mutable = CHAINS["quarantine"].mutable
        unknown = set(fields) - set(mutable)
        if unknown:
            raise LedgerError(f"a quarantine move's {', '.join(sorted(unknown))} cannot change")
        change = {**fields, "updated": now_iso()}

        def work() -> None:
            cur = self.db.conn.execute(
                f"UPDATE quarantine SET {', '.join(f'{c} = ?' for c in change)} WHERE id = ?",
                [*change.values(), ident])
            if cur.rowcount != 1:
                raise LedgerError(f"no quarantine move #{ident} in the ledger {self.path}")
            self._log_updates("quarantine", [(ident, change)])

        self._write(work)


def _guard(db: Db, chain: Chain) -> None:
    """Triggers that refuse what provgate never does (a guard against mistakes; whoever drops
    them is caught by the seals): deleting a chained row, updating its chained columns."""
    noun = chain.table
    db.execute(f"CREATE TRIGGER IF NOT EXISTS {noun}_no_delete BEFORE DELETE ON [{noun}] "
               f"BEGIN SELECT RAISE(ABORT, 'the {noun} ledger is append-only'); END")
    cols = ", ".join(f"[{c}]" for c in (*chain.fields, "hash", "seal"))
    of = "" if not chain.mutable else f" OF {cols}"
    db.execute(f"CREATE TRIGGER IF NOT EXISTS {noun}_no_update BEFORE UPDATE{of} ON [{noun}] "
               f"BEGIN SELECT RAISE(ABORT, 'the {noun} ledger is append-only'); END")




def _walk(rows: Iterable[dict[str, Any]], chain: Chain, key: SealKey | None,
          v: Verification | None = None) -> tuple[int, str] | None:
    """Walk one chain in id order: ids from 1 without a gap, each row linked to the one
    before, its hash over its fields, its seal (when ``key``). (first bad id, why) or None."""
    prev, expected, noun = GENESIS, 1, chain.noun
    count = 0
    for row in rows:
        ident = row["id"]
        if ident != expected:
            return ident, f"{noun} {expected} is missing (next {noun} is {ident})"
        if row["prev_hash"] != prev:
            return ident, f"{noun} {ident} does not follow {noun} {ident - 1}"
        if row_hash(row, chain.fields) != row["hash"]:
            return ident, f"{noun} {ident} was changed after it was written"
        if key is not None and not key.check(row.get("seal"), chain.table, str(ident),
                                             row["hash"]):
            return ident, (f"{noun} {ident}'s seal does not verify: it was changed, or put in, "
                           "without the seal key (its chain recomputed)")
        prev, expected, count = row["hash"], expected + 1, count + 1
        if v is not None:
            v.counts[chain.table], v.heads[chain.table] = count, prev
    if v is not None:
        v.counts.setdefault(chain.table, 0)
        v.heads.setdefault(chain.table, GENESIS)
    return None




def _summary(v: Verification) -> str:
    n = v.counts
    tail = f" and {n['events']} departures" if n.get("events") else ""
    parts = [f"{n.get('decisions', 0)} decisions{tail}, chain intact"]
    more = [f"{n[c]} {w}" for c, w in (("approvals", "approvals"), ("quarantine", "moves"),
                                       ("updates", "updates")) if n.get(c)]
    if more:
        parts.append(", ".join(more) + " intact")
    sealed = f"sealed (key {v.key_id}), every count matches its sealed head"
    before = {c: v.chained_only[c] for c in CHAINS if v.chained_only.get(c)}
    if before:
        sealed += (f"; sealed since {v.since}: the rows written before then were sealed as "
                   "they stood, only chained before ("
                   + ", ".join(f"{c} 1-{k}" for c, k in before.items()) + ")")
    parts.append(sealed)
    if v.cache_unverified:
        parts.append(f"{v.cache_unverified} file-cache rows do not verify and are ignored "
                     "(those files are read again)")
    return "; ".join(parts)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


# -- the owner of a move -----------------------------------------------------------------------

def process_owner() -> dict[str, Any]:
    """This process as the owner of the moves it plans: pid, start time and host name
    (read once per process: a batch plans moves many times a second)."""
    pid = os.getpid()
    if pid not in _OWNER:  # keyed by pid: a forked child is another owner
        _OWNER[pid] = {"owner_pid": pid, "owner_start": _process_start(pid) or None,
                       "owner_host": os.uname().nodename}
    return dict(_OWNER[pid])


_OWNER: dict[int, dict[str, Any]] = {}


def owner_state(owner: dict[str, Any]) -> str:
    """``me`` (this process), ``alive`` (a process that still runs, however busy or paused,
    or one of another host, which this one cannot see: never taken) or ``gone`` (its pid runs
    no more, or runs another process since: another start time, or another boot)."""
    pid, start = owner.get("owner_pid"), owner.get("owner_start")
    if owner.get("owner_host") != os.uname().nodename:
        return "alive"
    now = _process_start(int(pid)) if pid is not None else ""
    if now is None:  # no /proc here: the pid alone
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            pass
    elif not now or (start and now != start):
        return "gone"
    return "me" if pid == os.getpid() else "alive"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``BOOT-ID:TICKS`` (field 22 of /proc/PID/stat, clock
    ticks since boot); "" when no such process runs (or only its zombie), None without /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return "" if os.path.isdir("/proc/self") else None
    except OSError:
        return None
    # the name, field 2, is in parentheses and may hold spaces and parentheses itself
    state, *rest = raw[raw.rindex(b")") + 2:].split()
    if state in (b"Z", b"X"):
        return ""
    return f"{_boot_id()}:{int(rest[18])}"


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _holder(move: dict[str, Any]) -> dict[str, Any] | None:
    """Who a move is in the hands of: the process that last took it over, else its planner
    (None for a move planned before moves had owners)."""
    if move.get("taken_by"):
        try:
            return dict(json.loads(move["taken_by"]))
        except (ValueError, TypeError):
            return None
    return {k: move.get(k) for k in MOVE_OWNER} if move.get("owner_host") else None


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_locked(fn: Callable[[], T], seconds: float = 30.0) -> T:
    """Retry what SQLite refuses with "locked" without calling its busy handler (a journal
    mode change, a lock upgrade) while another process opens the same ledger."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for k in _JSON_FIELDS:
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


def for_policy(policy: Policy, override: str | None = None, **kwargs: Any) -> Ledger:
    """The ledger a policy names (or ``override``), with the policy's seal key and the roots
    that key must stay out of; the policy's ``service`` (group, user) becomes this process's
    (``safefs.configure``) for the ledger, its key, the quarantine and the daemon's files."""
    safefs.configure(**policy.config.service)
    return Ledger(policy.config.ledger_path(override), seal_key=policy.config.seal_key_path(),
                  roots=policy.config.roots, **kwargs)
