"""The disclosure report of a delivery, for the producer who signs it (issue 15): the default
report is the latest delivery's; its sections hold the right files of a sample delivery with a
GenAI register (declared and undeclared AI, a use metadata cannot see, a talent use without
consent, an approved final use, a damaged file); the approve commands it prints clear them;
approvals made from a register entry, with a category and a scope; the same sections in JSON
and CSV; the page printed to PDF and shot as a PNG by headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLES, need_tool, report_json, run
from provgate import data, register
from provgate.assets import matches
from provgate.report import SECTIONS

HEADER = ("id,files,tool,version,purpose,category,environment,trains_on_inputs,stage,"
          "consent_ref,approval_ref\n")
ROWS = (
    "G-1,final/vfx/sh010_key.jpg,Adobe Firefly,Image 3,generated key art,creative_output,"
    "enterprise,no,final,,NFX-0042\n"
    "G-2,sh020,Runway,Gen-3,sky replacement,creative_output,enterprise,no,final,,NFX-0043\n"
    "G-3,sh040,ElevenLabs,v2,voice clone of the lead,talent_performance,enterprise,no,final,,\n"
    "G-4,sh050,ChatGPT,4o,reference look,creative_output,consumer,yes,temp,,\n"
)
FILES = (("ai_iptc_generated.jpg", "sh010_key.jpg"),      # declared, detected, approved
         ("unknown_camera.jpg", "sh020_comp.jpg"),        # declared, invisible to metadata
         ("ai_genfill_composite.jpg", "sh030_comp.jpg"),  # detected, not declared
         ("human_capture.jpg", "sh040_plate.jpg"),        # talent use without consent
         ("unknown_camera.jpg", "sh050_plate.jpg"),       # consumer tool that trains
         ("unreadable_corrupt.jpg", "sh060_broken.jpg"),  # cannot be judged
         ("human_capture.jpg", "sh070_clean.jpg"))        # nothing to say
TITLES = [title for _, title in SECTIONS]


_report = report_json


def _section(doc: dict, key: str) -> dict[str, dict]:
    items = next(s for s in doc["sections"] if s["id"] == key)["items"]
    return {Path(i["path"]).name: i for i in items}


def _episode(tmp_path: Path) -> Path:
    root = tmp_path / "EP101"
    (root / "final" / "vfx").mkdir(parents=True)
    for src, name in FILES:
        shutil.copy2(SAMPLES / src, root / "final" / "vfx" / name)
    (root / "GENAI-DISCLOSURE.csv").write_text(HEADER + ROWS)
    return root


@pytest.fixture
def checked(tmp_path: Path) -> Path:
    """EP101 checked in enforce mode, its final use G-1 approved from the register first."""
    root = _episode(tmp_path)
    made = run("approve", "--entry", "G-1", "--register", root / "GENAI-DISCLOSURE.csv",
               "--by", "Jo Producer", "--expires", "2099-12-31")
    assert made.exit_code == 0, made.output
    result = run("check", root, "--delivery", "EP101", "--show", "The Long Night",
                 "--episode", "101", "--mode", "enforce")
    assert result.exit_code == 1, result.stderr
    return root


def test_each_section_holds_the_right_files(checked: Path) -> None:
    doc = _report()  # the default: the latest delivery
    b = doc["banner"]
    assert (b["delivery"], b["show"], b["episode"], b["verdict"]) == (
        "EP101", "The Long Night", "101", "FAILED")
    assert b["register"] is True
    assert b["counts"]["files"] == 7 and b["counts"]["block"] == 1
    assert [s["title"] for s in doc["sections"]] == TITLES

    needs = _section(doc, "needs_approval")
    assert set(needs) == {"sh020_comp.jpg", "sh030_comp.jpg", "sh040_plate.jpg",
                          "sh050_plate.jpg", "sh060_broken.jpg"}
    assert needs["sh020_comp.jpg"]["entry"] == "G-2"
    assert needs["sh020_comp.jpg"]["command"].startswith(
        "provgate approve --entry G-2 --delivery EP101 --by NAME")  # the entry's ref
    assert "--ref STUDIO-REF" in needs["sh050_plate.jpg"]["command"]  # G-4 names none
    fill = needs["sh030_comp.jpg"]["command"]
    assert shlex.split(fill)[2:5] == [str(checked / "final" / "vfx" / "sh030_comp.jpg"),
                                      "--fingerprint", needs["sh030_comp.jpg"]["command"]
                                      .split("--fingerprint ")[1].split()[0]]
    assert b["counts"]["needs_approval"] == 5

    approved = _section(doc, "approved")
    assert set(approved) == {"sh010_key.jpg"}
    key = approved["sh010_key.jpg"]
    assert (key["ref"], key["approver"], key["category"], key["scope"]) == (
        "NFX-0042", "Jo Producer", "creative_output", "any")
    assert key["expires"].startswith("2099-12-31T23:59:59")

    disclosed = _section(doc, "disclosed")
    assert {n: i["status"] for n, i in disclosed.items()} == {
        "sh010_key.jpg": "disclosed", "sh020_comp.jpg": "declared_only",
        "sh040_plate.jpg": "declared_only", "sh050_plate.jpg": "declared_only"}
    voice = disclosed["sh040_plate.jpg"]["entries"][0]
    assert voice["category"] == "talent_performance" and voice["consent_ref"] is None

    assert set(_section(doc, "undisclosed")) == {"sh030_comp.jpg"}
    blocked = _section(doc, "blocked")
    assert set(blocked) == {"sh040_plate.jpg"}
    assert blocked["sh040_plate.jpg"]["quarantine_state"] == "done"
    assert Path(blocked["sh040_plate.jpg"]["quarantined_path"]).is_file()
    assert set(_section(doc, "integrity")) == {"sh060_broken.jpg"}
    assert "sh070_clean.jpg" in {Path(f["path"]).name for f in doc["files"]}


def test_the_printed_commands_clear_the_files_in_that_delivery_only(checked: Path) -> None:
    """Each command of "Needs written approval" run as printed (placeholders filled in):
    the delivery then passes; a check of the same files under another delivery's name does
    not, since approvals made from the entries are scoped to EP101."""
    for item in _section(_report(), "needs_approval").values():
        args = shlex.split(item["command"].replace("STUDIO-REF", "NFX-0099")
                           .replace("--by NAME", "--by 'Jo Producer'"))
        assert args[:2] == ["provgate", "approve"]
        made = run(*args[1:])
        assert made.exit_code == 0, made.output
    again = run("check", checked, "--delivery", "EP101")
    assert again.exit_code == 0, again.stderr
    doc = _report()
    assert doc["banner"]["verdict"] == "passed" and not _section(doc, "needs_approval")
    approved = _section(doc, "approved")
    assert approved["sh020_comp.jpg"]["scope"] == "delivery EP101"
    assert approved["sh020_comp.jpg"]["ref"] == "NFX-0043"  # the register's reference
    assert approved["sh020_comp.jpg"]["category"] == "creative_output"
    elsewhere = run("check", checked, "--delivery", "EP102")
    assert elsewhere.exit_code == 1
    assert "sh020_comp.jpg" in elsewhere.stderr and "sh030_comp.jpg" not in elsewhere.stderr
    assert run("ledger", "verify").exit_code == 0


def test_the_default_report_is_the_latest_delivery_and_filters_reach_the_ledger(
        checked: Path, tmp_path: Path) -> None:
    other = tmp_path / "EP102" / "final"
    other.mkdir(parents=True)
    shutil.copy2(SAMPLES / "human_capture.jpg", other / "plate.jpg")
    assert run("check", other.parent, "--delivery", "EP102").exit_code == 0
    latest = _report()
    assert latest["banner"]["delivery"] == "EP102" and latest["totals"]["files"] == 1
    assert _report("--delivery", "EP101")["banner"]["verdict"] == "FAILED"
    for wide in (["--all"], ["--zone", "final"], ["--since", "2000-01-01"]):
        doc = _report(*wide)
        assert "sections" not in doc and doc["report"]["delivery"] is None
        assert doc["totals"]["files"] == 8, wide
    assert run("report", "--all", "--delivery", "EP101").exit_code == 2
    assert "latest delivery" in run("report", "--help").stdout


def test_without_a_delivery_the_report_is_ledger_wide_and_says_so(tmp_path: Path) -> None:
    root = _episode(tmp_path)
    assert run("scan", root).exit_code == 0
    result = run("report", "--json")
    assert result.exit_code == 0 and "no delivery has been checked" in result.stderr
    doc = json.loads(result.stdout)
    data.validate(doc, "report", "report")
    assert "no delivery has been checked" in doc["report"]["note"]
    assert "sections" not in doc
    assert doc["totals"]["files"] == 8  # a scan reads no register: it is judged as a file


def test_csv_carries_the_same_sections(checked: Path) -> None:
    doc = _report()
    rows = list(csv.DictReader(io.StringIO(run("report", "--csv").stdout)))
    want = [(s["id"], Path(i["path"]).name) for s in doc["sections"] for i in s["items"]]
    want += [("evidence", Path(f["path"]).name) for f in doc["files"]]
    assert [(r["section"], Path(r["path"]).name) for r in rows] == want
    fill = next(r for r in rows if r["section"] == "needs_approval"
                and r["path"].endswith("sh030_comp.jpg"))
    assert fill["command"].startswith("provgate approve ") and fill["fingerprint"]
    key = next(r for r in rows if r["section"] == "approved")
    assert (key["approval_ref"], key["approver"], key["category"]) == (
        "NFX-0042", "Jo Producer", "creative_output")
    assert next(r for r in rows if r["section"] == "disclosed")["entries"] == "G-1"


def test_the_page_prints_to_pdf_in_headless_chromium(checked: Path, tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page, pdf = tmp_path / "EP101-disclosure.html", tmp_path / "EP101-disclosure.pdf"
    assert run("report", "-o", page).exit_code == 0
    source = page.read_text(encoding="utf-8")
    assert "@media print" in source and "break-inside: avoid" in source
    for title in TITLES:
        assert f"{title} <span" in source, title
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-pdf-header-footer", "--generate-pdf-document-outline",
                    f"--print-to-pdf={pdf}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    raw = pdf.read_bytes()
    assert raw.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page(?![s\w])", raw)) >= 1
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "EP101" in text and "FAILED" in text
    else:  # the outline Chromium makes from the headings: every section made it to paper
        text = raw.decode("latin-1")
    for title in TITLES:
        assert title in text, title


def test_the_page_renders_as_a_screenshot(checked: Path, tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page, shot = tmp_path / "r.html", tmp_path / "r.png"
    assert run("report", "-o", page).exit_code == 0
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,1600",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert struct.unpack(">II", png[16:24]) == (1280, 1600)  # IHDR: width, height


def test_hostile_names_are_text_on_the_delivery_page(tmp_path: Path) -> None:
    """A delivery, show and file named with markup stay text, and the page runs nothing."""
    chromium = need_tool("chromium")
    attack = "<img src=x onerror=\"document.title='PWNED'\">"
    root = _episode(tmp_path)
    shutil.copy2(SAMPLES / "ai_genfill_composite.jpg", root / "final" / f"{attack}.jpg")
    run("check", root, "--delivery", attack, "--show", attack)
    page = tmp_path / "r.html"
    assert run("report", "-o", page).exit_code == 0
    source = page.read_text(encoding="utf-8")
    assert attack not in source and "&lt;img src=x onerror=&quot;" in source
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.startswith("Generative AI disclosure: &lt;img")  # not set to 'PWNED'
    assert not re.search(r"<img[^>]*onerror", dom)


# -- approvals from a register entry, categories and scopes ----------------------------------

def test_an_entry_approval_covers_what_the_entry_covers(tmp_path: Path) -> None:
    root = _episode(tmp_path)
    (root / "final" / "sh020").mkdir()
    shutil.copy2(SAMPLES / "unknown_camera.jpg", root / "final" / "sh020" / "bg.jpg")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", root / "final" / "sh0200_comp.jpg")
    reg = register.load(root / "GENAI-DISCLOSURE.csv")
    files = [str(p) for p in root.rglob("*.jpg")]
    for entry in reg.entries:
        glob = register.approval_glob(entry, reg.root)
        assert [f for f in files if matches(f, [glob], case_sensitive=True)] == \
            [f for f in files if entry in reg.entries_for(f)], entry.id


def test_approve_from_an_entry_is_refused_when_it_cannot_be_exact(tmp_path: Path) -> None:
    root = _episode(tmp_path)
    reg = root / "GENAI-DISCLOSURE.csv"
    wrong_ref = run("approve", "--entry", "G-1", "--register", reg, "--ref", "NFX-9",
                    "--by", "Jo")
    assert wrong_ref.exit_code == 2 and "names approval NFX-0042" in wrong_ref.output
    no_ref = run("approve", "--entry", "G-4", "--register", reg, "--by", "Jo")
    assert no_ref.exit_code == 2 and "--ref" in no_ref.output
    nowhere = run("approve", "--entry", "G-1", "--by", "Jo")
    assert nowhere.exit_code == 2 and "--register FILE" in nowhere.output
    unknown = run("approve", "--entry", "G-9", "--register", reg, "--by", "Jo")
    assert unknown.exit_code == 2 and "no entry 'G-9'" in unknown.output
    assert run("approve", "--entry", "G-1", "--register", reg, "--category", "data_use",
               "--by", "Jo").exit_code == 2
    assert run("approve", root / "final" / "vfx" / "sh030_comp.jpg", "--ref", "NFX-1",
               "--by", "Jo", "--category", "creative").exit_code == 2
    changed = run("approve", root / "final" / "vfx" / "sh030_comp.jpg", "--ref", "NFX-1",
                  "--by", "Jo", "--fingerprint", "sha256:" + "0" * 64)
    assert changed.exit_code == 2 and "check it again" in changed.output
    assert json.loads(run("approvals", "--json").stdout) == []
    # the register the delivery's check read, found again through the delivery
    run("check", root, "--delivery", "EP101")
    made = run("approve", "--entry", "G-2", "--delivery", "EP101", "--by", "Jo")
    assert made.exit_code == 0 and "only in checks of delivery EP101" in made.output
    reg.write_text(HEADER + ROWS.replace("sky replacement", "sky and set extension"))
    later = run("approve", "--entry", "G-2", "--delivery", "EP101", "--by", "Jo")
    assert later.exit_code == 2 and "changed since delivery" in later.output


def test_a_show_scoped_approval_clears_only_that_shows_checks(tmp_path: Path) -> None:
    root = _episode(tmp_path)
    fill = root / "final" / "vfx" / "sh030_comp.jpg"
    made = run("approve", fill, "--ref", "NFX-7", "--by", "Jo", "--show", "The Long Night",
               "--category", "creative_output")
    assert made.exit_code == 0 and "category creative_output" in made.output
    assert "sh030_comp.jpg" in run("check", root).stderr  # no show known: held
    assert "sh030_comp.jpg" not in run("check", root, "--show", "The Long Night").stderr
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(data.PACKAGE_DIR / "default_policy.toml").read_text()
                      + '\n[delivery]\nshow = "The Long Night"\nepisode = "101"\n')
    by_policy = run("check", root, "--policy", policy, "--delivery", "EP101-v2")
    assert "sh030_comp.jpg" not in by_policy.stderr
    record = json.loads(run("deliveries", "--json", "--name", "EP101-v2").stdout)[0]
    assert (record["show"], record["episode"]) == ("The Long Night", "101")
    shown = json.loads(run("approvals", "--json").stdout)[0]
    assert (shown["show"], shown["category"], shown["delivery"]) == (
        "The Long Night", "creative_output", None)


# -- the approvals chain with its new fields ----------------------------------------------------

def test_the_new_approval_fields_are_sealed(checked: Path, ledger_path: Path) -> None:
    with sqlite3.connect(ledger_path) as db:
        db.execute("DROP TRIGGER approvals_no_update")
        db.execute("UPDATE approvals SET category = 'data_use' WHERE id = 1")
    verify = run("ledger", "verify")
    assert verify.exit_code == 1 and "approval 1 was changed" in verify.output


def test_a_ledger_from_before_the_new_fields_opens_and_verifies(
        tmp_path: Path, ledger_path: Path) -> None:
    """Approvals and deliveries written before category, scope and show existed (their
    columns absent) keep their hashes: read-only reads work, and the first write adds the
    columns and their guard without breaking a seal; the old approval still clears."""
    root = _episode(tmp_path)
    (root / "GENAI-DISCLOSURE.csv").unlink()  # nothing then recorded a register
    fill = root / "final" / "vfx" / "sh030_comp.jpg"
    assert run("approve", fill, "--ref", "NFX-1", "--by", "Jo").exit_code == 0
    run("check", root, "--delivery", "EP101")
    with sqlite3.connect(ledger_path) as db:
        for table, cols in (("approvals", ("category", "show", "episode", "delivery",
                                           "entry")),
                            ("deliveries", ("show", "episode", "register",
                                            "register_root"))):
            db.execute(f"DROP TRIGGER {table}_no_update")
            for c in cols:
                db.execute(f"ALTER TABLE {table} DROP COLUMN {c}")
    assert run("ledger", "verify").exit_code == 0
    doc = _report("--delivery", "EP101")  # read-only: the columns are not there
    assert doc["banner"]["show"] is None
    assert _section(doc, "approved")["sh030_comp.jpg"]["ref"] == "NFX-1"
    assert run("approvals").exit_code == 0  # a writable open: the columns come back
    with sqlite3.connect(ledger_path) as db:
        cols = {r[1] for r in db.execute("PRAGMA table_info(approvals)")}
        guard = db.execute("SELECT sql FROM sqlite_master WHERE name = "
                           "'approvals_no_update'").fetchone()[0]
    assert {"category", "delivery"} <= cols and "[category]" in guard
    assert run("ledger", "verify").exit_code == 0
    again = run("check", root, "--delivery", "EP101")
    assert again.exit_code == 1 and "sh030_comp.jpg" not in again.stderr
    assert run("ledger", "verify").exit_code == 0
