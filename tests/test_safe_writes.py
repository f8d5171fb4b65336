"""Safe paths for everything provgate writes, and moves that finish (issue 12).

Each test performs the attack for real: symlinks planted where provgate writes, folders owned
by another user (uid 65534), a quarantine that leads into the delivery, a full quarantine
filesystem, a quarantined copy changed behind provgate's back. None of them may make provgate
write through a link, into someone else's folder, or put back bytes it did not quarantine.
``fs.protected_symlinks`` is not relied on: the links are planted in ordinary (not sticky)
folders, where that sysctl never protects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLES, by_name, run, run_json, tmpfs
from provgate import actions, data, safefs
from provgate.ledger import Ledger
from provgate.safefs import LockHeld, UnsafePath

NOBODY = 65534
AI, AI_PNG = "ai_iptc_generated.jpg", "ai_a1111_txt2img.png"
RECEIPT = actions.RECEIPT_SUFFIX


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned file an attacker would love provgate to overwrite or truncate."""
    v = tmp_path / "root-only" / "precious.conf"
    v.parent.mkdir()
    v.write_text("root's own settings\n")
    os.chmod(v, 0o600)
    return v


def fresh_final(tmp_path: Path, name: str) -> Path:
    """A final folder of its own with the two files the default policy blocks (a scan of
    files already decided records no new decision, so each attempt gets new files)."""
    final = tmp_path / name / "final"
    final.mkdir(parents=True)
    for f in (AI, AI_PNG):
        shutil.copy2(SAMPLES / f, final / f)
    return final


def enforce(folder: Path, quarantine: Path) -> dict[str, dict]:
    return by_name(run_json("scan", folder, "--mode", "enforce", "--quarantine", quarantine))


def moves(ledger_path: Path) -> list[dict]:
    with Ledger(ledger_path) as led:
        return led.moves()


# -- receipts ----------------------------------------------------------------------------------

def test_a_link_at_the_receipts_temporary_name_is_never_followed(
        delivery: Path, tmp_path: Path, victim: Path) -> None:
    final = delivery / "ep101" / "final"
    q = tmp_path / "q"
    q.mkdir(mode=0o700)
    planted = q / f"{AI}{RECEIPT}.tmp"  # the temporary name provgate used to write through
    planted.symlink_to(victim)
    recs = enforce(final, q)
    assert recs[AI]["outcome"] == f"quarantined to {q / AI}"
    assert victim.read_text() == "root's own settings\n"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)  # left alone
    receipt = q / f"{AI}{RECEIPT}"
    assert not receipt.is_symlink() and mode(receipt) == 0o600
    data.validate(json.loads(receipt.read_text()), "receipt", "receipt")


def test_a_link_at_the_receipts_own_name_is_replaced_not_followed(
        delivery: Path, tmp_path: Path, victim: Path, ledger_path: Path) -> None:
    q = tmp_path / "q"
    enforce(delivery / "ep101" / "final", q)
    move = next(m for m in moves(ledger_path) if m["quarantined_path"].endswith(AI))
    receipt = Path(move["receipt_path"])
    receipt.unlink()
    receipt.symlink_to(victim)
    with Ledger(ledger_path) as led:
        actions.write_receipt(move, led.decision(move["decision_id"]))
    assert victim.read_text() == "root's own settings\n"
    assert not receipt.is_symlink() and mode(receipt) == 0o600
    assert json.loads(receipt.read_text())["move_id"] == move["id"]


def test_receipts_in_a_folder_another_user_may_write_are_refused(
        delivery: Path, tmp_path: Path, victim: Path) -> None:
    """The attacker's own folder as the quarantine, a link planted in it: nothing written."""
    q = tmp_path / "q"
    q.mkdir()
    os.chown(q, NOBODY, NOBODY)
    (q / f"{AI}{RECEIPT}.tmp").symlink_to(victim)
    recs = enforce(delivery / "ep101" / "final", q)
    rec = recs[AI]
    assert rec["outcome"].startswith("left in place: could not quarantine")
    assert "belongs to nobody" in rec["outcome"] or "belongs to uid 65534" in rec["outcome"]
    assert (delivery / "ep101" / "final" / AI).exists()
    assert victim.read_text() == "root's own settings\n"
    assert sorted(p.name for p in q.iterdir()) == [f"{AI}{RECEIPT}.tmp"]


# -- the quarantine folder ---------------------------------------------------------------------

def test_a_symlinked_folder_inside_the_quarantine_receives_nothing(
        delivery: Path, tmp_path: Path) -> None:
    q = tmp_path / "q"
    q.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (q / "ep101").symlink_to(elsewhere, target_is_directory=True)
    recs = run_json("scan", delivery, "--mode", "enforce", "--quarantine", q)
    blocked = [r for r in recs if r["action"] == "block"]
    assert len(blocked) == 2
    for r in blocked:
        assert r["outcome"].startswith("left in place: could not quarantine"), r["outcome"]
        assert "is a symbolic link" in r["outcome"]
        assert Path(r["path"]).exists()
    assert list(elsewhere.rglob("*")) == []  # no hard link, no receipt
    assert "failed" in run("quarantine", "list").stdout


def test_a_quarantine_that_is_a_link_into_the_delivery_quarantines_nothing_into_it(
        delivery: Path, tmp_path: Path) -> None:
    final = delivery / "ep101" / "final"
    before = sorted(p.name for p in final.iterdir())
    link = tmp_path / "quarantine-link"
    link.symlink_to(final, target_is_directory=True)
    # it used to make x~2.jpg, then x~2~2.jpg... in the delivery: now refused before any run
    refused = run("scan", final, "--mode", "enforce", "--quarantine", link)
    assert refused.exit_code == 2 and "lies inside" in refused.stderr
    assert sorted(p.name for p in final.iterdir()) == before
    recs = enforce(fresh_final(tmp_path, "next"), link)  # nor the next delivery's files
    assert recs[AI]["outcome"].startswith("left in place: could not quarantine")
    assert sorted(p.name for p in final.iterdir()) == before
    # the lead's check at start-up refuses it whatever form it takes
    for bad in (link, final / ".quarantine", delivery, tmp_path):
        with pytest.raises(UnsafePath):
            safefs.check_quarantine(bad, [str(delivery)])
    assert safefs.check_quarantine(tmp_path / "q", [str(delivery)]) == tmp_path / "q"


def test_a_quarantine_pre_created_by_another_user_is_refused(
        delivery: Path, tmp_path: Path) -> None:
    """uid 65534 makes the quarantine folder before provgate does, to take the files away."""
    q = tmp_path / "q"
    q.mkdir(mode=0o700)
    os.chown(q, NOBODY, NOBODY)
    recs = enforce(delivery / "ep101" / "final", q)
    for name in (AI, AI_PNG):
        assert recs[name]["outcome"].startswith("left in place: could not quarantine")
        assert (delivery / "ep101" / "final" / name).exists()
    assert list(q.iterdir()) == []  # nothing for its owner to move away
    with pytest.raises(UnsafePath, match="belongs to"):
        safefs.check_quarantine(q, [])
    # a private quarantine below a folder that user owns is theirs to rename away: refused too
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    recs = enforce(fresh_final(tmp_path, "next"), theirs / "q")
    assert recs[AI]["outcome"].startswith("left in place: could not quarantine")
    assert not (theirs / "q").exists()


def test_a_quarantine_below_a_folder_others_may_write_is_refused(
        delivery: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone may rename what is in it
    recs = enforce(delivery / "ep101" / "final", shared / "q")
    assert "may be written by others" in recs[AI]["outcome"]
    assert not (shared / "q").exists()
    # a root-owned sticky folder (like /tmp) may be crossed; the quarantine itself is ours
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    recs = enforce(fresh_final(tmp_path, "next"), sticky / "q")
    assert recs[AI]["outcome"] == f"quarantined to {sticky / 'q' / AI}"
    with pytest.raises(UnsafePath, match="shared by everyone"):
        safefs.check_quarantine(sticky, [])  # but never the sticky folder itself


# -- lock and status -----------------------------------------------------------------------------

def test_links_at_the_lock_and_status_never_touch_root_files(tmp_path: Path, victim: Path) -> None:
    """protected_symlinks off, as it were: the links sit in an ordinary root folder (0755),
    where that sysctl never protects; the code must not follow them anyway."""
    state = tmp_path / "srv"
    state.mkdir(mode=0o755)
    ledger = state / "ledger.db"
    Ledger(ledger).close()
    other = victim.parent / "other.conf"
    other.write_text("another root file\n")
    lock = safefs.lock_path(ledger)
    lock.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        safefs.open_lock(ledger)
    lock.unlink()
    os.link(other, lock)  # a hard link to a root file at the lock's name
    with pytest.raises(UnsafePath, match="not provgate's lock"):
        safefs.open_lock(ledger)
    lock.unlink()
    status = Path(f"{ledger}.status.json")
    status.symlink_to(victim)
    Path(f"{ledger}.status.tmp").symlink_to(other)  # the temporary name the daemon used
    safefs.write_private(status, json.dumps({"state": "running"}))
    assert victim.read_text() == "root's own settings\n"
    assert other.read_text() == "another root file\n"
    assert not status.is_symlink() and mode(status) == 0o600
    assert json.loads(safefs.read_private(status)) == {"state": "running"}
    status.unlink()
    status.symlink_to(victim)
    with pytest.raises(OSError):
        safefs.read_private(status)  # a link is never read as the status either
    with safefs.open_lock(ledger) as held:
        assert held.path == lock and mode(lock) == 0o600
        assert lock.read_text() == str(os.getpid())
    assert victim.read_text() == "root's own settings\n"


def test_lock_and_status_in_a_folder_others_may_write_are_refused(tmp_path: Path) -> None:
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    Ledger(open_folder / "ledger.db").close()
    os.chmod(open_folder, 0o777)
    with pytest.raises(UnsafePath, match="may be written by others"):
        safefs.open_lock(open_folder / "ledger.db")
    with pytest.raises(UnsafePath):
        safefs.write_private(open_folder / "ledger.db.status.json", "{}")
    assert not [p for p in open_folder.iterdir() if "lock" in p.name or "status" in p.name]
    # a sticky folder like /tmp: allowed, but a lock someone else made there is not ours
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    Ledger(sticky / "ledger.db").close()
    squat = safefs.lock_path(sticky / "ledger.db")
    squat.write_text("")
    os.chown(squat, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="not provgate's lock"):
        safefs.open_lock(sticky / "ledger.db")
    squat.unlink()
    safefs.open_lock(sticky / "ledger.db").release()
    # a link another user planted in the shared folder is not followed to a state folder
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    planted = sticky / "their-link"
    planted.symlink_to(private, target_is_directory=True)
    os.lchown(planted, NOBODY, NOBODY)
    with pytest.raises(UnsafePath, match="symbolic link"):
        safefs.write_private(planted / "ledger.db.status.json", "{}")
    assert list(private.iterdir()) == []


def test_the_lock_keys_on_the_ledgers_real_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ledger = state / "ledger.db"
    Ledger(ledger).close()
    alias = tmp_path / "alias"
    alias.symlink_to(state, target_is_directory=True)
    hard = state / "same-ledger.db"
    os.link(ledger, hard)
    with safefs.open_lock(ledger):
        for other in (alias / "ledger.db", state / "." / "ledger.db", hard,
                      Path(os.path.relpath(ledger))):
            with pytest.raises(LockHeld):
                safefs.open_lock(other)
        # another process through the symlinked path is refused, naming our pid
        out = subprocess.run([sys.executable, "-c", "import sys; from provgate import safefs; "
                              "safefs.open_lock(sys.argv[1])", str(alias / "ledger.db")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and f"pid {os.getpid()}" in out.stderr
    safefs.open_lock(alias / "ledger.db").release()  # free again once released


# -- modes ---------------------------------------------------------------------------------------

def test_everything_provgate_writes_is_private(delivery: Path, tmp_path: Path) -> None:
    ledger = tmp_path / "private" / "ledger.db"
    ledger.parent.mkdir()
    q = tmp_path / "q"
    run_json("scan", delivery, "--mode", "enforce", "--quarantine", q, "--ledger", ledger)
    assert mode(ledger) == 0o600
    for side in (Path(f"{ledger}-wal"), Path(f"{ledger}-shm")):
        if side.exists():
            assert mode(side) == 0o600  # SQLite gives them the ledger's mode
    folders = [q, *(p for p in q.rglob("*") if p.is_dir())]
    assert len(folders) >= 3 and all(mode(f) == 0o700 for f in folders)
    receipts = list(q.rglob(f"*{RECEIPT}"))
    assert len(receipts) == 2 and all(mode(r) == 0o600 for r in receipts)
    # a new ledger's missing folders are made 0700 too
    deep = tmp_path / "a" / "b" / "ledger.db"
    assert safefs.create_private_file(deep, parents=True)
    assert mode(deep) == 0o600 and mode(deep.parent) == 0o700 and mode(deep.parent.parent) == 0o700
    # with the producers' group: files 0660 and folders 2770 of that group
    grouped = tmp_path / "grouped"
    fd = safefs.open_dir(grouped / "sub", create=True, group=NOBODY)
    os.close(fd)
    assert mode(grouped / "sub") == 0o2770 and os.stat(grouped / "sub").st_gid == NOBODY
    safefs.write_private(grouped / "sub" / "status.json", "{}", group=NOBODY)
    st = os.stat(grouped / "sub" / "status.json")
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == NOBODY


def test_a_dangling_link_at_a_new_ledgers_name_is_refused(tmp_path: Path) -> None:
    """SQLite would create the link's target (anywhere): the ledger is never made through it."""
    state = tmp_path / "st"
    state.mkdir()
    target = tmp_path / "root-only" / "new-file"
    target.parent.mkdir()
    (state / "ledger.db").symlink_to(target)
    result = run("scan", SAMPLES / "unknown_camera.jpg", "--ledger", state / "ledger.db")
    assert result.exit_code == 2 and "symbolic link to a missing file" in result.output
    assert not target.exists()


# -- moves that finish ---------------------------------------------------------------------------

def test_a_move_that_failed_for_a_full_quarantine_is_retried_with_a_fresh_receipt(
        tmp_path: Path, ledger_path: Path) -> None:
    final = tmp_path / "big" / "final"
    final.mkdir(parents=True)
    big = final / "big_ai.jpg"
    shutil.copy2(SAMPLES / AI, big)
    with open(big, "ab") as fh:
        fh.write(os.urandom(200_000))  # more than the whole quarantine filesystem holds
    fp = sha(big)
    with tmpfs("64k") as mnt:
        os.chmod(mnt, 0o700)
        q = mnt / "q"
        rec = enforce(final, q)["big_ai.jpg"]
        assert rec["outcome"].startswith("left in place") and "full" in rec["outcome"]
        [move] = moves(ledger_path)
        assert move["state"] == "failed" and "the quarantine filesystem is full" in move["error"]
        receipt = Path(move["receipt_path"])
        assert not receipt.exists(), "no receipt for a file that never came"
        assert not list(q.rglob("*provgate-partial")) and not list(q.rglob("*provgate-tmp"))
        receipt.write_text('{"stale": "a receipt an older run left behind"}')
        # still full: the retry fails again, and says so, and leaves nothing behind
        with Ledger(ledger_path) as led:
            [again] = actions.retry_failed(led.moves("failed"),
                                           lambda m: led.decision(m["decision_id"]))
        assert again.state == "failed" and "full" in (again.error or "")
        assert big.exists()
        subprocess.run(["mount", "-o", "remount,size=2m", str(mnt)], check=True)
        with Ledger(ledger_path) as led:
            [done] = actions.retry_failed(led.moves("failed"),
                                          lambda m: led.decision(m["decision_id"]))
            assert done.state == "done" and done.error is None, done
            led.update_move(done.move_id, state=done.state, error=done.error)
            assert led.moves("failed") == [] and [m["state"] for m in led.moves()] == ["done"]
        assert not big.exists() and sha(q / "big_ai.jpg") == fp
        doc = json.loads(receipt.read_text())
        data.validate(doc, "receipt", "receipt")
        assert doc["move_id"] == move["id"] and doc["fingerprint"] == fp
        assert mode(receipt) == 0o600
        with Ledger(ledger_path) as led:
            assert actions.retry_failed(led.moves("failed"), led.decision) == []


def test_a_failed_move_gives_up_when_its_file_changed_and_waits_while_its_name_is_taken(
        delivery: Path, tmp_path: Path, ledger_path: Path) -> None:
    final = delivery / "ep101" / "final"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the quarantine folder should be")
    enforce(final, blocker / "q")
    failed = {Path(m["original_path"]).name: m for m in moves(ledger_path)}
    assert {m["state"] for m in failed.values()} == {"failed"}
    # one file is rewritten after its decision: retrying would quarantine undecided content
    changed = final / AI_PNG
    changed.write_bytes(changed.read_bytes() + b"more")
    # the other one's planned name is taken meanwhile by a file that is not it
    blocker.unlink()
    taken = Path(failed[AI]["quarantined_path"])
    taken.parent.mkdir(mode=0o700, parents=True)
    taken.write_bytes(b"not the blocked file")

    def retry() -> dict[int, actions.Retried]:
        with Ledger(ledger_path) as led:
            results = {r.move_id: r for r in actions.retry_failed(
                led.moves("failed"), lambda m: led.decision(m["decision_id"]))}
            for r in results.values():
                led.update_move(r.move_id, state=r.state, error=r.error)
        return results

    results = retry()
    gave_up = results[failed[AI_PNG]["id"]]
    assert gave_up.state == "failed" and gave_up.error.startswith(actions.GIVEN_UP)
    assert "changed since the decision" in gave_up.error and changed.exists()
    waiting = results[failed[AI]["id"]]
    assert waiting.state == "failed" and "holds another file" in waiting.error
    assert not waiting.error.startswith(actions.GIVEN_UP)
    assert taken.read_bytes() == b"not the blocked file" and (final / AI).exists()
    taken.unlink()  # the name is free again: the next retry finishes the move
    results = retry()
    assert list(results) == [failed[AI]["id"]]  # given up: never tried again
    assert results[failed[AI]["id"]].state == "done"
    assert sha(taken) == failed[AI]["fingerprint"] and not (final / AI).exists()


def test_restore_refuses_a_quarantined_copy_that_no_longer_matches(delivery: Path) -> None:
    final = delivery / "ep101" / "final"
    shutil.copy2(SAMPLES / "ai_iptc_generated.xmp", final / "ai_iptc_generated.jpg.xmp") \
        if (SAMPLES / "ai_iptc_generated.xmp").exists() else None
    run_json("scan", final, "--mode", "enforce")
    move = next(m for m in json.loads(run("quarantine", "list", "--json").stdout)
                if m["original_path"].endswith(AI))
    held = Path(move["quarantined_path"])
    good = held.read_bytes()
    held.write_bytes(good + b"<script>swapped in quarantine</script>")  # same inode, new bytes
    refused = run("quarantine", "restore", str(move["id"]))
    assert refused.exit_code == 1
    assert "no longer matches its fingerprint" in refused.output
    assert not (final / AI).exists() and held.exists()
    assert json.loads(run("quarantine", "list", "--json").stdout)[0]["state"] == "done"
    # another file swapped in under the same name is refused the same way
    held.unlink()
    held.write_bytes(b"someone else's bytes")
    assert run("quarantine", "restore", str(move["id"])).exit_code == 1
    assert not (final / AI).exists()
    held.unlink()
    held.write_bytes(good)  # the quarantined bytes again: restored
    assert run("quarantine", "restore", str(move["id"])).exit_code == 0
    assert sha(final / AI) == move["fingerprint"] and not held.exists()


def test_restore_refuses_a_sidecar_that_no_longer_matches(tmp_path: Path) -> None:
    final = tmp_path / "show" / "final"
    final.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, final / "clip.jpg")
    (final / "clip.jpg.xmp").write_text(
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
        "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/></x:xmpmeta>")
    recs = by_name(run_json("scan", final, "--mode", "enforce"))
    assert recs["clip.jpg"]["outcome"].startswith("quarantined to ")
    move = json.loads(run("quarantine", "list", "--json").stdout)[0]
    [side] = move["sidecars"]
    Path(side["quarantined_path"]).write_text("<x:xmpmeta>edited in quarantine</x:xmpmeta>")
    refused = run("quarantine", "restore", str(move["id"]))
    assert refused.exit_code == 1 and "sidecar copy" in refused.output
    assert not (final / "clip.jpg").exists() and not (final / "clip.jpg.xmp").exists()
