"""Content Credentials: every C2PA state on signed samples, offline, with and without trust."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, by_name, need_tool, run_json
from provgate.policy import DEFAULT_POLICY

C2PA_DIR = ROOT / "sample_media" / "c2pa"
C2PA_EXPECTED: dict[str, dict[str, str]] = json.loads((C2PA_DIR / "EXPECTED.json").read_text())
REALWORLD = ROOT.parent / "shared" / "realworld"
SKIP = ("--exclude", "*.json", "--exclude", "*.pem")


def trust_policy(tmp_path: Path) -> Path:
    pol = tmp_path / "trust.toml"
    pol.write_text(DEFAULT_POLICY.read_text().replace(
        "anchors = []", f'anchors = ["{C2PA_DIR / "test-ca.pem"}"]'))
    return pol


def test_every_state_without_the_test_ca() -> None:
    records = by_name(run_json("scan", C2PA_DIR, *SKIP))
    assert set(records) == set(C2PA_EXPECTED)
    got = {n: (r["kind"], r["c2pa"]) for n, r in records.items()}
    want = {n: (e["kind"], e["c2pa"]) for n, e in C2PA_EXPECTED.items()}
    assert got == want


def test_every_state_with_the_test_ca_trusted(tmp_path: Path) -> None:
    records = by_name(run_json("scan", C2PA_DIR, *SKIP, "--policy", trust_policy(tmp_path)))
    got = {n: (r["kind"], r["c2pa"]) for n, r in records.items()}
    want = {n: (e["kind"], e["c2pa_with_test_ca"]) for n, e in C2PA_EXPECTED.items()}
    assert got == want
    digests = {r["trust_digest"] for r in records.values()}
    assert len(digests) == 1 and None not in digests


def test_evidence_names_generator_signer_actions_and_codes() -> None:
    records = by_name(run_json("scan", C2PA_DIR, *SKIP))
    created = records["c2pa_ai_created.jpg"]
    cred = created["credentials"]
    assert cred["claim_generator"] == "provgate-samples"
    assert cred["signer"]["issuer"] == "provgate samples"
    assert cred["actions"][0]["softwareAgent"] == "ProbeGen Model X"
    assert created["evidence"][0]["source"] == "c2pa"
    assert created["evidence"][0]["tag"].startswith("active manifest")
    comp = records["c2pa_edit_ai_ingredient.jpg"]
    assert comp["credentials"]["ingredients"][0]["relationship"] == "componentOf"
    assert any("ingredient 'generated element'" in e["tag"] for e in comp["evidence"])
    tampered = records["c2pa_tampered.jpg"]
    assert "assertion.dataHash.mismatch" in tampered["credentials"]["codes"]
    assert tampered["kind"] == "ai_generated"  # an invalid manifest that claims AI is still AI


def test_invalid_manifest_is_escalated_in_final_whatever_it_claims(tmp_path: Path) -> None:
    import shutil
    final = tmp_path / "final"
    final.mkdir()
    shutil.copy2(C2PA_DIR / "c2pa_camera_capture.jpg", final / "capture.jpg")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=retouched",
                    str(final / "capture.jpg")], check=True)
    rec = run_json("scan", final)[0]
    assert (rec["kind"], rec["c2pa"]) == ("human", "invalid")
    assert rec["action"] == "escalate" and rec["rule"] == "zones.final.c2pa.invalid"


def test_validation_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline by default: the remote sample's manifest URL is never fetched."""
    opened: list[object] = []
    real = socket.socket.connect

    def spy(self: socket.socket, address: object) -> None:
        opened.append(address)
        return real(self, address)
    monkeypatch.setattr(socket.socket, "connect", spy)
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(OSError()))
    records = by_name(run_json("scan", C2PA_DIR, *SKIP))
    assert records["c2pa_remote.jpg"]["c2pa"] == "remote"
    assert opened == []


def test_no_socket_from_the_native_library_either(tmp_path: Path) -> None:
    """c2pa-rs does its own networking: watch the whole process with strace if present."""
    need_tool("strace")
    log = tmp_path / "trace"
    out = subprocess.run(["strace", "-f", "-e", "trace=connect", "-o", str(log), sys.executable,
                          "-m", "provgate", "scan", str(C2PA_DIR), "--ledger",
                          str(tmp_path / "l.db"), *SKIP], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    connects = [line for line in log.read_text().splitlines() if "connect(" in line
                and "AF_UNIX" not in line]
    assert connects == []


def test_without_c2pa_python_the_state_is_not_checked(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['c2pa'] = None\n"
            "from provgate.cli import main\nmain()")
    out = subprocess.run([sys.executable, "-c", code, "scan", str(C2PA_DIR / "c2pa_ai_voice.wav"),
                          str(C2PA_DIR / "c2pa_ai_created.jpg"), "--json", "--ledger",
                          str(tmp_path / "l.db")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    recs = by_name(json.loads(out.stdout))
    assert recs["c2pa_ai_voice.wav"]["c2pa"] == "not_checked"
    # ExifTool still reads the JPEG's manifest, unvalidated
    assert recs["c2pa_ai_created.jpg"]["c2pa"] == "not_checked"
    assert recs["c2pa_ai_created.jpg"]["kind"] == "ai_generated"
    doctor = subprocess.run([sys.executable, "-c", code, "doctor"], capture_output=True,
                            text=True, timeout=60)
    assert "c2pa:       not_checked" in doctor.stdout


@pytest.mark.skipif(not REALWORLD.is_dir(), reason="shared/realworld is not beside the project")
def test_realworld_manifest_files_get_their_kind_and_state(tmp_path: Path) -> None:
    """The c2pa-rs fixtures in ../shared/realworld (read in place, never copied in)."""
    rows = list(csv.DictReader((REALWORLD / "MANIFEST.tsv").open(), delimiter="\t"))
    records = {os.path.relpath(r["path"], REALWORLD): r
               for r in run_json("scan", REALWORLD / "c2pa-rs", "--dry-run")}
    got = {row["file"]: (records[row["file"]]["kind"], records[row["file"]]["c2pa"])
           for row in rows}
    assert got == {row["file"]: (row["kind"], row["c2pa"]) for row in rows}


@pytest.mark.skipif(not REALWORLD.is_dir(), reason="shared/realworld is not beside the project")
def test_realworld_wild_files(tmp_path: Path) -> None:
    rows = list(csv.DictReader((REALWORLD / "WILD.tsv").open(), delimiter="\t"))
    records = {os.path.relpath(r["path"], REALWORLD): r
               for r in run_json("scan", REALWORLD / "wild", "--dry-run")}
    ai = {"ai_generated", "ai_composite", "ai_possible"}
    known_misses = {"wild/sdparsers_automatic1111_stealth.png"}  # parameters hidden in pixels
    for row in rows:
        rec, label = records[row["file"]], row["label"]
        if row["file"] in known_misses:
            assert rec["kind"] == "unknown"
        elif label == "ai_generated":
            assert rec["kind"] in ai, row["file"]
        elif label in ("human_capture", "no_provenance"):
            assert rec["kind"] not in ai, row["file"]
        elif label == "tampered_or_invalid":
            assert rec["c2pa"] == "invalid", row["file"]


def test_byte_look_never_spares_a_file_that_holds_a_manifest(tmp_path: Path) -> None:
    """c2pa-python is skipped for a small MP4/MOV/TIFF/WebP/WAV... only when the bytes hold no
    C2PA label. Every signed sample (and every real-world C2PA file here) must show one."""
    from provgate.assets import fingerprint_and_marker
    from provgate.credentials import BYTES_SETTLE_C2PA

    signed = [p for p in C2PA_DIR.iterdir() if p.name in C2PA_EXPECTED
              and C2PA_EXPECTED[p.name]["c2pa"] not in ("absent", "stripped", "remote")]
    if REALWORLD.is_dir():
        signed += [REALWORLD / line.split("\t")[0] for line in
                   (REALWORLD / "MANIFEST.tsv").read_text().splitlines()[1:]
                   if line.split("\t")[2] in ("valid_untrusted", "valid_trusted", "invalid")]
    assert any(p.suffix in (".mov", ".wav") for p in signed)
    for p in signed:
        if p.with_suffix(".c2pa").exists():
            continue  # the manifest is in a sidecar, which always goes to c2pa-python
        marker = fingerprint_and_marker(str(p))[1]
        assert marker in (True, None), p  # None: too large to look, c2pa-python runs
    # an unsigned MOV: no label, and its record is what c2pa-python would have said
    assert fingerprint_and_marker(str(ROOT / "sample_media" / "unknown_plate.mov"))[1] is False
    assert {"video/quicktime", "video/mp4", "audio/x-wav"} <= BYTES_SETTLE_C2PA
    assert "application/pdf" not in BYTES_SETTLE_C2PA
    rec = by_name(run_json("scan", ROOT / "sample_media" / "unknown_plate.mov"))
    assert rec["unknown_plate.mov"]["c2pa"] == "absent"


@pytest.mark.parametrize("sample,extra", [("possible_composite.webp", b""),
                                          ("ai_comfyui.png", b"\0\0\0\0")])
def test_byte_look_settles_every_variant_of_a_raw_container(tmp_path: Path, sample: str,
                                                             extra: bytes) -> None:
    """The byte look is keyed by media type: a WebP with metadata is "Extended WEBP" to
    ExifTool, a PNG with bytes after IEND carries a warning; holding no label, neither goes to
    c2pa-python. The checker is given a path that is gone: had it opened it, the state would
    be "invalid" (the open's error), not the absent ExifTool and the bytes settle."""
    from provgate.assets import fingerprint_and_marker
    from provgate.credentials import CredentialChecker
    from provgate.probe import ExifToolPool
    from provgate.signals import Catalogue

    src = tmp_path / sample
    src.write_bytes((ROOT / "sample_media" / sample).read_bytes() + extra)
    with ExifToolPool(None, 1) as pool:
        meta = pool.probe([str(src)])[str(src)]
    assert meta.file_type in ("Extended WEBP", "PNG") and not meta.error
    assert fingerprint_and_marker(str(src))[1] is False
    checker = CredentialChecker(Catalogue.load())
    if not checker.available:
        pytest.skip(checker.description)
    gone = str(tmp_path / "gone")
    assert checker.check(gone, meta, "absent", marker=False).state == "absent"
    assert checker.check(gone, meta, "absent", marker=None).state == "invalid"  # it opens


def test_a_store_exiftool_sees_is_validated_whatever_the_byte_look_says(tmp_path: Path) -> None:
    """A JPEG's manifest store may be cut over APP11 segments so small that its "c2pa" label
    is never whole in the file's bytes; ExifTool, which joins the segments, still sees it.
    The byte look is given "no label" here: the store ExifTool saw is validated anyway."""
    from provgate.credentials import CredentialChecker, c2pa_state_from_metadata
    from provgate.probe import ExifToolPool
    from provgate.signals import Catalogue

    signed = C2PA_DIR / "c2pa_ai_created.jpg"
    with ExifToolPool(None, 1) as pool:
        meta = pool.probe([str(signed)])[str(signed)]
    seen = c2pa_state_from_metadata(meta)
    assert seen == "not_checked"
    checker = CredentialChecker(Catalogue.load())
    if not checker.available:
        pytest.skip(checker.description)
    cred = checker.check(str(signed), meta, seen, marker=False)
    assert cred.manifest_read and cred.state == C2PA_EXPECTED[signed.name]["c2pa"]
