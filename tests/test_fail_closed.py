"""The gate fails closed: each door of issue 10, walked the way it was found."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from conftest import SAMPLES, run, run_json

AI = "ai_iptc_generated.jpg"
CLEAN = "unknown_camera.jpg"


def _episode(tmp_path: Path) -> Path:
    """EP101 with final/vfx holding one generated and one clean image."""
    vfx = tmp_path / "EP101" / "final" / "vfx"
    vfx.mkdir(parents=True)
    for name in (AI, CLEAN):
        shutil.copy2(SAMPLES / name, vfx / name)
    return tmp_path / "EP101"


def _ledger_paths(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    with sqlite3.connect(ledger) as db:
        return [r[0] for r in db.execute("SELECT path FROM decisions")]


# -- zones come from the file's own path -------------------------------------------------------

def test_zone_does_not_depend_on_the_folder_pointed_at(tmp_path: Path) -> None:
    ep = _episode(tmp_path)
    vfx = ep / "final" / "vfx"
    for target in (ep, vfx, vfx / AI):
        result = run("check", target)
        assert result.exit_code == 1, (target, result.stderr)
        assert "HELD block" in result.stderr and AI in result.stderr
    # find .../final | provgate check --from -
    listing = "".join(f"{p}\n" for p in sorted(vfx.iterdir()))
    result = run("check", "--from", "-", input=listing)
    assert result.exit_code == 1, result.stderr
    records = run_json("check", vfx / AI)
    assert records[0]["zone"] == "final"


def test_stricter_zone_wins_and_tmp_is_not_a_temp_zone(tmp_path: Path) -> None:
    both = tmp_path / "show" / "temp" / "final"  # matches temp and final: final holds
    both.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, both / AI)
    assert run_json("scan", both / AI)[0]["zone"] == "final"
    plain = tmp_path / "tmp" / "delivery"
    plain.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, plain / AI)
    assert run_json("scan", plain / AI)[0]["zone"] == "working"


def test_globs_are_relative_to_the_policy_roots(tmp_path: Path) -> None:
    # the storage itself sits under a folder named final: below the root only the
    # delivery's own folders count
    root = tmp_path / "final" / "storage"
    (root / "EP101" / "work").mkdir(parents=True)
    (root / "EP101" / "final").mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, root / "EP101" / "work" / AI)
    shutil.copy2(SAMPLES / AI, root / "EP101" / "final" / AI)
    policy = tmp_path / "policy.toml"
    text = (Path(__file__).parent.parent / "plugin" / "provgate" / "default_policy.toml"
            ).read_text()
    policy.write_text(text.replace("# roots = [\"/srv/delivery\"]", f"roots = [\"{root}\"]"))
    zones = {Path(r["path"]).parent.name: r["zone"]
             for r in run_json("scan", root, "--policy", policy)}
    assert zones == {"work": "working", "final": "final"}


# -- inputs that are not there ------------------------------------------------------------------

def test_a_missing_path_is_a_usage_error_and_never_recorded(tmp_path: Path,
                                                            ledger_path: Path) -> None:
    ep = _episode(tmp_path)
    typo = ep / "fianl"
    result = run("check", typo)
    assert result.exit_code == 2
    assert "not found" in result.stderr and "fianl" in result.stderr
    result = run("check", "--from", "-", input=f"{ep / 'final' / 'vfx' / CLEAN}\n{typo}\n")
    assert result.exit_code == 2 and "fianl" in result.stderr
    scan = run("scan", ep / "final", typo)
    assert scan.exit_code == 2 and "not found" in scan.stderr
    assert not any("fianl" in p for p in _ledger_paths(ledger_path))


def test_an_empty_delivery_fails_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "EP102" / "final"
    empty.mkdir(parents=True)
    result = run("check", empty)
    assert result.exit_code == 1
    assert "no media files" in result.stderr
    assert run("check", empty, "--allow-empty").exit_code == 0


def test_a_policy_without_zones_says_so(tmp_path: Path) -> None:
    ep = _episode(tmp_path)
    policy = tmp_path / "nozones.toml"
    policy.write_text('version = 1\ndefault_zone = "default"\n[actions]\nai_generated = "flag"\n'
                      'ai_composite = "flag"\nai_possible = "flag"\nalgorithmic = "allow"\n'
                      'human = "allow"\nunknown = "allow"\nunreadable = "flag"\n')
    result = run("check", ep, "--policy", policy)
    assert "defines no zones" in result.stderr


# -- nothing in a final zone goes unjudged ------------------------------------------------------

def test_hidden_files_and_partials_in_final_are_held(tmp_path: Path) -> None:
    ep = _episode(tmp_path)
    final = ep / "final"
    os.remove(final / "vfx" / AI)
    shutil.copy2(SAMPLES / AI, final / ".key_art.jpg")
    (final / ".cache").mkdir()
    shutil.copy2(SAMPLES / AI, final / ".cache" / "frame.jpg")
    shutil.copy2(SAMPLES / AI, final / "shot.jpg.part")
    records = {Path(r["path"]).name: r for r in run_json("check", ep)}
    for name, why in ((".key_art.jpg", "hidden file"), ("frame.jpg", "hidden folder"),
                      ("shot.jpg.part", "transfer partial")):
        assert records[name]["action"] == "escalate", records[name]
        assert why in records[name]["error"]
    assert records[CLEAN]["action"] == "allow"
    assert run("check", ep).exit_code == 1


def test_hidden_files_outside_final_stay_out_of_the_record(tmp_path: Path) -> None:
    work = tmp_path / "show" / "work"
    work.mkdir(parents=True)
    shutil.copy2(SAMPLES / CLEAN, work / CLEAN)
    shutil.copy2(SAMPLES / AI, work / ".DS_Store")
    shutil.copy2(SAMPLES / AI, work / "x.jpg.part")
    assert [Path(r["path"]).name for r in run_json("scan", work)] == [CLEAN]


def test_a_symlinked_delivery_root_is_walked(tmp_path: Path) -> None:
    real = tmp_path / "v3" / "final"
    real.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, real / AI)
    link = tmp_path / "EP101" / "final"
    link.parent.mkdir()
    link.symlink_to(real, target_is_directory=True)
    result = run("check", link)
    assert result.exit_code == 1, result.stderr
    assert "HELD block" in result.stderr and "not a regular file" not in result.stderr


# -- the verdict binds to content ---------------------------------------------------------------

def test_a_file_rewritten_with_size_and_mtime_restored_is_read_again(tmp_path: Path) -> None:
    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True)
    target = final / "plate.jpg"
    clean, ai = (SAMPLES / CLEAN).read_bytes(), (SAMPLES / AI).read_bytes()
    size = max(len(clean), len(ai))  # JPEG readers stop at the end-of-image marker
    target.write_bytes(clean.ljust(size, b"\0"))
    assert run("check", final).exit_code == 0
    st = os.stat(target)
    target.write_bytes(ai.ljust(size, b"\0"))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    result = run("check", final)
    assert result.exit_code == 1, result.stderr
    assert "HELD block" in result.stderr


def test_approval_globs_match_case_sensitively(tmp_path: Path) -> None:
    from provgate.assets import Asset
    from provgate.policy import Approval

    appr = Approval(1, "R", "B", "2026-01-01", glob=f"{tmp_path}/final/*.jpg")
    assert appr.covers(Asset(f"{tmp_path}/final/a.jpg", str(tmp_path)))
    assert not appr.covers(Asset(f"{str(tmp_path).upper()}/FINAL/a.jpg", str(tmp_path)))


# -- archives in a delivery ---------------------------------------------------------------------

def test_archives_in_final_have_their_members_judged(tmp_path: Path) -> None:
    import tarfile
    import zipfile

    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True)
    with zipfile.ZipFile(final / "stills.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(SAMPLES / CLEAN, "stills/plate.jpg")
        zf.write(SAMPLES / AI, "stills/key_art.jpg")
    with tarfile.open(final / "frames.tar.gz", "w:gz") as tf:
        tf.add(SAMPLES / "ai_a1111_txt2img.png", "frames/f1001.png")
    with zipfile.ZipFile(final / "clean.zip", "w") as zf:
        zf.write(SAMPLES / CLEAN, "plate.jpg")
    (final / "cut.zip").write_bytes((final / "stills.zip").read_bytes()[:200])
    shutil.copy2(SAMPLES / AI, final / "not_a_zip.zip")  # a JPEG, whatever its name
    with zipfile.ZipFile(final / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.exr", b"\0" * (300 << 20))
    by = {Path(r["path"]).name: r for r in run_json("check", final)}
    stills = by["stills.zip"]
    assert stills["kind"] == "ai_generated" and stills["action"] == "block"
    assert any("stills/key_art.jpg" in e["tag"] for e in stills["evidence"])
    assert "archive member stills/key_art.jpg" in stills["reason"]
    assert by["frames.tar.gz"]["kind"] == "ai_generated"
    assert by["clean.zip"]["action"] == "allow"
    assert by["cut.zip"]["kind"] == "unreadable" and by["cut.zip"]["action"] == "escalate"
    assert "archive not judged" in by["cut.zip"]["error"]
    assert by["not_a_zip.zip"]["kind"] == "ai_generated"
    assert by["bomb.zip"]["action"] == "escalate" and "bomb" in by["bomb.zip"]["error"]
