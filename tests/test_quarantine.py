"""Quarantine: blocked files move with a receipt, nothing is ever lost or overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SAMPLES, by_name, run, run_json, tmpfs
from provgate import data
from provgate.assets import discover
from provgate.ledger import Ledger
from provgate import stages
from provgate.session import Options, Session


def fingerprints(*roots: Path) -> list[str]:
    out = []
    for root in roots:
        for dirpath, _d, files in os.walk(root):
            for f in files:
                if ".provgate-" not in f:  # our receipts and partial copies
                    out.append(hashlib.sha256(Path(dirpath, f).read_bytes()).hexdigest())
    return sorted(out)


def test_enforce_quarantines_exactly_the_blocked(delivery: Path, quarantine_dir: Path) -> None:
    before = fingerprints(delivery)
    records = run_json("scan", delivery, "--mode", "enforce")
    blocked = [r for r in records if r["action"] == "block"]
    assert {Path(r["path"]).name for r in blocked} == {"ai_iptc_generated.jpg",
                                                       "ai_a1111_txt2img.png"}
    for r in records:
        moved = not Path(r["path"]).exists()
        assert moved == (r["action"] == "block"), r["path"]
    for r in blocked:
        assert r["outcome"].startswith("quarantined to ")
        target = Path(r["outcome"].removeprefix("quarantined to "))
        assert target.is_relative_to(quarantine_dir / "ep101" / "final")
        receipt = json.loads(Path(str(target) + ".provgate-receipt.json").read_text())
        data.validate(receipt, "receipt", "receipt")
        assert receipt["original_path"] == r["path"]
        assert receipt["decision_id"] == r["id"]
        assert "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest() == r["fingerprint"]
    # nothing lost: every original fingerprint is in the tree or the quarantine
    assert fingerprints(delivery, quarantine_dir) == before
    assert run("ledger", "verify").exit_code == 0
    listing = run("quarantine", "list").stdout
    assert listing.count("done") == 2


def test_name_clash_never_overwrites(delivery: Path, quarantine_dir: Path) -> None:
    target = quarantine_dir / "ai_iptc_generated.jpg"  # scanned root: final/
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's file")
    records = by_name(run_json("scan", delivery / "ep101" / "final", "--mode", "enforce"))
    assert target.read_bytes() == b"someone else's file"
    rec = records["ai_iptc_generated.jpg"]
    assert rec["outcome"].startswith("quarantined to ")
    assert "ai_iptc_generated~2.jpg" in rec["outcome"]


def test_restore_and_refusal(delivery: Path) -> None:
    run_json("scan", delivery / "ep101" / "final", "--mode", "enforce")
    moves = json.loads(run("quarantine", "list", "--json").stdout)
    first = moves[0]
    original = Path(first["original_path"])
    original.write_bytes(b"a new file in its place")
    refused = run("quarantine", "restore", str(first["id"]))
    assert refused.exit_code == 1 and "exists now" in refused.output
    assert original.read_bytes() == b"a new file in its place"
    original.unlink()
    assert run("quarantine", "restore", str(first["id"])).exit_code == 0
    assert "sha256:" + hashlib.sha256(original.read_bytes()).hexdigest() == first["fingerprint"]
    assert not Path(first["quarantined_path"]).exists()
    states = {m["id"]: m["state"] for m in json.loads(run("quarantine", "list", "--json").stdout)}
    assert states[first["id"]] == "restored"
    assert run("quarantine", "restore", str(first["id"])).exit_code == 2  # nothing to restore


def test_unusable_quarantine_leaves_the_file_in_place(delivery: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the quarantine folder should be")
    records = by_name(run_json("scan", delivery / "ep101" / "final", "--mode", "enforce",
                               "--quarantine", blocker / "q"))
    rec = records["ai_iptc_generated.jpg"]
    assert rec["outcome"].startswith("left in place: could not quarantine")
    assert (delivery / "ep101" / "final" / "ai_iptc_generated.jpg").exists()
    assert any("could not quarantine" in w for w in rec["warnings"])
    assert "failed" in run("quarantine", "list").stdout


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 64 KiB tmpfs: a full, and a different, filesystem. A fresh tmpfs is mode 1777,
    which provgate refuses as a quarantine (others could plant names in it): made 0700."""
    with tmpfs("64k") as mnt:
        os.chmod(mnt, 0o700)
        yield mnt


def test_quarantine_on_a_full_filesystem(tmp_path: Path, tiny_fs: Path) -> None:
    root = tmp_path / "big" / "final"
    root.mkdir(parents=True)
    big = root / "big_ai.jpg"
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", big)
    with open(big, "ab") as fh:
        fh.write(os.urandom(200_000))  # larger than the whole quarantine filesystem
    before = big.read_bytes()
    rec = run_json("scan", root, "--mode", "enforce", "--quarantine", tiny_fs)[0]
    assert rec["action"] == "block"
    assert "the quarantine filesystem is full" in rec["outcome"]
    assert rec["outcome"].startswith("left in place")
    assert big.read_bytes() == before
    assert not any(p.name.endswith("provgate-partial") for p in tiny_fs.rglob("*"))


def test_quarantine_across_filesystems(delivery: Path, tiny_fs: Path) -> None:
    src = delivery / "ep101" / "final" / "ai_iptc_generated.jpg"
    fp = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    rec = by_name(run_json("scan", delivery / "ep101" / "final", "--mode", "enforce",
                           "--quarantine", tiny_fs))["ai_iptc_generated.jpg"]
    target = Path(rec["outcome"].removeprefix("quarantined to "))
    assert target.is_relative_to(tiny_fs) and not src.exists()
    assert "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest() == fp


def test_crash_between_ledger_write_and_move_is_finished(delivery: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision and its pending move are committed; the process dies before moving."""
    final = delivery / "ep101" / "final"
    opts = Options(mode="enforce")
    with Session(opts) as gate:
        assets = [a.with_fingerprint() for a in discover([str(final)])]
        blocked = [a for a in assets if a.path.endswith("ai_iptc_generated.jpg")]
        with monkeypatch.context() as m:  # the crash: nothing after the commit runs
            m.setattr(stages, "_carry_out", lambda session, planned: None)
            rec = gate.process(blocked)[0]
        assert rec.action == "block" and rec.outcome == "quarantine pending"
    assert (final / "ai_iptc_generated.jpg").exists()
    with Ledger(opts.policy.config.ledger_path()) as led:
        assert [m["state"] for m in led.moves()] == ["pending"]
    # the next start finds the pending move and finishes it
    run_json("scan", final, "--mode", "warn")
    assert not (final / "ai_iptc_generated.jpg").exists()
    with Ledger(opts.policy.config.ledger_path()) as led:
        assert [m["state"] for m in led.moves()] == ["done"]
    assert run("ledger", "verify").exit_code == 0


def test_kill_9_during_enforce_scan_loses_nothing(tmp_path: Path) -> None:
    """A real kill -9 at a random moment: afterwards every file is in the tree or quarantine."""
    import signal
    import sys
    import time
    root = tmp_path / "final"
    root.mkdir()
    for i in range(400):  # 200 moves: a wide window for the kill to land in
        shutil.copy2(SAMPLES / ("ai_iptc_generated.jpg" if i % 2 else "unknown_camera.jpg"),
                     root / f"f{i:03}.jpg")
        with open(root / f"f{i:03}.jpg", "ab") as fh:
            fh.write(str(i).encode())
    before = fingerprints(root)
    q = tmp_path / "state" / "quarantine"
    proc = subprocess.Popen([sys.executable, "-m", "provgate", "scan", str(root), "--mode",
                             "enforce", "--ndjson"], stdout=subprocess.PIPE, env=os.environ)
    deadline = time.monotonic() + 60
    while not any(q.rglob("*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.001)  # wait until the moves have started, then kill in the middle
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # mid-move a file may be in both places (hard link made, source not yet removed): never in none
    assert set(fingerprints(root, q)) == set(before)
    assert 0 < len(list(q.rglob("*.jpg"))) < 200, "the kill should land in the middle of the moves"
    run_json("scan", root, "--mode", "enforce")  # restart: recovery, then the rest
    assert fingerprints(root, q) == before
    assert run("ledger", "verify").exit_code == 0
    assert len(list(root.iterdir())) == 200


def test_zone_sidecars_carry_the_verdict_and_are_never_evidence(tmp_path: Path) -> None:
    from provgate.policy import DEFAULT_POLICY
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text().replace(
        "[zones.final.actions]", "tag = true\n[zones.final.actions]"))
    final = tmp_path / "show" / "final"
    final.mkdir(parents=True)
    shutil.copy2(SAMPLES / "ai_genfill_composite.jpg", final / "shot.jpg")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", final / "plate.jpg")
    before = (final / "shot.jpg").read_bytes()
    recs = by_name(run_json("scan", final, "--policy", pol))
    side = final / "shot.jpg.xmp"
    out = subprocess.run(["exiftool", "-json", "-G1", str(side)], capture_output=True, text=True)
    tags = json.loads(out.stdout)[0]
    assert tags["XMP-provgate:DecisionID"] == recs["shot.jpg"]["id"]
    assert tags["XMP-provgate:Action"] == "escalate"
    assert tags["XMP-iptcExt:DigitalSourceType"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert (final / "shot.jpg").read_bytes() == before  # the deliverable is untouched
    # replace the shot with a clean file: the stale sidecar must not make it AI
    shutil.copy2(SAMPLES / "unknown_camera.jpg", final / "shot.jpg")
    recs = by_name(run_json("scan", final, "--policy", pol))
    assert recs["shot.jpg"]["kind"] == "unknown"
    # a sidecar someone else wrote is left alone
    (final / "plate.jpg.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    os.utime(final / "plate.jpg")
    shutil.copy2(SAMPLES / "ai_genfill_composite.jpg", final / "plate.jpg")
    recs = by_name(run_json("scan", final, "--policy", pol))
    assert any("not provgate's" in w for w in recs["plate.jpg"]["warnings"])
    assert (final / "plate.jpg.xmp").read_text() == "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"


def test_tag_command_labels_working_media(tmp_path: Path) -> None:
    work = tmp_path / "show" / "work"
    work.mkdir(parents=True)
    wrong = work / "mislabelled.png"  # a JPEG named .png: ExifTool refuses to write it
    shutil.copy2(SAMPLES / "unknown_camera.jpg", wrong)
    failed = run("tag", wrong, "--source-type", "trainedAlgorithmicMedia")
    assert failed.exit_code == 3 and "could not write" in failed.output
    assert wrong.read_bytes() == (SAMPLES / "unknown_camera.jpg").read_bytes()
    assert not Path(str(wrong) + ".provgate-backup").exists()
    f = work / "matte.jpg"
    shutil.copy2(SAMPLES / "unknown_camera.jpg", f)
    out = run("tag", f, "--source-type", "trainedAlgorithmicMedia", "--tool", "Runway Gen-4")
    assert out.exit_code == 0, out.output
    assert "now ai_generated" in out.output
    assert not Path(str(f) + ".provgate-backup").exists()
    rec = run_json("scan", f)[0]
    assert rec["kind"] == "ai_generated"
    assert {e["marker"] for e in rec["evidence"]} >= {"digital-source-type", "iptc-ai-fields"}
    final = tmp_path / "show" / "final"
    final.mkdir()
    g = final / "deliverable.jpg"
    shutil.copy2(SAMPLES / "unknown_camera.jpg", g)
    before = g.read_bytes()
    refused = run("tag", g, "--source-type", "trainedAlgorithmicMedia")
    assert refused.exit_code == 2 and "final zone" in refused.output
    assert g.read_bytes() == before
    assert run("tag", g, "--source-type", "trainedAlgorithmicMedia", "--force").exit_code == 0
    assert json.loads(run("ledger", "list", "--json", "--path", str(g)).stdout)[-1]["action"] \
        == "block"


def test_two_blocked_files_with_the_same_name_in_one_scan(tmp_path: Path,
                                                          quarantine_dir: Path) -> None:
    """Two roots, the same relative path: both are quarantined, under different names."""
    roots = [tmp_path / "vendorA" / "final", tmp_path / "vendorB" / "final"]
    for i, r in enumerate(roots):
        r.mkdir(parents=True)
        shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", r / "shot.jpg")
        with open(r / "shot.jpg", "ab") as fh:
            fh.write(bytes([i]))
    records = run_json("scan", *roots, "--mode", "enforce")
    assert [r["outcome"].split()[0] for r in records] == ["quarantined", "quarantined"]
    assert sorted(p.name for p in quarantine_dir.glob("*.jpg")) == ["shot.jpg", "shot~2.jpg"]
    assert not any((r / "shot.jpg").exists() for r in roots)
