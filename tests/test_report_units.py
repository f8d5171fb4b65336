"""The disclosure report groups what a facility delivers: the frames of an image sequence as
one row, the files of an IMF package under one package row (sample_media/film, checked as a
`final` delivery); JSON and CSV keep every file and name its unit. The report and the gate
carry the ledger's chain head at their moment."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLES, need_tool, report_json, run

FILM = SAMPLES / "film"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def final(tmp_path: Path) -> Path:
    """The film samples as a delivery folder named final, checked (it fails: AI frames)."""
    root = tmp_path / "final"
    shutil.copytree(FILM, root)
    hostile = root / "hostile"
    hostile.mkdir()
    for n in (1001, 1002):  # a sequence whose name is markup
        shutil.copy2(root / "comp_exr" / f"sh020_comp.{n}.exr", hostile / f"{HOSTILE}.{n}.exr")
    result = run("check", root)
    assert result.exit_code == 1, result.stderr
    return root


def _report(*args: object) -> dict:
    return report_json("--delivery", "final", *args)


def _checkpoint_head() -> dict:
    result = run("ledger", "checkpoint")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["chains"]["decisions"]


def test_sequences_and_packages_are_units_and_every_file_names_its_own(final: Path) -> None:
    doc = _report()
    units = {u["path"]: u for u in doc["units"]}
    plate = units[str(final / "plate_exr" / "sh010_plate.####.exr")]
    assert (plate["unit"], plate["kind"], plate["action"], plate["held_frames"]) == (
        "sequence", "ai_generated", "block", "1007")
    assert plate["frames"] == {"first": 1001, "last": 1012, "count": 12, "missing": 0,
                               "gaps": None}
    assert "ai_generated: frame 1007 (1 of 12)" in plate["evidence"]
    scan = units[str(final / "scan_dpx" / "sc01_scan_#######.dpx")]
    assert (scan["action"], scan["held_frames"], scan["frames"]["first"]) == (
        "allow", None, 86400)
    imf = units[str(final / "imf" / "SHOW_EP101_IMF")]
    assert (imf["unit"], imf["files"], imf["kind"], imf["action"]) == (
        "package", 6, "ai_generated", "block")
    assert imf["held_files"] == ["VIDEO_e1833c1a-e37b-5ce0-9678-f20ea719f384.mxf"]
    assert len(units) == 6  # three sequences and the hostile one, two packages

    files = {f["path"]: f for f in doc["files"]}
    assert len(files) == 44 and doc["totals"]["files"] == 44  # every file keeps its entry
    for path, f in files.items():
        if "/plate_exr/" in path:
            assert f["unit"] == plate["path"]
        elif "/SHOW_EP101_IMF/" in path:
            assert f["unit"] == imf["path"]  # the paperwork too
        elif "/audio/" in path or "/editorial/" in path:
            assert f["unit"] is None
    assert {f["unit"] for f in files.values()} - {None} == set(units)

    blocked = next(s for s in doc["sections"] if s["id"] == "blocked")["items"]
    assert {i["unit"] for i in blocked if i["unit"]} == {
        plate["path"], str(final / "comp_exr" / "sh020_comp.####.exr"), imf["path"]}
    frame = next(i for i in blocked if i["unit"] == plate["path"])
    assert frame["path"].endswith("sh010_plate.1007.exr")  # items stay per file

    rows = list(csv.DictReader(io.StringIO(
        run("report", "--delivery", "final", "--csv").stdout)))
    evidence = [r for r in rows if r["section"] == "evidence"]
    assert len(evidence) == 44
    assert {r["unit"] for r in evidence if "/plate_exr/" in r["path"]} == {plate["path"]}


def test_the_page_shows_a_unit_as_one_row_its_files_collapsed(final: Path,
                                                             tmp_path: Path) -> None:
    chromium = need_tool("chromium")
    page = tmp_path / "final.html"
    assert run("report", "--delivery", "final", "-o", page).exit_code == 0
    source = page.read_text(encoding="utf-8")
    assert "<script" not in source and HOSTILE not in source
    assert "&lt;img src=x onerror=alert(1)&gt;.####.exr" in source

    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert not re.search(r"<img[^>]*onerror", dom)
    assert re.search(r"<title>Generative AI disclosure: final</title>", dom)
    plate = str(final / "plate_exr" / "sh010_plate.####.exr")
    blocked = dom.split('id="blocked"')[1].split('id="integrity"')[0]
    # the sequence is one row in the section, its held frame listed under it, collapsed
    assert blocked.count(f'<td class="path">{plate}</td>') == 1
    row = blocked.split(f'<td class="path">{plate}</td>')[1].split("</details>")[0]
    for fact in ("frames 1001-1012 (12 frames)", "held frames: 1007", "kind ai_generated",
                 "action block", "ai_generated: frame 1007 (1 of 12)"):
        assert fact in row, fact
    assert '<details class="members"><summary>1 frame here: 1007</summary>' in row
    assert "sh010_plate.1007.exr" in row
    assert f'<td class="path">{final / "imf" / "SHOW_EP101_IMF"}</td>' in blocked
    # the evidence: one block per unit, its frames inside it, closed
    evidence = dom.split('id="evidence"')[1]
    assert evidence.count(f'data-unit="{plate}"') == 1
    block = evidence.split(f'data-unit="{plate}"')[1].split('data-unit="')[0]
    assert len(re.findall(r'<details class="file \w+" data-id="\d+"', block)) == 12
    assert not re.search(r'<details class="file [^"]*" data-id="[^"]*" open', block)
    assert "sh030_dialogue.wav" in evidence  # a file of no unit is shown as before


def test_the_gate_and_the_report_carry_the_chain_head_of_their_moment(
        tmp_path: Path) -> None:
    root = tmp_path / "final"
    shutil.copytree(FILM / "plate_exr", root)
    checked = run("check", root, "--json")
    head = _checkpoint_head()
    assert checked.exit_code == 1
    assert len(json.loads(checked.stdout)) == 1  # stdout is still the array of records
    assert checked.stderr.strip().splitlines()[-1].endswith(
        f"; gate FAILED; ledger head: decisions #{head['count']} {head['head'][:16]}")

    doc = _report()
    assert doc["banner"]["ledger_head"] == head == doc["report"]["ledger_heads"]["decisions"]
    recorded = json.loads(run("deliveries", "--json").stdout)[-1]["decisions_head"]
    assert doc["banner"]["decisions_head"] == recorded == head["head"]

    # more decisions since: the report says where the ledger is now, the delivery where it was
    other = tmp_path / "other"
    shutil.copytree(FILM / "audio", other)
    assert run("scan", other).exit_code == 0
    later = _report()
    now = _checkpoint_head()
    assert later["banner"]["ledger_head"] == now and now["count"] == head["count"] + 2
    assert later["banner"]["decisions_head"] == recorded
    page = tmp_path / "r.html"
    assert run("report", "--delivery", "final", "-o", page).exit_code == 0
    banner = page.read_text(encoding="utf-8").split('id="heads"')[1].split("</p>")[0]
    assert f"decisions #{now['count']} <code>{now['head']}</code>" in banner
    assert f"<code>{recorded}</code>" in banner


def test_a_held_sequence_row_gives_the_command_that_approves_it_whole(final: Path) -> None:
    page = run("report", "--delivery", "final").stdout
    pattern = str(final / "plate_exr" / "sh010_plate.####.exr")
    commands = [c.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")
                for c in re.findall(r"To approve the whole sequence[^<]*<code class="
                                    r"\"command\">([^<]*)</code>", page)]
    (command,) = [c for c in commands if c.startswith(
        f"provgate approve '{pattern}' --fingerprint sha256:")]
    import shlex

    args = shlex.split(command)[2:]
    assert run("approve", *args).exit_code == 0
    assert run("check", final / "plate_exr").exit_code == 0  # the approved shot now passes
