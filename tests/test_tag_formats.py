"""`provgate tag` on formats ExifTool cannot write (WAV, MXF, DPX, EXR): the label goes into
the XMP sidecar NAME.EXT.xmp, the media bytes stay as they were, ExifTool reads the source
type back from the sidecar and the next scan sees it as the file's evidence; a file that
cannot be tagged never stops the rest of the batch. Real files from the film samples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLES, run, run_json, without_dac_override
from provgate.probe import read_tags, write_tags

DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
FILM = SAMPLES / "film"
WAV = FILM / "audio" / "sh030_dialogue.wav"
EXR = FILM / "plate_exr" / "sh010_plate.1001.exr"
DPX = FILM / "scan_dpx" / "sc01_scan_0086400.dpx"
MXF = FILM / "imf" / "SHOW_EP102_IMF_TAMPERED" / \
    "VIDEO_7aa4a68e-534b-5342-b9a4-2de219b4bb4f.mxf"


def work(tmp_path: Path, *sources: Path) -> list[Path]:
    """Copies of ``sources`` in a working (not final) folder."""
    folder = tmp_path / "show" / "work"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sources:
        shutil.copy2(src, folder / src.name)
        out.append(folder / src.name)
    return out


def source_type(path: Path) -> str | None:
    return read_tags(str(path), ["XMP-iptcExt:DigitalSourceType"]).get(
        "XMP-iptcExt:DigitalSourceType")


@pytest.mark.parametrize("sample", [WAV, EXR, DPX, MXF], ids=lambda p: p.suffix[1:])
def test_tag_writes_the_sidecar_and_the_scan_reads_it(tmp_path: Path, sample: Path) -> None:
    (f,) = work(tmp_path, sample)
    before = f.read_bytes()
    assert run_json("scan", f)[0]["kind"] == "unknown"
    out = run("tag", f, "--source-type", "trainedAlgorithmicMedia", "--tool", "ElevenLabs v2")
    assert out.exit_code == 0, out.output
    side = Path(f"{f}.xmp")
    fmt = sample.suffix[1:].upper()
    assert "in its sidecar " in out.stdout
    assert f"{side.name} (ExifTool cannot write {fmt} files)" in out.stdout
    assert "now ai_generated" in out.stdout
    assert f.read_bytes() == before
    assert source_type(side) == DST + "trainedAlgorithmicMedia"
    assert read_tags(str(side), ["XMP-iptcExt:AISystemUsed"])["XMP-iptcExt:AISystemUsed"] == \
        "ElevenLabs v2"
    assert not [p.name for p in f.parent.iterdir() if "provgate" in p.name]
    rec = run_json("scan", f)[0]
    assert rec["kind"] == "ai_generated"
    assert {(e["source"], e["tag"]) for e in rec["evidence"]} >= {
        ("sidecar", "XMP-iptcExt:DigitalSourceType"), ("sidecar", "XMP-iptcExt:AISystemUsed")}


def test_a_second_tag_updates_the_sidecar_and_keeps_what_it_says(tmp_path: Path) -> None:
    """Someone else's sidecar (a DAM's title) is updated in place; a later tag replaces the
    source type, and the scan follows it."""
    (f,) = work(tmp_path, WAV)
    side = Path(f"{f}.xmp")
    write_tags(str(side), {"XMP-dc:Title": "sc30 tk2 dialogue"}, create=True)
    assert run("tag", f, "--source-type", "trainedAlgorithmicMedia").exit_code == 0
    assert run("tag", f, "--source-type", "compositeWithTrainedAlgorithmicMedia").exit_code == 0
    got = read_tags(str(side), ["XMP-dc:Title", "XMP-iptcExt:DigitalSourceType"])
    assert got == {"SourceFile": str(side), "XMP-dc:Title": "sc30 tk2 dialogue",
                   "XMP-iptcExt:DigitalSourceType": DST + "compositeWithTrainedAlgorithmicMedia"}
    assert run_json("scan", f)[0]["kind"] == "ai_composite"
    assert not [p.name for p in f.parent.iterdir() if "provgate" in p.name]


def test_provgates_own_verdict_sidecar_is_replaced_by_the_tag(tmp_path: Path) -> None:
    """A verdict sidecar (a zone with tag = true) is output that scans never read: the tag
    replaces it with one they do."""
    (f,) = work(tmp_path, EXR)
    side = Path(f"{f}.xmp")
    write_tags(str(side), {"XMP-provgate:DecisionID": "7", "XMP-provgate:Kind": "unknown"},
               create=True)
    assert run_json("scan", f)[0]["kind"] == "unknown"
    assert run("tag", f, "--source-type", "trainedAlgorithmicMedia").exit_code == 0
    assert read_tags(str(side), ["XMP-provgate:DecisionID"]).get("XMP-provgate:DecisionID") \
        is None
    assert source_type(side) == DST + "trainedAlgorithmicMedia"
    assert run_json("scan", f)[0]["kind"] == "ai_generated"


def test_one_unwritable_file_never_stops_the_batch(tmp_path: Path) -> None:
    """Between two files it can tag: an EXR in a folder it may not write (no sidecar can be
    made), a read-only JPEG (written in place), a DPX whose sidecar name holds a JPEG. The
    others are tagged, those three reported by name with their reason, exit 3. A read-only
    WAV is tagged all the same: its sidecar is written, never its bytes."""
    wav, mxf, dpx = work(tmp_path, WAV, MXF, DPX)
    (jpg,) = work(tmp_path, SAMPLES / "unknown_camera.jpg")
    locked = tmp_path / "show" / "work" / "locked"
    locked.mkdir()
    exr = locked / EXR.name
    shutil.copy2(EXR, exr)
    readonly_wav = wav.with_name("readonly.wav")
    shutil.copy2(WAV, readonly_wav)
    taken = Path(f"{dpx}.xmp")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", taken)
    files = [wav, exr, jpg, dpx, readonly_wav, mxf]
    before = {f: f.read_bytes() for f in [*files, taken]}
    os.chmod(jpg, 0o444)
    os.chmod(readonly_wav, 0o444)
    os.chmod(locked, 0o555)
    try:
        out = subprocess.run([*without_dac_override(), sys.executable, "-m", "provgate", "tag",
                              *map(str, files), "--source-type", "trainedAlgorithmicMedia",
                              "--ledger", str(tmp_path / "state" / "ledger.db")],
                             capture_output=True, text=True, timeout=180)
    finally:
        os.chmod(locked, 0o755)
    assert out.returncode == 3, out.stderr
    for f in (wav, readonly_wav, mxf):
        assert f"tagged {f.name}" in out.stdout or f"tagged {f}" in out.stdout, out.stdout
        assert source_type(Path(f"{f}.xmp")) == DST + "trainedAlgorithmicMedia"
        assert run_json("scan", f)[0]["kind"] == "ai_generated"
    assert f"{exr.name}: cannot write its sidecar {exr.name}.xmp: permission denied" \
        in out.stderr
    assert f"{jpg.name}: the file is read-only" in out.stderr
    assert f"{dpx.name}: {taken.name} exists and is not an XMP sidecar" in out.stderr
    assert "tagged 3 of 6 files; 0 refused or missing, 3 could not be written" in out.stderr
    assert f"not written: {exr}, {jpg}, {dpx}" in out.stderr
    assert not Path(f"{exr}.xmp").exists()
    assert {f: f.read_bytes() for f in before} == before   # media (and the JPEG) untouched
    leftovers = [p.name for p in tmp_path.rglob("*") if "provgate-" in p.name]
    assert leftovers == []


def test_a_final_zone_sidecar_format_is_refused_without_force(tmp_path: Path) -> None:
    final = tmp_path / "show" / "final"
    final.mkdir(parents=True)
    f = final / WAV.name
    shutil.copy2(WAV, f)
    out = run("tag", f, "--source-type", "trainedAlgorithmicMedia")
    assert out.exit_code == 2
    assert "final zone: tagging adds a sidecar to a deliverable" in out.stderr
    assert not Path(f"{f}.xmp").exists()
    assert run("tag", f, "--source-type", "trainedAlgorithmicMedia", "--force").exit_code == 0
    assert Path(f"{f}.xmp").exists()
