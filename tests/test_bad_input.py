"""Bad input: a clear record for each case, never a crash of the scan, never a changed file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import HANG_CONFIG, SAMPLES, by_name, hanging_exiftool, run, run_json, without_dac_override
from provgate.assets import Asset
from provgate.errors import ExifToolUnavailable
from provgate.session import Options, Session
from provgate.probe import ExifToolPool

ODD_NAMES = ["with space.jpg", "ünïcødé 日本.jpg", "new\nline.jpg", "-delete_original!.jpg",
             "-ver.jpg", "trailing .jpg", "#hash.jpg", "tab\tname.jpg"]


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root with size, mtime and content hash."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out[p] = (0, 0, os.readlink(p))
                continue
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns, hashlib.sha256(Path(p).read_bytes()).hexdigest())
    return out


def test_odd_names_are_read_not_obeyed(tmp_path: Path) -> None:
    tree = tmp_path / "odd"
    tree.mkdir()
    for name in ODD_NAMES:
        shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", tree / name)
    before = snapshot(tree)
    records = by_name(run_json("scan", tree))
    assert set(records) == set(ODD_NAMES)
    for name, rec in records.items():
        assert rec["kind"] == "ai_generated", (name, rec)
    assert snapshot(tree) == before  # -delete_original! was a name, not an option


def test_non_utf8_name(tmp_path: Path) -> None:
    tree = tmp_path / "bytes"
    tree.mkdir()
    raw = os.fsencode(tree) + b"/caf\xe9.jpg"
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", raw)
    records = run_json("scan", tree)
    assert len(records) == 1 and records[0]["kind"] == "ai_generated"


def test_corrupt_empty_truncated_files(tmp_path: Path) -> None:
    tree = tmp_path / "bad"
    tree.mkdir()
    (tree / "zero.jpg").write_bytes(b"")
    (tree / "random.jpg").write_bytes(os.urandom(4096))
    jpg = (SAMPLES / "ai_iptc_generated.jpg").read_bytes()
    (tree / "truncated.jpg").write_bytes(jpg[: len(jpg) * 9 // 10])  # image data cut off
    mp4 = (SAMPLES / "ai_runway_clip.mp4").read_bytes()
    (tree / "truncated.mp4").write_bytes(mp4[:600])
    (tree / "folder.mov").mkdir()
    records = by_name(run_json("scan", tree))
    assert records["zero.jpg"]["kind"] == "unreadable"
    assert "empty" in records["zero.jpg"]["error"].lower()
    assert records["random.jpg"]["kind"] == "unreadable"
    # a truncated JPEG still yields its metadata, with the warning kept
    assert records["truncated.jpg"]["kind"] == "ai_generated"
    assert records["truncated.mp4"]["kind"] in ("unreadable", "unknown")
    assert records["truncated.mp4"]["error"] or records["truncated.mp4"]["warnings"]
    assert "folder.mov" not in records


def test_symlinks_loop_and_escape_are_not_followed(tmp_path: Path) -> None:
    tree = tmp_path / "links"
    tree.mkdir()
    outside = tmp_path / "outside.jpg"
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", outside)
    (tree / "escape.jpg").symlink_to(outside)
    (tree / "loop_a").symlink_to(tree / "loop_b")
    (tree / "loop_b").symlink_to(tree / "loop_a")
    (tree / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    shutil.copy2(SAMPLES / "unknown_camera.jpg", tree / "real.jpg")
    (tree / "inside.jpg").symlink_to(tree / "real.jpg")
    records = by_name(run_json("scan", tree))
    assert "outside the scanned tree" in records["escape.jpg"]["error"]
    assert records["escape.jpg"]["kind"] == "unreadable"
    assert "loop" in records["loop_a"]["error"]
    assert "not followed" in records["dirlink"]["error"]
    assert records["inside.jpg"]["kind"] == "unknown"  # a link inside the tree is read


def test_file_vanishing_between_walk_and_read(tmp_path: Path) -> None:
    f = tmp_path / "gone.jpg"
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", f)
    st = f.stat()
    asset = Asset(str(f), str(tmp_path), st.st_size, st.st_mtime_ns, st.st_ino)
    f.unlink()
    with Session(Options()) as gate:
        rec = gate.process([asset])[0].to_json()
    assert rec["kind"] == "unreadable"
    assert rec["error"].startswith("vanished")


def test_unreadable_file_and_folder(tmp_path: Path) -> None:
    import json
    tree = tmp_path / "perm"
    (tree / "locked").mkdir(parents=True)
    shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", tree / "secret.jpg")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", tree / "open.jpg")
    shutil.copy2(SAMPLES / "unknown_camera.jpg", tree / "locked" / "inside.jpg")
    os.chmod(tree / "secret.jpg", 0o000)
    os.chmod(tree / "locked", 0o000)
    try:
        out = subprocess.run([*without_dac_override(), sys.executable, "-m", "provgate", "scan",
                              str(tree), "--json", "--ledger", str(tmp_path / "l.db")],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(tree / "locked", 0o755)
    assert out.returncode == 0, out.stderr
    records = by_name(json.loads(out.stdout))
    assert records["secret.jpg"]["kind"] == "unreadable"
    assert "permission denied" in records["secret.jpg"]["error"]
    assert records["locked"]["error"].startswith("folder not scanned: permission denied")
    assert records["open.jpg"]["kind"] == "unknown"
    assert (tree / "secret.jpg").stat().st_mode & 0o777 == 0  # untouched


def test_sparse_3gb_file_is_read_without_loading_it(tmp_path: Path) -> None:
    big = tmp_path / "huge.mov"
    with open(big, "wb") as fh:
        fh.truncate(3 * 1024**3)
    import resource
    rec = run_json("scan", big)[0]
    assert rec["size"] == 3 * 1024**3
    assert rec["fingerprint"].startswith("sha256:")
    assert rec["kind"] in ("unreadable", "unknown")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 1024 * 1024  # KiB: < 1 GiB


def test_scan_never_writes_into_the_scanned_tree(samples: Path) -> None:
    before = snapshot(samples)
    run("scan", samples, "--mode", "warn")
    run("check", samples, "--zone", "final")
    assert snapshot(samples) == before


def test_exiftool_missing_exits_3_with_a_clear_message(samples: Path) -> None:
    result = run("scan", samples, "--exiftool", "/nonexistent/exiftool")
    assert result.exit_code == 3
    assert "ExifTool not found" in result.output and "apt-get install" in result.output


def test_exiftool_too_old_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "exiftool"
    fake.write_text("#!/bin/sh\nexec /usr/bin/env perl -e 'print \"10.00\\n\"'\n")
    fake.chmod(0o755)
    with pytest.raises(ExifToolUnavailable):
        ExifToolPool([], processes=1, executable=str(fake))




def hang_pool(tmp_path: Path, timeout: float) -> ExifToolPool:
    cfg = tmp_path / "hang.config"
    cfg.write_text(HANG_CONFIG)
    return ExifToolPool(["-HangForTest"], processes=1, timeout=timeout, config=str(cfg))


def copies(tmp_path: Path, n: int) -> list[str]:
    out = []
    for i in range(n):
        p = tmp_path / f"ok{i}.jpg"
        shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", p)
        out.append(str(p))
    return out


def test_hanging_file_is_isolated_and_the_rest_go_on(tmp_path: Path) -> None:
    good = copies(tmp_path, 5)
    hang = tmp_path / "hang.jpg"
    shutil.copy2(SAMPLES / "unknown_camera.jpg", hang)
    with hang_pool(tmp_path, timeout=2) as pool:
        res = pool.probe([*good[:3], str(hang), *good[3:]])
        assert pool.restarts >= 1
        assert "no answer" in res[str(hang)].error
        for g in good:
            assert res[g].error is None and res[g].tags.get("File:FileType") == "JPEG"
        assert pool.probe(good[:1])[good[0]].error is None  # the pool still works


def test_exiftool_killed_mid_batch(tmp_path: Path) -> None:
    good = copies(tmp_path, 4)
    hang = tmp_path / "hang.jpg"
    shutil.copy2(SAMPLES / "unknown_camera.jpg", hang)
    with hang_pool(tmp_path, timeout=3) as pool:
        proc = pool._all[0]._process

        def killer() -> None:
            time.sleep(0.5)
            proc.kill()  # kill -9 while ExifTool is in the middle of the batch
        threading.Thread(target=killer).start()
        res = pool.probe([good[0], str(hang), *good[1:]])
        assert pool.restarts >= 1
        assert all(res[g].error is None for g in good)
        assert res[str(hang)].error


def test_scan_goes_on_past_a_hanging_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("a.jpg", "hang.jpg", "b.jpg"):
        shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", tree / name)
    cat = hanging_exiftool(tmp_path, monkeypatch)
    with Session(Options(timeout=2, catalogue=cat)) as gate:
        records = by_name([r.to_json() for r in gate.run([str(tree)])])
    assert records["a.jpg"]["kind"] == records["b.jpg"]["kind"] == "ai_generated"
    assert records["hang.jpg"]["kind"] == "unreadable"
    assert "no answer within 2 s" in records["hang.jpg"]["error"]


def test_exiftool_processes_outlive_the_threads_that_used_them(samples: Path) -> None:
    """pyexiftool sets PR_SET_PDEATHSIG: a process started from a short-lived thread dies
    with it. A daemon runs many scans on one pool; none may need a restart."""
    with Session(Options()) as gate:
        first = list(gate.run([str(samples)]))
        second = list(gate.run([str(samples)], ))
        os.utime(samples / "ai_iptc_generated.jpg")  # force a real read in a third run
        third = list(gate.run([str(samples / "ai_iptc_generated.jpg")]))
        assert gate.pool.restarts == 0
    assert len(first) == len(second) and third[0].kind == "ai_generated"


def test_an_exiftool_config_that_is_not_there_is_one_clear_error(tmp_path: Path) -> None:
    """PROVGATE_EXIFTOOL_CONFIG naming a missing file: exit 3 (could not run) with one line
    that says so, on a new ledger too (where ExifTool starts beside the opening), never a
    traceback."""
    tree = tmp_path / "delivery"
    tree.mkdir()
    shutil.copy(SAMPLES / "human_capture.jpg", tree / "a.jpg")
    env = {**os.environ, "PROVGATE_EXIFTOOL_CONFIG": str(tmp_path / "missing.config")}
    out = subprocess.run([sys.executable, "-m", "provgate", "scan", str(tree), "--ledger",
                          str(tmp_path / "new.db")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 3, out.stderr
    assert "did not start" in out.stderr and "config file" in out.stderr
    assert "Traceback" not in out.stderr and "Exception in thread" not in out.stderr
