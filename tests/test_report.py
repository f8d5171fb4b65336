"""`provgate report`: the disclosure built from a real ledger, checked as JSON (schema), CSV,
and as the page headless Chromium renders."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLES, need_tool, report_json, run


_report_json = report_json


@pytest.fixture
def decided(delivery: Path, tmp_path: Path) -> Path:
    """A delivery scanned in enforce mode, with approvals in every state."""
    final = delivery / "ep101" / "final"
    odd = final / "<img src=x onerror=alert(1)>.jpg"  # a name is data, never markup
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", odd)
    shutil.copy2(SAMPLES / "possible_artist_ai.jpg", final / "possible_artist_ai.jpg")
    shutil.copy2(SAMPLES / "unreadable_corrupt.jpg", final / "unreadable_corrupt.jpg")
    assert run("approve", final / "ai_genfill_composite.jpg", "--ref", "NFX-0042",
               "--by", "Jo Producer").exit_code == 0
    assert run("scan", delivery, "--mode", "enforce").exit_code == 0
    # approved after the decision: the report says so before the next scan records it
    assert run("approve", final / "possible_artist_ai.jpg", "--ref", "NFX-0043",
               "--by", "Jo Producer").exit_code == 0
    return delivery


def test_report_json_states_totals_approvals_and_quarantine(decided: Path) -> None:
    doc = _report_json()
    assert doc["report"]["chain"]["intact"] is True
    files = {Path(f["path"]).name + ("@temp" if "/temp/" in f["path"] else ""): f
             for f in doc["files"]}
    assert doc["totals"]["files"] == len(doc["files"]) == 10
    assert doc["totals"]["by_action"] == {"block": 3, "escalate": 2, "flag": 2, "allow": 3}
    assert doc["totals"]["quarantined"] == 3
    assert files["ai_genfill_composite.jpg"]["approval_state"] == "approved"
    assert files["ai_genfill_composite.jpg"]["approval"]["by"] == "Jo Producer"
    assert files["possible_artist_ai.jpg"]["approval_state"].startswith("approved since")
    assert files["unreadable_corrupt.jpg"]["approval_state"] == "awaiting written approval"
    blocked = files["ai_iptc_generated.jpg"]
    assert blocked["quarantine"]["state"] == "done"
    assert Path(blocked["quarantine"]["quarantined_path"]).is_file()
    assert blocked["thumbnail"].startswith("data:image/jpeg;base64,")
    assert "thumbnail" not in files["human_capture.jpg"]  # plain allows need none
    assert files["ai_iptc_generated.jpg@temp"]["action"] == "flag"

    # filters
    assert {f["zone"] for f in _report_json("--zone", "temp")["files"]} == {"temp"}
    only = _report_json("--path", str(decided / "ep101" / "final" / "human*"))["files"]
    assert [Path(f["path"]).name for f in only] == ["human_capture.jpg"]
    assert _report_json("--since", "2999-01-01")["totals"]["files"] == 0


def test_report_shows_the_latest_decision_per_file(decided: Path) -> None:
    final = decided / "ep101" / "final"
    assert run("revoke", "1").exit_code == 0  # NFX-0042
    doc = _report_json()
    assert {f["path"]: f for f in doc["files"]}[str(final / "ai_genfill_composite.jpg")][
        "approval_state"] == "approval revoked"
    run("scan", decided)  # records the revocation and the later approval as new decisions
    files = {f["path"]: f for f in _report_json()["files"]}
    assert files[str(final / "ai_genfill_composite.jpg")]["approval_state"] == \
        "awaiting written approval"
    assert files[str(final / "possible_artist_ai.jpg")]["approval_state"] == "approved"
    assert len(files) == 10


def test_report_csv(decided: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(run("report", "--csv").stdout)))
    assert len(rows) == 10
    row = next(r for r in rows if r["path"].endswith("final/ai_iptc_generated.jpg"))
    assert row["quarantine_state"] == "done" and row["quarantined_path"]
    assert json.loads(row["evidence"])[0]["kind"] == "ai_generated"


def test_html_report_in_headless_chromium(decided: Path, tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page = tmp_path / "disclosure.html"
    result = run("report", "-o", page)
    assert result.exit_code == 0 and "report of 10 files" in result.stderr
    source = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", source)  # opens from disk
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "Generative AI disclosure" in text
    assert "intact: 10 decisions, chain intact" in text
    assert "10 files, 3 quarantined, 1 under written approval, 0 removed or moved since." in text
    escalations = dom.split('id="escalations"')[1].split('id="blocked"')[0]
    assert "unreadable_corrupt.jpg" in escalations and "awaiting written approval" in escalations
    blocked = dom.split('id="blocked"')[1].split('id="flagged"')[0]
    assert blocked.count("<tr>") == 4  # header + 3 quarantined files
    # every thumbnail decoded (a broken one removes itself), and the odd name stayed text
    thumbs = sum(1 for f in json.loads(run("report", "--json").stdout)["files"]
                 if f.get("thumbnail"))
    assert thumbs >= 3
    assert dom.count('class="thumb"') == thumbs
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in dom


def test_broken_chain_is_reported(decided: Path, ledger_path: Path, tmp_path: Path) -> None:
    db = sqlite3.connect(ledger_path)
    db.execute("DROP TRIGGER decisions_no_update")
    db.execute("UPDATE decisions SET action = 'allow' WHERE id = 2")
    db.commit()
    db.close()
    result = run("report", "-o", tmp_path / "r.html")
    assert result.exit_code == 1 and "LEDGER CHAIN BROKEN" in result.stderr
    assert "BROKEN: row 2 was changed" in (tmp_path / "r.html").read_text()


def test_report_without_a_ledger(tmp_path: Path) -> None:
    result = run("report", "--ledger", tmp_path / "none.db")
    assert result.exit_code == 3 and "no ledger" in result.stderr


def test_csv_cells_that_look_like_formulas_are_text() -> None:
    """A vendor names a file (or writes a field) like a spreadsheet formula: the CSV report
    and `scan --csv` give it a leading ' so a spreadsheet shows it and runs nothing."""
    from provgate.output import csv_writer

    out = io.StringIO()
    writer = csv_writer(out, ("path", "reason", "size"))
    writer.writeheader()
    writer.writerow({"path": "=cmd|' /C calc'!A0", "reason": "-2+3", "size": 3})
    writer.writerow({"path": "/srv/a.jpg", "reason": "@SUM(1)", "size": 4})
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["path"] for r in rows] == ["'=cmd|' /C calc'!A0", "/srv/a.jpg"]
    assert [r["reason"] for r in rows] == ["'-2+3", "'@SUM(1)"] and rows[0]["size"] == "3"
