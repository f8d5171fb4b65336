"""Issue 10, the CLI's part of failing closed: approvals are scoped, `tag` gets through a
batch with files it may not touch, exit codes say what the README says, `--dry-run` creates
nothing, and a `--ledger` in a missing folder is refused. Real files, real ExifTool, a real
SQLite ledger, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import SAMPLES, by_name, run, run_json, without_dac_override
from provgate.policy import DEFAULT_POLICY


def rooted_policy(tmp_path: Path, *roots: Path) -> Path:
    pol = tmp_path / "rooted.toml"
    listed = ", ".join(f'"{r}"' for r in roots)
    pol.write_text(DEFAULT_POLICY.read_text().replace('# roots = ["/srv/delivery"]',
                                                      f"roots = [{listed}]"))
    return pol


def approvals() -> list[dict]:
    return json.loads(run("approvals", "--json").stdout)


# -- approvals are scoped ----------------------------------------------------------------------

def test_a_glob_without_roots_is_refused(delivery: Path) -> None:
    """The door: with no roots, `approve "/tmp/**"` was accepted and cleared every file."""
    out = run("approve", "/tmp/**", "--ref", "NFX-1", "--by", "Jo")
    assert out.exit_code == 2
    assert "no `roots`" in out.output and "one by one" in out.output
    assert approvals() == []
    below = run("approve", f"{delivery}/**", "--ref", "NFX-1", "--by", "Jo")
    assert below.exit_code == 2 and "roots" in below.output
    assert run("check", delivery).exit_code == 1  # nothing was cleared
    # a single file is still approved without roots
    one = run("approve", delivery / "ep101" / "final" / "ai_genfill_composite.jpg",
              "--ref", "NFX-2", "--by", "Jo")
    assert one.exit_code == 0, one.output
    assert "matches 1 file now" in one.output


def test_a_glob_must_stay_inside_the_roots(tmp_path: Path, delivery: Path) -> None:
    pol = rooted_policy(tmp_path, delivery)
    final = delivery / "ep101" / "final"
    outside = run("approve", "/tmp/**", "--ref", "R", "--by", "B", "--policy", pol)
    assert outside.exit_code == 2 and "outside the roots" in outside.output
    sideways = run("approve", f"{tmp_path}/deliv*/**", "--ref", "R", "--by", "B",
                   "--policy", pol)  # the fixed part is tmp_path, above the root
    assert sideways.exit_code == 2 and "outside the roots" in sideways.output
    climb = run("approve", f"{final}/../../../*", "--ref", "R", "--by", "B", "--policy", pol)
    assert climb.exit_code == 2 and "'..'" in climb.output
    assert approvals() == []
    inside = run("approve", f"{final}/*.jpg", "--ref", "R", "--by", "B", "--policy", pol)
    assert inside.exit_code == 0, inside.output
    assert "matches 4 files now" in inside.output
    assert [a["glob"] for a in approvals()] == [f"{final}/*.jpg"]


def test_a_glob_matching_more_than_max_files_needs_yes(tmp_path: Path, delivery: Path) -> None:
    pol = rooted_policy(tmp_path, delivery)
    plates = delivery / "ep101" / "plates"
    plates.mkdir()
    for i in range(51):
        shutil.copy2(SAMPLES / "ai_iptc_generated.jpg", plates / f"p{i:03}.jpg")
    wide = run("approve", f"{delivery}/**", "--ref", "R", "--by", "B", "--policy", pol)
    assert wide.exit_code == 2
    assert "matches 58 files now, more than --max-files 50" in wide.output
    assert "--yes" in wide.output
    few = run("approve", f"{delivery}/ep101/final/*", "--max-files", "3", "--ref", "R",
              "--by", "B", "--policy", pol)
    assert few.exit_code == 2 and "matches 5 files now, more than --max-files 3" in few.output
    assert approvals() == []
    sure = run("approve", f"{delivery}/**", "--yes", "--ref", "R", "--by", "B", "--policy", pol)
    assert sure.exit_code == 0, sure.output
    assert "matches 58 files now" in sure.output
    assert len(approvals()) == 1


def test_relative_targets_are_resolved_and_shown(tmp_path: Path, delivery: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    final = delivery / "ep101" / "final"
    monkeypatch.chdir(final)
    one = run("approve", "ai_genfill_composite.jpg", "--ref", "R1", "--by", "B")
    assert one.exit_code == 0, one.output
    assert f"{final}/ai_genfill_composite.jpg (given as ai_genfill_composite.jpg)" in one.output
    pol = rooted_policy(tmp_path, delivery)
    glob = run("approve", "*.png", "--ref", "R2", "--by", "B", "--policy", pol)
    assert glob.exit_code == 0, glob.output
    assert f"{final}/*.png (given as *.png)" in glob.output and "matches 1 file now" in glob.output
    assert [a["path"] or a["glob"] for a in approvals()] == [
        f"{final}/ai_genfill_composite.jpg", f"{final}/*.png"]
    folder = run("approve", ".", "--ref", "R3", "--by", "B")
    assert folder.exit_code == 2 and "is a folder" in folder.output


def test_expiry_in_the_past_is_refused_and_a_date_covers_its_day(delivery: Path) -> None:
    target = delivery / "ep101" / "final" / "ai_genfill_composite.jpg"
    past = run("approve", target, "--ref", "R", "--by", "B", "--expires", "2020-01-31")
    assert past.exit_code == 2 and "already past" in past.output
    bad = run("approve", target, "--ref", "R", "--by", "B", "--expires", "31/12/2026")
    assert bad.exit_code == 2 and "2026-12-31" in bad.output and "ISO 8601" in bad.output
    assert approvals() == []
    today = datetime.now(timezone.utc).date().isoformat()
    ok = run("approve", target, "--ref", "R", "--by", "B", "--expires", today)
    assert ok.exit_code == 0, ok.output  # today is not over: the whole day is covered
    [appr] = approvals()
    assert appr["expires"] == f"{today}T23:59:59.999999+00:00" and appr["active"]
    rec = by_name(run_json("scan", target))["ai_genfill_composite.jpg"]
    assert rec["action"] == "allow" and rec["approval"]["ref"] == "R"
    zoned = run("approve", target, "--ref", "R", "--by", "B", "--expires",
                "2999-06-01T12:00+02:00")
    assert zoned.exit_code == 0 and "expires 2999-06-01T10:00:00.000000+00:00" in zoned.output


# -- tag: one file it cannot write never stops the batch -----------------------------------------

def test_tag_goes_on_past_files_it_cannot_write(tmp_path: Path) -> None:
    """A folder it may not write, a folder it may not enter, a read-only file and a file in
    a final zone, between two working files: both working files are tagged, the rest are
    reported and untouched, and the exit code says a file could not be written (3)."""
    work = tmp_path / "show" / "work"
    locked, sealed, final = work / "locked", work / "sealed", tmp_path / "show" / "final"
    for d in (locked, sealed, final):
        d.mkdir(parents=True)
    names = {"first": work / "a.jpg", "locked": locked / "b.jpg", "sealed": sealed / "c.jpg",
             "readonly": work / "d.jpg", "final": final / "e.jpg", "last": work / "f.jpg"}
    for f in names.values():
        shutil.copy2(SAMPLES / "unknown_camera.jpg", f)
    before = {k: f.read_bytes() for k, f in names.items()}
    os.chmod(names["readonly"], 0o444)
    os.chmod(locked, 0o555)
    os.chmod(sealed, 0o000)
    try:
        out = subprocess.run([*without_dac_override(), sys.executable, "-m", "provgate", "tag",
                              *map(str, names.values()), "--source-type",
                              "trainedAlgorithmicMedia", "--ledger", str(tmp_path / "state" /
                                                                          "ledger.db")],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(locked, 0o755)
        os.chmod(sealed, 0o755)
    assert out.returncode == 3, out.stderr
    for key in ("first", "last"):
        assert f"tagged {names[key]}" in out.stdout or f"tagged {os.path.relpath(names[key])}" \
            in out.stdout
        assert names[key].read_bytes() != before[key]
        assert run_json("scan", names[key])[0]["kind"] == "ai_generated"
    for key in ("locked", "sealed", "readonly", "final"):
        assert names[key].read_bytes() == before[key], key
    assert "b.jpg: Permission denied" in out.stderr
    assert "c.jpg: Permission denied" in out.stderr
    assert "d.jpg: the file is read-only" in out.stderr
    assert "e.jpg is in the final zone" in out.stderr
    assert "tagged 2 of 6 files; 1 refused or missing, 3 could not be written" in out.stderr
    assert not list(work.rglob("*.provgate-backup"))


def test_tag_refusals_give_exit_2_and_the_rest_is_tagged(tmp_path: Path) -> None:
    final = tmp_path / "show" / "final"
    work = tmp_path / "show" / "work"
    final.mkdir(parents=True)
    work.mkdir()
    deliverable, matte = final / "deliverable.jpg", work / "matte.jpg"
    for f in (deliverable, matte):
        shutil.copy2(SAMPLES / "unknown_camera.jpg", f)
    before = deliverable.read_bytes()
    out = run("tag", deliverable, tmp_path / "no-such.jpg", matte,
              "--source-type", "compositeWithTrainedAlgorithmicMedia")
    assert out.exit_code == 2
    assert "final zone" in out.stderr and "no-such.jpg: no such file" in out.stderr
    assert "tagged" in out.stdout and "matte.jpg" in out.stdout
    assert deliverable.read_bytes() == before
    assert run_json("scan", matte)[0]["kind"] == "ai_composite"
    # --zone cannot take a deliverable out of its final zone; --force can
    sneaky = run("tag", deliverable, "--zone", "working", "--source-type",
                 "trainedAlgorithmicMedia")
    assert sneaky.exit_code == 2 and deliverable.read_bytes() == before
    forced = run("tag", deliverable, "--force", "--source-type", "trainedAlgorithmicMedia")
    assert forced.exit_code == 0 and deliverable.read_bytes() != before


# -- exit codes as the README says -----------------------------------------------------------

def test_policy_init_over_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "provgate.toml"
    target.write_text("mine")
    out = run("policy", "init", target)
    assert out.exit_code == 2 and "exists: use --force" in out.output
    assert target.read_text() == "mine"
    missing = run("policy", "init", tmp_path / "nowhere" / "p.toml")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert run("policy", "init", target, "--force").exit_code == 0


def test_unknown_ids_are_usage_errors(delivery: Path) -> None:
    run("scan", delivery / "ep101" / "final", "--mode", "enforce")
    revoke = run("revoke", "999")
    assert revoke.exit_code == 2 and "no approval #999" in revoke.output
    restore = run("quarantine", "restore", "999")
    assert restore.exit_code == 2 and "no quarantined file #999" in restore.output
    show = run("ledger", "show", "999")
    assert show.exit_code == 2 and "no decision #999" in show.output
    # a restore refused because something sits at the original path stays a failure (1)
    move = json.loads(run("quarantine", "list", "--json").stdout)[0]
    Path(move["original_path"]).write_bytes(b"someone else's file")
    refused = run("quarantine", "restore", str(move["id"]))
    assert refused.exit_code == 1 and "exists now" in refused.output


@pytest.mark.parametrize("command", [["ledger", "list"], ["ledger", "events"],
                                     ["ledger", "export"], ["report", "--json"]])
@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "01/11/2026", ""])
def test_bad_since_is_refused_not_an_empty_result(delivery: Path, command: list[str],
                                                  since: str) -> None:
    run("scan", delivery)
    out = run(*command, "--since", since)
    assert out.exit_code == 2, out.output
    assert "--since" in out.output and "2026-12-31" in out.output
    assert out.stdout == ""


def test_since_compares_times_whatever_the_zone(delivery: Path) -> None:
    run("scan", delivery)
    every = json.loads(run("ledger", "list", "--json").stdout)
    assert len(every) == 7
    assert len(json.loads(run("ledger", "list", "--json", "--since", "2000-01-01").stdout)) == 7
    first = datetime.fromisoformat(every[0]["time"])
    # the same instant written in another zone selects the same rows
    same = first.astimezone(timezone(timedelta(hours=-5)))
    got = json.loads(run("ledger", "list", "--json", "--since", same.isoformat()).stdout)
    assert len(got) == 7
    assert json.loads(run("ledger", "list", "--json", "--since", "2999-01-01").stdout) == []
    assert run("report", "--json", "--since", "2000-01-01T00:00Z").exit_code == 0


# -- the ledger's folder, and --dry-run ------------------------------------------------------

def test_a_ledger_in_a_missing_folder_is_refused(tmp_path: Path, delivery: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    typo = tmp_path / "stat" / "ledger.db"
    for args in (["scan", delivery], ["scan", delivery, "--dry-run"], ["check", delivery],
                 ["ledger", "list"], ["approvals"], ["revoke", "1"]):
        out = run(*args, "--ledger", typo)
        assert out.exit_code == 2, (args, out.output)
        assert f"the ledger's folder {typo.parent} does not exist" in out.output
    monkeypatch.setenv("PROVGATE_LEDGER", str(typo))
    out = run("approve", delivery / "ep101" / "final" / "human_capture.jpg", "--ref", "R",
              "--by", "B")
    assert out.exit_code == 2 and str(typo.parent) in out.output
    assert not typo.parent.exists()


def test_the_default_ledger_folder_is_still_created(tmp_path: Path, delivery: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVGATE_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert run("scan", delivery).exit_code == 0
    assert (tmp_path / "xdg" / "provgate" / "ledger.db").is_file()


def test_dry_run_creates_no_file(tmp_path: Path, delivery: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the default location: no ledger, no folder
    monkeypatch.delenv("PROVGATE_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    records = run_json("scan", delivery, "--dry-run")
    assert len(records) == 7
    assert not (tmp_path / "xdg").exists()
    # a named ledger in an empty folder: still empty
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("scan", delivery, "--dry-run", "--ledger", empty / "l.db").exit_code == 0
    assert list(empty.iterdir()) == []
    # an existing ledger: read (its approvals count), never written, nothing left beside it
    led = tmp_path / "kept" / "l.db"
    led.parent.mkdir()
    final = delivery / "ep101" / "final"
    assert run("approve", final / "ai_genfill_composite.jpg", "--ref", "R", "--by", "B",
               "--ledger", led).exit_code == 0
    before = {p.name: p.read_bytes() for p in led.parent.iterdir()}
    recs = by_name(run_json("scan", final, "--dry-run", "--ledger", led))
    assert recs["ai_genfill_composite.jpg"]["action"] == "allow"
    assert {p.name: p.read_bytes() for p in led.parent.iterdir()} == before
