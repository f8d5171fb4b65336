"""Deliveries as records: every check of a delivery is chained and sealed in the ledger with
each file's decision and the verdict; a re-check says what changed since the last one."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from conftest import SAMPLES, run


def _episode(tmp_path: Path) -> Path:
    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True)
    for name in ("unknown_camera.jpg", "human_capture.jpg"):
        shutil.copy2(SAMPLES / name, final / name)
    return final


def test_a_check_records_the_delivery_and_a_recheck_says_what_changed(tmp_path: Path) -> None:
    final = _episode(tmp_path)
    first = run("check", final.parent, "--delivery", "EP101 v1")
    assert first.exit_code == 0 and "delivery 'EP101 v1' recorded as #1" in first.stderr
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", final / "key_art.jpg")  # a late swap
    (final / "human_capture.jpg").unlink()
    second = run("check", final.parent, "--delivery", "EP101 v1")
    assert second.exit_code == 1
    assert "since delivery #1: 0 changed, 1 new, 1 gone" in second.stderr
    rows = json.loads(run("deliveries", "--json").stdout)
    assert [(r["id"], r["verdict"], r["files"], r["held"]) for r in rows] == [
        (1, "passed", 2, 0), (2, "FAILED", 2, 1)]
    assert rows[1]["decisions"][str(final / "key_art.jpg")]["action"] == "block"
    assert rows[1]["decisions_head"] and rows[1]["policy_digest"]
    assert run("ledger", "verify").exit_code == 0


def test_the_default_name_is_the_delivery_folder(tmp_path: Path) -> None:
    final = _episode(tmp_path)
    assert "delivery 'EP101' recorded" in run("check", final.parent).stderr
    assert "delivery 'final' recorded" in run("check", final).stderr


def test_a_delivery_record_edited_by_hand_breaks_the_chain(tmp_path: Path,
                                                           ledger_path: Path) -> None:
    final = _episode(tmp_path)
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", final / "key_art.jpg")
    assert run("check", final).exit_code == 1
    with sqlite3.connect(ledger_path) as db:  # "it passed", says someone with the file
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'deliveries'").fetchall():
            db.execute(f"DROP TRIGGER [{trigger}]")  # the append-only guard is no obstacle
        db.execute("UPDATE deliveries SET verdict = 'passed', held = 0")
    assert run("ledger", "verify").exit_code == 1
    assert json.loads(run("deliveries", "--json").stdout) == []  # never shown as true


def test_the_report_of_a_delivery_is_what_its_check_decided(tmp_path: Path) -> None:
    """Re-checking one subfolder, or another delivery, changes nothing in a delivery's
    report: it shows the decisions its own check made."""
    from provgate import data

    final = _episode(tmp_path)
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", final / "key_art.jpg")
    assert run("check", final.parent, "--delivery", "EP101").exit_code == 1
    other = tmp_path / "EP102" / "final"
    other.mkdir(parents=True)
    shutil.copy2(SAMPLES / "ai_genfill_composite.jpg", other / "comp.jpg")
    run("check", other.parent, "--delivery", "EP102")
    run("check", final, "--zone", "working")  # a subfolder, re-checked under another zone
    doc = json.loads(run("report", "--delivery", "EP101", "--json").stdout)
    data.validate(doc, "report", "report")
    assert doc["report"]["delivery"]["name"] == "EP101"
    assert doc["report"]["delivery"]["verdict"] == "FAILED"
    by = {Path(f["path"]).name: f for f in doc["files"]}
    assert set(by) == {"unknown_camera.jpg", "human_capture.jpg", "key_art.jpg"}
    assert by["key_art.jpg"]["zone"] == "final" and by["key_art.jpg"]["action"] == "block"
    html = run("report", "--delivery", "EP101").stdout
    assert "EP101 (#1)" in html and "FAILED" in html
    assert run("report", "--delivery", "EP999").exit_code == 2
