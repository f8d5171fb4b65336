"""The sealed ledger (issue 12): each way the ledger's evidence was rewritten, done again the way
it was found (sqlite3 on the real ledger file, the chain recomputed with the public algorithm,
rows put in by hand), and each now caught by `ledger verify` or refused at the gate; the seal
key, the checkpoint, the sealing of an older ledger, and writes that wait out a locked ledger."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import SAMPLES, by_name, run, run_json
from provgate.errors import LedgerError
from provgate.ledger import (APPROVAL_CHAINED, CHAINED, EVENT_CHAINED, GENESIS, MOVE_CHAINED,
                             Ledger, SealKey, row_hash)

NOW = "2030-01-01T00:00:00.000000+00:00"


def connect(ledger: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(ledger, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]


def forge(conn: sqlite3.Connection, table: str, fields: tuple[str, ...], row: dict[str, Any],
          heads: bool = True) -> int:
    """Append a row the way someone with write access to the file would: chained onto the
    last row with the public algorithm, the head moved along; only the seal cannot be made."""
    last = conn.execute(f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
    ident, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    full = {**row, "id": ident, "prev_hash": prev}
    full["hash"] = row_hash(full, fields)
    full["seal"] = hashlib.sha256(b"a guess").hexdigest()
    cols = list(full)
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                 [full[c] for c in cols])
    if heads:
        conn.execute("UPDATE heads SET count = ?, head = ? WHERE chain = ?",
                     [ident, full["hash"], table])
    return ident


def rechain(conn: sqlite3.Connection, table: str, fields: tuple[str, ...], start: int) -> None:
    """Recompute the chain from row ``start`` on, and the head, after an edit."""
    all_rows = rows(conn, table)
    prev = next((r["hash"] for r in all_rows if r["id"] == start - 1), GENESIS)
    for r in all_rows:
        if r["id"] < start:
            continue
        r["prev_hash"] = prev
        r["hash"] = prev = row_hash(r, fields)
        conn.execute(f"UPDATE {table} SET prev_hash = ?, hash = ? WHERE id = ?",
                     [r["prev_hash"], r["hash"], r["id"]])
    conn.execute("UPDATE heads SET head = ? WHERE chain = ?", [prev, table])


def drop_guards(conn: sqlite3.Connection, *tables: str) -> None:
    for t in tables:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")


def verify(*extra: str) -> tuple[int, str]:
    result = run("ledger", "verify", *extra)
    return result.exit_code, result.stdout + result.stderr


def departures(ledger_path: Path, records: list[dict]) -> None:
    with Ledger(ledger_path) as led:
        led.record_departures([
            {"time": NOW, "event": "removed", "path": r["path"], "dest": None,
             "fingerprint": r["fingerprint"], "decision_id": r["id"], "actor": "daemon",
             "user": "u"} for r in records])


# -- rows removed ------------------------------------------------------------------------------

def test_deleting_the_last_rows_is_caught_and_nothing_is_appended_after(
        delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    assert verify()[0] == 0
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("DELETE FROM decisions WHERE id > ?", [len(records) - 2])
    conn.close()
    code, out = verify()
    assert code == 1, out
    assert f"row {len(records) - 1} to row {len(records)} are missing" in out
    # the next scan does not chain new rows onto the cut, which would hide it
    again = run("scan", delivery, "--rescan")
    assert again.exit_code == 3 and "damaged" in again.stderr
    assert len(rows(connect(ledger_path), "decisions")) == len(records) - 2


def test_deleting_every_row_is_caught(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("DELETE FROM decisions")
    conn.close()
    code, out = verify()
    assert code == 1 and "row 1 to row 7 are missing" in out, out


def test_dropping_the_events_table_is_caught(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    departures(ledger_path, records[:2])
    assert "2 departures, chain intact" in verify()[1]
    conn = connect(ledger_path)
    conn.execute("DROP TABLE events")
    conn.close()
    code, out = verify()
    assert code == 1 and "the events table is missing" in out, out
    # a writer that opens it makes the table again: still caught, the head remembers 2 rows
    run("scan", delivery)
    code, out = verify()
    assert code == 1 and "event 1 to event 2 are missing" in out, out


def test_dropping_the_heads_and_seal_record_is_caught(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    conn = connect(ledger_path)
    conn.execute("DROP TABLE heads")
    conn.execute("DROP TABLE seal")
    conn.close()
    code, out = verify()
    assert code == 1 and "seal record is gone" in out, out
    refused = run("scan", delivery, "--rescan")  # not sealed again as if it were an old ledger
    assert refused.exit_code == 3 and "seal record is gone" in refused.stderr


# -- rows changed, the chain recomputed --------------------------------------------------------

def test_an_edit_with_the_chain_recomputed_is_caught(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    victim = next(r for r in records if r["action"] == "block")["id"]
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("UPDATE decisions SET action = 'allow', kind = 'human' WHERE id = ?", [victim])
    rechain(conn, "decisions", CHAINED, victim)
    conn.close()
    code, out = verify()
    assert code == 1 and f"row {victim}'s seal does not verify" in out, out


def test_an_event_edited_and_rechained_is_caught(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    departures(ledger_path, records[:3])
    conn = connect(ledger_path)
    drop_guards(conn, "events")
    conn.execute("UPDATE events SET event = 'moved', dest = '/elsewhere' WHERE id = 2")
    rechain(conn, "events", EVENT_CHAINED, 2)
    conn.close()
    code, out = verify()
    assert code == 1 and "event 2's seal does not verify" in out, out


def test_a_row_appended_by_hand_is_caught(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    conn = connect(ledger_path)
    row = {k: v for k, v in rows(conn, "decisions")[0].items()
           if k not in ("id", "prev_hash", "hash", "seal")}
    ident = forge(conn, "decisions", CHAINED, {**row, "kind": "human", "action": "allow"})
    conn.close()
    assert ident == len(records) + 1
    code, out = verify()
    assert code == 1 and f"row {ident}'s seal does not verify" in out, out


def test_listings_mark_the_rows_that_do_not_verify(delivery: Path, ledger_path: Path) -> None:
    """``ledger list`` and ``ledger events`` show every row, and say which ones do not verify:
    an edit rechained by hand reads like any other row otherwise."""
    records = run_json("scan", delivery)
    departures(ledger_path, records[:2])
    victim = next(r for r in records if r["action"] == "block")["id"]
    conn = connect(ledger_path)
    drop_guards(conn, "decisions", "events")
    conn.execute("UPDATE decisions SET action = 'allow', kind = 'human' WHERE id = ?", [victim])
    rechain(conn, "decisions", CHAINED, victim)
    conn.execute("UPDATE events SET event = 'moved', dest = '/elsewhere' WHERE id = 2")
    rechain(conn, "events", EVENT_CHAINED, 2)
    conn.close()
    listed = json.loads(run("ledger", "list", "--json").stdout)
    # the edit and every row chained after it (their hashes were rewritten, not their seals)
    assert [r["verified"] for r in listed] == [r["id"] < victim for r in listed]
    text = run("ledger", "list").stdout
    assert [line for line in text.splitlines() if "DOES NOT VERIFY" in line][0].startswith(
        f"#{victim} ")
    events = json.loads(run("ledger", "events", "--json").stdout)
    assert [e["verified"] for e in events] == [True, False]
    assert "DOES NOT VERIFY" in run("ledger", "events").stdout.splitlines()[1]


# -- approvals ---------------------------------------------------------------------------------

def _forged_approval(ledger_path: Path, final: Path, chained: bool) -> None:
    conn = connect(ledger_path)
    if chained:
        forge(conn, "approvals", APPROVAL_CHAINED,
              {"ref": "FORGED-1", "approver": "nobody", "glob": f"{final}/*", "created": NOW})
    else:  # the way it was found: a plain INSERT, nothing else
        conn.execute("INSERT INTO approvals (ref, approver, glob, created) VALUES (?, ?, ?, ?)",
                     ["FORGED-1", "nobody", f"{final}/*", NOW])
    conn.close()


@pytest.mark.parametrize("chained", [False, True], ids=["plain-insert", "rechained"])
def test_an_approval_put_in_by_hand_clears_nothing_at_the_gate(
        delivery: Path, ledger_path: Path, chained: bool) -> None:
    final = delivery / "ep101" / "final"
    before = by_name(run_json("check", final))
    held = sorted(n for n, r in before.items() if r["action"] in ("escalate", "block"))
    assert len(held) >= 2
    _forged_approval(ledger_path, final, chained)
    result = run("check", final, "--json")
    assert result.exit_code == 1
    after = by_name(json.loads(result.stdout))
    for name in held:
        assert after[name]["action"] == before[name]["action"], name
        assert after[name]["approval"] is None
    assert json.loads(run("approvals", "--json").stdout) == []  # not listed as one either
    code, out = verify()
    assert code == 1 and "approval 1" in out, out
    assert "FORGED-1" not in run("ledger", "export", "--json").stdout


def test_a_real_approval_still_clears_beside_a_forged_one(delivery: Path,
                                                          ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    target = final / "ai_genfill_composite.jpg"
    assert run("approve", target, "--ref", "NFX-1", "--by", "Jo").exit_code == 0
    _forged_approval(ledger_path, final, chained=True)
    recs = by_name(run_json("check", final))
    assert recs["ai_genfill_composite.jpg"]["approval"]["ref"] == "NFX-1"
    assert recs["ai_iptc_generated.jpg"]["approval"] is None
    # nothing is chained onto the forged row (it would be vouched for by the next seal)
    late = run("approve", final / "ai_iptc_generated.jpg", "--ref", "NFX-2", "--by", "Jo")
    assert late.exit_code == 3 and "damaged" in late.stderr


def test_a_revocation_undone_by_hand_does_not_count(delivery: Path, ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    target = final / "ai_genfill_composite.jpg"
    assert run("approve", target, "--ref", "NFX-2", "--by", "Jo").exit_code == 0
    assert by_name(run_json("check", final))["ai_genfill_composite.jpg"]["action"] == "allow"
    assert run("revoke", "1").exit_code == 0
    conn = connect(ledger_path)
    conn.execute("UPDATE approvals SET revoked = NULL, revoked_by = NULL WHERE id = 1")
    conn.close()
    rec = by_name(run_json("check", final))["ai_genfill_composite.jpg"]
    assert rec["action"] == "escalate" and rec["approval"] is None
    code, out = verify()
    assert code == 1 and "approval 1 does not match its update log" in out, out
    # removing the revocation from the log as well: the log no longer ends at its head
    conn = connect(ledger_path)
    drop_guards(conn, "updates")
    conn.execute("DELETE FROM updates WHERE id = (SELECT max(id) FROM updates)")
    conn.close()
    rec = by_name(run_json("check", final))["ai_genfill_composite.jpg"]
    assert rec["action"] == "escalate" and rec["approval"] is None
    assert verify()[0] == 1


# -- the file cache ----------------------------------------------------------------------------

def _edit_cache_to_human(ledger_path: Path, path: str) -> None:
    conn = connect(ledger_path)
    verdict = json.loads(conn.execute("SELECT verdict FROM files WHERE path = ?",
                                      [path]).fetchone()[0])
    verdict.update(kind="human", c2pa="absent", evidence=[], error=None)
    conn.execute("UPDATE files SET verdict = ? WHERE path = ?", [json.dumps(verdict), path])
    conn.close()


def test_a_cache_row_edited_to_human_is_not_trusted_by_check(delivery: Path,
                                                             ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    first = by_name(run_json("scan", final))["ai_iptc_generated.jpg"]
    assert first["kind"] == "ai_generated"
    _edit_cache_to_human(ledger_path, first["path"])
    result = run("check", final, "--json")
    assert result.exit_code == 1
    rec = by_name(json.loads(result.stdout))["ai_iptc_generated.jpg"]
    assert rec["kind"] == "ai_generated" and rec["action"] == "block" and not rec["cached"]
    conn = connect(ledger_path)
    kinds = {r["kind"] for r in rows(conn, "decisions") if r["path"] == first["path"]}
    assert kinds == {"ai_generated"}  # no fresh, well-chained "allow" for it
    assert verify()[0] == 0  # the cache is an index: the decision chains are intact


def test_a_cache_row_with_a_forged_decision_behind_it_is_not_trusted(
        delivery: Path, ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    first = by_name(run_json("scan", final))["ai_iptc_generated.jpg"]
    conn = connect(ledger_path)
    base = {k: v for k, v in rows(conn, "decisions")[first["id"] - 1].items()
            if k not in ("id", "prev_hash", "hash", "seal")}
    ident = forge(conn, "decisions", CHAINED, {**base, "kind": "human", "c2pa": "absent",
                                                "evidence": "[]", "error": None,
                                                "action": "allow"})
    verdict = json.loads(conn.execute("SELECT verdict FROM files WHERE path = ?",
                                      [first["path"]]).fetchone()[0])
    verdict.update(kind="human", c2pa="absent", evidence=[], error=None)
    conn.execute("UPDATE files SET verdict = ?, decision_id = ? WHERE path = ?",
                 [json.dumps(verdict), ident, first["path"]])
    conn.close()
    with Ledger(ledger_path, readonly=True) as led:
        assert led.cached_files([first["path"]]) == {}  # a miss: the file is read again
    # and the gate does not pass: it will not chain its decisions onto a forged row
    result = run("check", final)
    assert result.exit_code == 3 and "damaged" in result.stderr
    assert verify()[0] == 1


def test_the_cache_still_saves_reading_unchanged_files(delivery: Path) -> None:
    run_json("scan", delivery)
    assert all(r["cached"] for r in run_json("scan", delivery))


# -- quarantine moves --------------------------------------------------------------------------

def test_a_forged_pending_move_is_never_carried_out(delivery: Path, ledger_path: Path,
                                                    tmp_path: Path) -> None:
    final = delivery / "ep101" / "final"
    recs = by_name(run_json("scan", final))
    victim = final / "human_capture.jpg"
    stolen = tmp_path / "stolen.jpg"
    conn = connect(ledger_path)
    ident = forge(conn, "quarantine", MOVE_CHAINED, {
        "decision_id": recs["human_capture.jpg"]["id"], "original_path": str(victim),
        "quarantined_path": str(stolen), "receipt_path": str(stolen) + ".receipt.json",
        "fingerprint": recs["human_capture.jpg"]["fingerprint"], "size": victim.stat().st_size,
        "created": NOW, "user": "x", "state": "pending", "updated": NOW})
    conn.close()
    assert run("scan", final).exit_code == 0  # every run first finishes pending moves
    assert victim.exists() and not stolen.exists()
    assert run("quarantine", "restore", str(ident)).exit_code == 2
    code, out = verify()
    assert code == 1 and f"move {ident}" in out, out


def test_a_restored_move_set_back_to_done_is_not_restored_again(delivery: Path,
                                                                ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    run_json("scan", final, "--mode", "enforce")
    moves = json.loads(run("quarantine", "list", "--json").stdout)
    first = moves[0]
    assert run("quarantine", "restore", str(first["id"])).exit_code == 0
    assert Path(first["original_path"]).exists()
    conn = connect(ledger_path)
    conn.execute("UPDATE quarantine SET state = 'done' WHERE id = ?", [first["id"]])
    conn.close()
    assert run("quarantine", "restore", str(first["id"])).exit_code == 2
    code, out = verify()
    assert code == 1 and f"move {first['id']} does not match its update log" in out, out


# -- the checkpoint ----------------------------------------------------------------------------

def test_checkpoint_catches_a_rollback_of_the_whole_file(delivery: Path, ledger_path: Path,
                                                         tmp_path: Path) -> None:
    run_json("scan", delivery / "ep101" / "temp")
    old = tmp_path / "old.db"
    with sqlite3.connect(ledger_path) as live, sqlite3.connect(old) as copy:
        live.backup(copy)
    run_json("scan", delivery / "ep101" / "final")
    result = run("ledger", "checkpoint")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["chains"]["decisions"]["count"] == 7 and set(doc["chains"]) >= {
        "decisions", "events", "approvals", "quarantine"}
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(result.stdout)
    assert verify("--checkpoint", checkpoint)[0] == 0
    with sqlite3.connect(old) as copy, sqlite3.connect(ledger_path) as live:
        copy.backup(live)  # the whole file as it was: consistent, sealed with the same key
    assert verify()[0] == 0  # what a seal alone cannot see
    code, out = verify("--checkpoint", checkpoint)
    assert code == 1 and "row 7 of decisions" in out and "rolled back" in out, out


def test_checkpoint_catches_a_rewrite_by_someone_holding_the_key(delivery: Path,
                                                                 ledger_path: Path,
                                                                 tmp_path: Path) -> None:
    records = run_json("scan", delivery)
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(run("ledger", "checkpoint").stdout)
    # the key's holder edits a row, rechains, and seals everything again
    key = SealKey(bytes.fromhex(Path(f"{ledger_path}.key").read_text().strip()))
    victim = next(r for r in records if r["action"] == "block")["id"]
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("UPDATE decisions SET action = 'allow' WHERE id = ?", [victim])
    rechain(conn, "decisions", CHAINED, victim)
    for r in rows(conn, "decisions"):
        conn.execute("UPDATE decisions SET seal = ? WHERE id = ?",
                     [key.seal("decisions", str(r["id"]), r["hash"]), r["id"]])
    last = rows(conn, "decisions")[-1]
    conn.execute("UPDATE heads SET seal = ? WHERE chain = 'decisions'",
                 [key.seal("head", "decisions", str(last["id"]), last["hash"])])
    conn.close()
    assert verify()[0] == 0  # the seal does not protect against its key's holder
    code, out = verify("--checkpoint", checkpoint)
    assert code == 1 and "rewritten" in out, out


def test_an_edited_or_foreign_checkpoint_fails(delivery: Path, ledger_path: Path,
                                               tmp_path: Path) -> None:
    run_json("scan", delivery)
    doc = json.loads(run("ledger", "checkpoint").stdout)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({**doc, "chains": {**doc["chains"],
                                                    "decisions": {"count": 2,
                                                                  "head": GENESIS}}}))
    code, out = verify("--checkpoint", edited)
    assert code == 1 and "signature does not verify" in out, out
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**doc, "key_id": "0" * 16}))
    code, out = verify("--checkpoint", foreign)
    assert code == 1 and "another key" in out, out
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert verify("--checkpoint", junk)[0] == 2


def test_no_checkpoint_of_a_broken_ledger(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("DELETE FROM decisions WHERE id = 7")
    conn.close()
    result = run("ledger", "checkpoint")
    assert result.exit_code == 1 and not result.stdout and "BROKEN" in result.stderr


# -- the key -----------------------------------------------------------------------------------

def test_the_key_is_made_once_0600_and_kept_out_of_the_ledger(delivery: Path,
                                                              ledger_path: Path) -> None:
    run_json("scan", delivery)
    key = Path(f"{ledger_path}.key")
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    secret = key.read_text().strip()
    assert len(secret) == 64
    run_json("scan", delivery, "--rescan")
    assert key.read_text().strip() == secret  # made once
    for f in ledger_path.parent.iterdir():
        if f.name.startswith(ledger_path.name) and f != key:
            assert secret.encode() not in f.read_bytes()
            assert bytes.fromhex(secret) not in f.read_bytes()


def test_the_key_can_live_elsewhere(delivery: Path, ledger_path: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    monkeypatch.setenv("PROVGATE_SEAL_KEY", str(keys / "seal.key"))
    run_json("scan", delivery)
    assert (keys / "seal.key").is_file() and not Path(f"{ledger_path}.key").exists()
    assert verify()[0] == 0
    monkeypatch.delenv("PROVGATE_SEAL_KEY")  # without it, the ledger's seals cannot be checked
    code, out = verify()
    assert code == 1 and "no seal key" in out, out


def test_a_link_planted_at_the_key_path_is_refused(delivery: Path, ledger_path: Path,
                                                   tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("root-owned config\n")
    Path(f"{ledger_path}.key").symlink_to(precious)
    result = run("scan", delivery)
    assert result.exit_code == 3 and "symbolic link" in result.stderr
    assert precious.read_text() == "root-owned config\n"
    Path(f"{ledger_path}.key").unlink()
    Path(f"{ledger_path}.key").symlink_to(tmp_path / "not-yet")  # dangling: not created
    assert run("scan", delivery).exit_code == 3 and not (tmp_path / "not-yet").exists()


def test_a_key_open_to_others_is_refused(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    key = Path(f"{ledger_path}.key")
    key.chmod(0o644)
    result = run("scan", delivery)
    assert result.exit_code == 3 and "open to others" in result.stderr
    key.chmod(0o640)  # a group (producers who approve) may read it
    assert run("scan", delivery).exit_code == 0


def test_a_deleted_or_replaced_key_stops_writes(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    Path(f"{ledger_path}.key").unlink()
    result = run("scan", delivery, "--rescan")  # a new key is made, and is not the ledger's
    assert result.exit_code == 3 and "sealed with another key" in result.stderr
    code, out = verify()
    assert code == 1 and "sealed with another key" in out, out


# -- an older ledger ---------------------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE decisions (id INTEGER PRIMARY KEY, time TEXT, path TEXT, root TEXT,
  fingerprint TEXT, size INTEGER, kind TEXT, c2pa TEXT, evidence TEXT, error TEXT, zone TEXT,
  rule TEXT, action TEXT, reason TEXT, mode TEXT, approval_id INTEGER, approval_ref TEXT,
  policy_digest TEXT, trust_digest TEXT, tools TEXT, actor TEXT, user TEXT, prev_hash TEXT,
  hash TEXT);
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
  BEGIN SELECT RAISE(ABORT, 'the decisions ledger is append-only'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
  BEGIN SELECT RAISE(ABORT, 'the decisions ledger is append-only'); END;
CREATE TABLE events (id INTEGER PRIMARY KEY, time TEXT, event TEXT, path TEXT, dest TEXT,
  fingerprint TEXT, decision_id INTEGER, actor TEXT, user TEXT, prev_hash TEXT, hash TEXT);
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
  inode INTEGER, fingerprint TEXT, catalogue TEXT, trust TEXT, verdict TEXT,
  decision_id INTEGER, decision_key TEXT, seen TEXT);
CREATE TABLE approvals (id INTEGER PRIMARY KEY, ref TEXT, approver TEXT, fingerprint TEXT,
  glob TEXT, path TEXT, expires TEXT, note TEXT, created TEXT, revoked TEXT, revoked_by TEXT);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY, decision_id INTEGER, original_path TEXT,
  quarantined_path TEXT, receipt_path TEXT, fingerprint TEXT, size INTEGER, state TEXT,
  created TEXT, updated TEXT, error TEXT, user TEXT, sidecars TEXT);
"""


def old_ledger(path: Path, final: Path) -> None:
    """A ledger as provgate wrote it before sealing: chained decisions, plain approvals and
    moves, a revoked approval, a cache row."""
    conn = connect(path)
    conn.executescript(OLD_SCHEMA)
    prev = GENESIS
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg"), 1):
        row = {"id": i, "time": NOW, "path": str(final / name), "root": str(final),
               "fingerprint": f"sha256:{i:064x}", "size": 10, "kind": "ai_generated",
               "c2pa": "absent", "evidence": "[]", "error": None, "zone": "final",
               "rule": "zones.final.ai_generated", "action": "block", "reason": "r",
               "mode": "enforce", "approval_id": None, "approval_ref": None,
               "policy_digest": "0" * 64, "trust_digest": None, "tools": "{}", "actor": "cli",
               "user": "u", "prev_hash": prev}
        row["hash"] = prev = row_hash(row, CHAINED)
        conn.execute(f"INSERT INTO decisions ({', '.join(row)}) VALUES "
                     f"({', '.join('?' * len(row))})", list(row.values()))
    conn.execute("INSERT INTO approvals (ref, approver, glob, created, revoked, revoked_by) "
                 "VALUES ('OLD-1', 'Jo', ?, ?, ?, 'Jo')", [f"{final}/*", NOW, NOW])
    conn.execute("INSERT INTO quarantine (decision_id, original_path, quarantined_path, "
                 "receipt_path, fingerprint, size, state, created, updated, user) VALUES "
                 "(1, ?, '/q/a.jpg', '/q/a.jpg.receipt.json', ?, 10, 'done', ?, ?, 'u')",
                 [str(final / "a.jpg"), f"sha256:{1:064x}", NOW, NOW])
    conn.execute("INSERT INTO files (path, fingerprint, verdict, decision_id) VALUES "
                 "(?, ?, '{\"kind\": \"human\"}', 1)", [str(final / "a.jpg"), "sha256:1"])
    conn.close()


def test_an_older_ledger_is_sealed_from_its_state_at_first_open(delivery: Path,
                                                                ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    old_ledger(ledger_path, final)
    code, out = verify()  # read-only: not sealed yet, and it says so
    assert code == 1 and "not sealed yet" in out, out
    listing = json.loads(run("approvals", "--json").stdout)  # a writable open seals it
    assert [(a["ref"], a["active"], bool(a["revoked"])) for a in listing] == [
        ("OLD-1", False, True)]
    assert Path(f"{ledger_path}.key").is_file()
    code, out = verify()
    assert code == 0, out
    assert "only chained before (decisions 1-3, approvals 1-1, quarantine 1-1)" in out
    moves = json.loads(run("quarantine", "list", "--json").stdout)
    assert [m["state"] for m in moves] == ["done"]
    assert connect(ledger_path).execute("SELECT count(*) FROM files").fetchone()[0] == 0
    # sealed from now on: the old rows are covered by their seals taken at that moment
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("UPDATE decisions SET action = 'allow' WHERE id = 2")
    rechain(conn, "decisions", CHAINED, 2)
    conn.close()
    assert verify()[0] == 1


def test_an_older_ledger_with_a_broken_chain_is_not_sealed(delivery: Path,
                                                           ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    old_ledger(ledger_path, final)
    conn = connect(ledger_path)
    drop_guards(conn, "decisions")
    conn.execute("UPDATE decisions SET action = 'allow' WHERE id = 2")
    conn.close()
    result = run("approvals")
    assert result.exit_code == 3 and "row 2 was changed" in result.stderr
    assert "not sealed in that state" in result.stderr


# -- many processes ----------------------------------------------------------------------------

HOLD = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); c.execute('BEGIN IMMEDIATE');"
        "print('locked', flush=True); time.sleep(float(sys.argv[2])); c.rollback()")


def hold_lock(ledger: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ledger), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_write_refused_as_locked_is_retried_until_its_deadline(ledger_path: Path) -> None:
    Ledger(ledger_path).close()
    holder = hold_lock(ledger_path, 1.5)
    with Ledger(ledger_path) as led:
        # SQLite answering "database is locked" at once, as it does when its busy handler
        # is not called (a lock upgrade, a snapshot gone stale): retried, not fatal
        led.db.execute("PRAGMA busy_timeout = 0")
        t0 = time.monotonic()
        ident = led.add_approval(ref="R-1", approver="A", path="/x", fingerprint="sha256:0")
        assert time.monotonic() - t0 > 0.5
        assert led.revoke_approval(ident, "B")
    holder.wait()
    holder = hold_lock(ledger_path, 5)
    try:
        with Ledger(ledger_path) as led:
            led.db.execute("PRAGMA busy_timeout = 0")
            led.lock_deadline = 0.5
            t0 = time.monotonic()
            with pytest.raises(LedgerError, match="still locked after"):
                led.add_approval(ref="R-2", approver="A", path="/x", fingerprint="sha256:0")
            assert time.monotonic() - t0 < 3
    finally:
        holder.kill()
        holder.wait()
    assert verify()[0] == 0


WRITER = """
import sys
from provgate.ledger import Ledger
with Ledger(sys.argv[1]) as led:
    led.db.execute("PRAGMA busy_timeout = 0")  # every collision is a "database is locked"
    for i in range(int(sys.argv[3])):
        a = led.add_approval(ref=f"{sys.argv[2]}-{i}", approver="A", path="/x",
                             fingerprint="sha256:0")
        led.revoke_approval(a, "B")
        led.approvals()
"""


def test_processes_writing_at_once_all_get_through(delivery: Path, ledger_path: Path) -> None:
    Ledger(ledger_path).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ledger_path), f"W{n}", "15"],
                                env=env, stderr=subprocess.PIPE, text=True) for n in range(3)]
    records = run_json("scan", delivery)
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    assert len(records) == 7
    with Ledger(ledger_path) as led:
        approvals = led.approvals()
        assert len(approvals) == 45 and all(a.revoked for a in approvals)
    code, out = verify()
    assert code == 0 and "45 approvals, 45 updates" in out, out


def test_verify_reports_what_is_sealed(delivery: Path) -> None:
    run_json("scan", delivery)
    code, out = verify()
    assert code == 0 and "7 decisions, chain intact" in out and "sealed (key " in out


def test_the_policy_names_the_seal_key_and_keeps_it_out_of_the_roots(tmp_path: Path) -> None:
    """`seal_key` in the policy: the key is made there (0600), not beside the ledger; a key
    inside a root (a delivery share) is refused."""
    from provgate.policy import DEFAULT_POLICY

    delivery = tmp_path / "delivery" / "final"
    delivery.mkdir(parents=True)
    shutil.copy2(SAMPLES / "unknown_camera.jpg", delivery / "plate.jpg")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    policy = tmp_path / "policy.toml"
    base = DEFAULT_POLICY.read_text().replace('# roots = ["/srv/delivery"]',
                                              f'roots = ["{tmp_path / "delivery"}"]')
    policy.write_text(base.replace("version = 1",
                                   f'version = 1\nseal_key = "{keys / "ledger.key"}"'))
    assert run("check", delivery, "--policy", policy).exit_code == 0
    assert (keys / "ledger.key").exists() and (keys / "ledger.key").stat().st_mode & 0o077 == 0
    inside = policy.read_text().replace(str(keys / "ledger.key"),
                                        str(tmp_path / "delivery" / "ledger.key"))
    policy.write_text(inside)
    other = tmp_path / "state" / "other.db"
    refused = run("check", delivery, "--policy", policy, "--ledger", other)
    assert refused.exit_code != 0 and not (tmp_path / "delivery" / "ledger.key").exists()


def test_a_key_planted_by_another_user_is_refused(delivery: Path, ledger_path: Path) -> None:
    """A key made before provgate's by someone else (a shared folder): its maker could forge
    the ledger with it, so it is never used."""
    import secrets

    key = Path(str(ledger_path) + ".key")
    key.write_text(secrets.token_bytes(32).hex() + "\n")
    os.chmod(key, 0o600)
    os.chown(key, 65534, 65534)
    result = run("scan", delivery)
    assert result.exit_code == 3 and "belongs to uid 65534" in result.stderr


def test_an_update_row_edited_into_nonsense_is_reported_not_a_crash(delivery: Path,
                                                                    ledger_path: Path) -> None:
    run_json("scan", delivery, "--mode", "enforce")
    with sqlite3.connect(ledger_path) as db:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'updates'").fetchall():
            db.execute(f"DROP TRIGGER [{trigger}]")
        db.execute("UPDATE updates SET fields = '[1]'")
    result = run("ledger", "verify")
    assert result.exit_code == 1 and "Traceback" not in result.output
