"""The ledger: hash chain, append-only, cache, concurrency and damaged files; real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import by_name, run, run_json
from provgate import data
from provgate.ledger import Ledger


def test_scan_records_decisions_and_verify_passes(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    ids = [r["id"] for r in records]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    result = run("ledger", "verify")
    assert result.exit_code == 0 and f"{len(records)} decisions" in result.stdout
    with Ledger(ledger_path) as led:
        row = led.decision(ids[0])
    assert row["policy_digest"] and row["tools"]["exiftool"]
    assert row["actor"] == "cli" and row["user"]


def test_unchanged_decisions_are_not_recorded_twice(delivery: Path) -> None:
    first = run_json("scan", delivery)
    second = run_json("scan", delivery)
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert all(r["cached"] for r in second)
    lines = run("ledger", "list").stdout.strip().splitlines()
    assert len(lines) == len(first)


def test_cache_notices_a_changed_file(delivery: Path) -> None:
    target = delivery / "ep101" / "final" / "unknown_camera.jpg"
    run_json("scan", delivery)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-IFD0:Software=Sora", str(target)],
                   check=True)
    rec = by_name(run_json("scan", delivery / "ep101" / "final"))["unknown_camera.jpg"]
    assert not rec["cached"] and rec["kind"] == "ai_generated" and rec["action"] == "block"


def test_tampered_row_is_caught(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    victim = records[2]["id"]
    conn = sqlite3.connect(ledger_path)
    try:
        conn.execute("UPDATE decisions SET action = 'allow' WHERE id = ?", (victim,))
        raise AssertionError("the append-only trigger should refuse updates")
    except sqlite3.DatabaseError as exc:
        assert "append-only" in str(exc)
    conn.execute("DROP TRIGGER decisions_no_update")  # a determined tamperer
    conn.execute("UPDATE decisions SET action = 'allow' WHERE id = ?", (victim,))
    conn.commit()
    conn.close()
    result = run("ledger", "verify")
    assert result.exit_code == 1
    assert f"row {victim} was changed" in result.stderr


def test_deleted_row_is_caught(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery)
    conn = sqlite3.connect(ledger_path)
    conn.execute("DROP TRIGGER decisions_no_delete")
    conn.execute("DELETE FROM decisions WHERE id = 2")
    conn.commit()
    conn.close()
    result = run("ledger", "verify")
    assert result.exit_code == 1 and "row 2 is missing" in result.stderr


def test_export_list_show(delivery: Path) -> None:
    run_json("scan", delivery)
    exported = json.loads(run("ledger", "export", "--json").stdout)
    for rec in exported:
        data.validate(rec, "decision", "export")
    assert len(exported) == 7
    blocked = json.loads(run("ledger", "list", "--action", "block", "--json").stdout)
    assert {Path(r["path"]).name for r in blocked} == {"ai_iptc_generated.jpg",
                                                       "ai_a1111_txt2img.png"}
    assert len(json.loads(run("ledger", "list", "--kind", "human", "--json").stdout)) == 1
    shown = json.loads(run("ledger", "show", str(blocked[0]["id"])).stdout)
    assert shown["hash"] == blocked[0]["hash"]
    csv_out = run("ledger", "export", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("id,path,kind") and len(csv_out) == 8
    assert run("ledger", "show", "9999").exit_code == 2  # an unknown id is a usage error


def test_ledger_that_is_not_a_database(tmp_path: Path, samples: Path) -> None:
    bogus = tmp_path / "notdb.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    result = run("scan", samples, "--ledger", bogus)
    assert result.exit_code == 3 and "cannot open the ledger" in result.output
    assert run("ledger", "verify", "--ledger", tmp_path / "missing.db").exit_code == 3


def test_read_only_ledger(tmp_path: Path, samples: Path) -> None:
    """A ledger the user may read but not write: exit 3 with a message, and nothing moved."""
    import shutil
    import tempfile

    import pytest
    base = Path(tempfile.mkdtemp(prefix="provgate-ro-"))
    led = base / "l.db"
    assert run("scan", samples, "--ledger", led).exit_code == 0
    os.chmod(led, 0o444)
    os.chmod(base, 0o555)
    cmd = [str(Path(sys.executable).parent / "provgate"), "scan", str(samples), "--rescan",
           "--ledger", str(led)]
    if os.geteuid() == 0:  # root ignores permission bits: run as nobody
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to drop root")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        os.chmod(tmp_path, 0o755)
        os.chmod(samples, 0o755)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HOME": str(base)})
    os.chmod(base, 0o755)
    shutil.rmtree(base)
    if "Permission denied" in out.stderr and "provgate" in out.stderr and out.returncode == 126:
        pytest.skip("the unprivileged user cannot run this virtualenv's provgate")
    assert out.returncode == 3, out.stderr
    assert "ledger" in out.stderr and "readonly" in out.stderr.lower().replace("-", "")


def test_locked_ledger_waits_then_writes(delivery: Path, ledger_path: Path) -> None:
    run_json("scan", delivery / "ep101" / "temp")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]);"
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(2); c.rollback()",
         str(ledger_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    records = run_json("scan", delivery / "ep101" / "final")  # waits for the lock, then writes
    holder.wait()
    assert all(r["id"] for r in records)
    assert run("ledger", "verify").exit_code == 0


def test_two_scans_at_once_keep_one_chain(delivery: Path, ledger_path: Path) -> None:
    exe = [sys.executable, "-m", "provgate", "scan", "--json"]
    env = {**os.environ, "PROVGATE_LEDGER": str(ledger_path)}
    procs = [subprocess.Popen([*exe, str(delivery / "ep101" / d)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for d in ("final", "temp")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ids = sorted(r["id"] for out, _ in outs for r in json.loads(out))
    assert ids == list(range(1, 8))
    assert run("ledger", "verify").exit_code == 0


def test_departure_events_are_chained_too(delivery: Path, ledger_path: Path) -> None:
    records = run_json("scan", delivery)
    with Ledger(ledger_path) as led:
        led.record_departures([
            {"time": "2026-11-25T10:00:00+00:00", "event": "removed", "path": records[0]["path"],
             "dest": None, "fingerprint": records[0]["fingerprint"],
             "decision_id": records[0]["id"], "actor": "daemon", "user": "u"},
            {"time": "2026-11-25T10:00:01+00:00", "event": "moved", "path": records[1]["path"],
             "dest": records[1]["path"] + ".moved", "fingerprint": records[1]["fingerprint"],
             "decision_id": records[1]["id"], "actor": "daemon", "user": "u"}])
        cached = led.cached_files([records[0]["path"], records[1]["path"],
                                   records[1]["path"] + ".moved"])
    assert list(cached) == [records[1]["path"] + ".moved"]  # the cache follows the move
    assert "2 departures, chain intact" in run("ledger", "verify").stdout
    conn = sqlite3.connect(ledger_path)
    try:
        conn.execute("DELETE FROM events WHERE id = 1")
        raise AssertionError("the append-only trigger should refuse deletes")
    except sqlite3.DatabaseError as exc:
        assert "append-only" in str(exc)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET event = 'moved' WHERE id = 1")
    conn.commit()
    conn.close()
    result = run("ledger", "verify")
    assert result.exit_code == 1 and "event 1 was changed" in result.stderr


def test_relative_ledger_option_is_relative_to_the_working_folder(
        delivery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not to the policy's folder: for the built-in policy that is inside the installed
    package (a `make demo` ledger once landed in plugin/provgate/.venv/)."""
    work = tmp_path / "work"
    (work / "state").mkdir(parents=True)  # a --ledger's folder must exist
    monkeypatch.chdir(work)
    monkeypatch.delenv("PROVGATE_LEDGER")
    assert run("scan", delivery, "--ledger", "state/demo.db").exit_code == 0
    assert (work / "state" / "demo.db").is_file()
    monkeypatch.setenv("PROVGATE_QUARANTINE", "q")
    from provgate.policy import Policy
    assert Policy.load().config.quarantine_path() == work / "q"
