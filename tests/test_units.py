"""Sequences and packages as the units check and scan speak in (real ExifTool, real ledger).

The film delivery is sample_media/film (made by sample_media/make_film_samples.py): an EXR
plate with one generated frame spliced in, an EXR comp with a generator record in one frame's
header, a DPX scan, and two IMF packages, one with a track file altered after packing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import jsonschema
import pytest

from conftest import run, run_json
from provgate import data

FILM = Path(__file__).resolve().parent.parent / "sample_media" / "film"


@pytest.fixture
def final(tmp_path: Path) -> Path:
    if not FILM.is_dir():
        pytest.skip("sample_media/film is made by `make samples`")
    dest = tmp_path / "delivery" / "final"
    shutil.copytree(FILM, dest)
    return dest


def _by_path(records: list[dict], final: Path) -> dict[str, dict]:
    return {str(Path(r["path"]).relative_to(final)): r for r in records}


def test_check_speaks_in_sequences_and_packages(final: Path, ledger_path: Path) -> None:
    result = run("check", str(final), "--json")
    assert result.exit_code == 1, result.stderr
    shown = _by_path(json.loads(result.stdout), final)
    plate = shown["plate_exr/sh010_plate.####.exr"]
    assert plate["unit"] == "sequence" and plate["kind"] == "ai_generated"
    assert plate["action"] == "block" and plate["held_frames"] == "1007"
    assert plate["frames"] == {"first": 1001, "last": 1012, "count": 12, "missing": 0,
                               "gaps": None}
    assert any("frame 1007" in line for line in plate["evidence"])
    comp = shown["comp_exr/sh020_comp.####.exr"]
    assert comp["held_frames"] == "1004" and comp["kind"] == "ai_generated"
    scan = shown["scan_dpx/sc01_scan_#######.dpx"]
    assert scan["action"] == "allow" and scan["frames"]["count"] == 6
    assert not any("sh010_plate.1001" in p for p in shown)  # no frame lines
    # the package with a track file altered after packing is held for its integrity
    tampered = shown["imf/SHOW_EP102_IMF_TAMPERED"]
    assert tampered["unit"] == "imf" and tampered["action"] in ("escalate", "block")
    assert any("packing list" in p for p in tampered["problems"])
    good = shown["imf/SHOW_EP101_IMF"]
    assert good["problems"] == [] and good["compositions"]
    schema = data.schema("unit")
    for rec in shown.values():
        if "unit" in rec:
            jsonschema.validate(rec, schema)
    # the ledger still keeps every frame's decision and fingerprint
    conn = sqlite3.connect(ledger_path)
    frames = conn.execute("SELECT count(*) FROM decisions WHERE path LIKE "
                          "'%sh010_plate.____.exr'").fetchone()[0]
    assert frames == 12
    assert "HELD" in result.stderr and "to clear" in result.stderr


def test_frames_option_shows_every_frame(final: Path) -> None:
    records = _by_path(run_json("scan", str(final / "plate_exr"), "--frames"), final)
    assert len(records) == 12
    assert records["plate_exr/sh010_plate.1007.exr"]["kind"] == "ai_generated"
    assert records["plate_exr/sh010_plate.1006.exr"]["kind"] != "ai_generated"


def test_a_clean_sequence_passes_and_a_changed_frame_fails_it(final: Path) -> None:
    plate = final / "plate_exr"
    (plate / "sh010_plate.1007.exr").unlink()
    result = run("check", str(plate), "--json")
    assert result.exit_code == 0, result.stderr
    (rec,) = json.loads(result.stdout)
    assert rec["frames"]["missing"] == 1 and rec["frames"]["gaps"] == "1007"
    # a generated frame spliced back in is caught on the next check
    shutil.copy(final / "comp_exr" / "sh020_comp.1004.exr", plate / "sh010_plate.1007.exr")
    again = run("check", str(plate), "--json")
    assert again.exit_code == 1
    (rec,) = json.loads(again.stdout)
    assert rec["held_frames"] == "1007" and rec["digest"] != json.loads(result.stdout)[0][
        "digest"]


def test_a_package_is_held_for_its_generated_track_file_with_its_place(final: Path) -> None:
    pkg = final / "imf" / "SHOW_EP101_IMF"
    result = run("check", str(pkg), "--json")
    (rec,) = json.loads(result.stdout)
    assert rec["problems"] == []
    # held only for its generated track file, which the record names with its place
    assert rec["action"] == "block" and any("used in" in e for e in rec["evidence"])


def test_an_approval_of_a_sequence_binds_to_its_frames(final: Path) -> None:
    plate = final / "plate_exr"
    given = run("approve", str(plate / "sh010_plate.####.exr"), "--ref", "NFX-7", "--by", "P")
    assert given.exit_code == 0, given.output
    result = run("check", str(plate), "--json")
    assert result.exit_code == 0, result.stderr
    (rec,) = json.loads(result.stdout)
    assert rec["action"] == "allow" and rec["approval"]["ref"] == "NFX-7"
    # one frame changed: the approval no longer clears the sequence
    frame = plate / "sh010_plate.1003.exr"
    frame.write_bytes(frame.read_bytes() + b"\0")
    again = run("check", str(plate), "--json")
    assert again.exit_code == 1
    (rec,) = json.loads(again.stdout)
    assert rec["action"] == "block" and rec["approval"] is None
    assert any("given for other frames" in p for p in rec["problems"])
    # a pattern with no frames behind it is refused
    assert run("approve", str(plate / "nothing.####.exr"), "--ref", "R",
               "--by", "P").exit_code == 2


def test_a_package_is_verified_from_the_read_that_fingerprinted_it(
        final: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PKL's SHA-1 is taken in the same read as the fingerprint: no file of the package
    is read a second time to check it, and an altered file is still caught."""
    from provgate import imf

    reads: list[str] = []
    real = imf.hash_file
    monkeypatch.setattr(imf, "hash_file", lambda path, *a, **k: reads.append(path)
                        or real(path, *a, **k))
    good = run("check", str(final / "imf" / "SHOW_EP101_IMF"), "--json")
    tampered = run("check", str(final / "imf" / "SHOW_EP102_IMF_TAMPERED"), "--json")
    assert reads == []
    assert json.loads(good.stdout)[0]["problems"] == []
    assert any("packing list" in p for p in json.loads(tampered.stdout)[0]["problems"])


def test_a_lone_numbered_file_keeps_its_own_record(final: Path) -> None:
    plate = final / "plate_exr"
    for frame in plate.glob("sh010_plate.10[01][0-9].exr"):
        if not frame.name.endswith((".1001.exr", ".1002.exr")):
            frame.unlink()
    shutil.copy(plate / "sh010_plate.1001.exr", plate / "sh099_ref.0007.exr")
    records = _by_path(json.loads(run("scan", str(plate), "--json").stdout), final)
    assert set(records) == {"plate_exr/sh010_plate.####.exr", "plate_exr/sh099_ref.0007.exr"}
    lone = records["plate_exr/sh099_ref.0007.exr"]
    assert "unit" not in lone and lone["c2pa"] and lone["fingerprint"].startswith("sha256:")
    assert records["plate_exr/sh010_plate.####.exr"]["frames"]["count"] == 2


def test_a_package_held_as_a_whole_is_in_its_delivery_report(final: Path) -> None:
    """No file's own decision says a package fails its PKL: the delivery record keeps the
    held unit, and the delivery's report lists it under integrity problems."""
    assert run("check", str(final / "imf"), "--delivery", "EP102").exit_code == 1
    report = json.loads(run("report", "--delivery", "EP102", "--json").stdout)
    integrity = next(s for s in report["sections"] if s["id"] == "integrity")["items"]
    tampered = [i for i in integrity if i["path"].endswith("SHOW_EP102_IMF_TAMPERED")]
    assert tampered and "packing list" in tampered[0]["problem"]
    data.validate(report, "report", "report")


def test_a_sequence_that_grew_is_cleared_by_its_new_approval(final: Path) -> None:
    plate = final / "plate_exr"
    assert run("approve", str(plate / "sh010_plate.####.exr"), "--ref", "NFX-1",
               "--by", "P").exit_code == 0
    shutil.copy(plate / "sh010_plate.1012.exr", plate / "sh010_plate.1013.exr")
    assert run("check", str(plate)).exit_code == 1  # the first approval is for 12 frames
    assert run("approve", str(plate / "sh010_plate.####.exr"), "--ref", "NFX-2",
               "--by", "P").exit_code == 0
    result = run("check", str(plate), "--json")
    assert result.exit_code == 0, result.stderr


def test_a_long_sequence_is_approved_without_a_file_count_confirmation(final: Path) -> None:
    plate = final / "plate_exr"
    for n in range(1013, 1073):  # 72 frames: more than --max-files, bound to their content
        shutil.copy(plate / "sh010_plate.1001.exr", plate / f"sh010_plate.{n}.exr")
    given = run("approve", str(plate / "sh010_plate.####.exr"), "--ref", "NFX-3", "--by", "P")
    assert given.exit_code == 0, given.output
    assert run("check", str(plate)).exit_code == 0


def test_a_file_given_with_its_folder_is_judged_once(final: Path) -> None:
    scan = final / "scan_dpx"
    result = run("check", str(scan / "sc01_scan_0086400.dpx"), str(scan), "--json")
    assert result.exit_code == 0, result.stderr
    (rec,) = json.loads(result.stdout)
    assert rec["frames"]["count"] == 6 and "6 files" in result.stderr


def test_a_held_file_holds_the_gate_whatever_was_shown_for_its_path() -> None:
    """The verdict reads every file's record: a held one counts even where the line shown
    for its path (a unit, or another record of the same path) passed."""
    from provgate.gate import Gated
    from provgate.record import Brief

    held = Brief("/d/final/a.jpg", "ai_generated", "block", "AI", None, "sha256:1", None)
    shown = Brief("/d/final/a.jpg", "unknown", "allow", "", None, "sha256:0", None)
    gated = Gated(files=[shown, held], shown=[shown])
    assert gated.held() == [held]
    unit = Brief("/d/final/a.####.exr", "unknown", "allow", "", None, None, None)
    framed = Gated(files=[held], shown=[unit], unit_of={held.path: unit.path})
    assert framed.held() == [held]
