"""The watch daemon on real inotify and polling observers, real files, a real ledger."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (SAMPLES, Running, hanging_exiftool, names, run, tmpfs, wait_for,
                      without_dac_override)
from provgate.errors import LedgerError
from provgate.ledger import Ledger
from provgate.session import Options
from provgate.watch import Watcher, filesystem_type

AI = SAMPLES / "ai_iptc_generated.jpg"
CLEAN = SAMPLES / "unknown_camera.jpg"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "delivery"
    (r / "ep101" / "final").mkdir(parents=True)
    (r / "ep101" / "temp").mkdir(parents=True)
    return r


def test_new_file_is_decided_and_blocked_one_quarantined(root: Path, quarantine_dir: Path) -> None:
    with Running([root]) as w:
        shutil.copy2(AI, root / "ep101" / "final" / "shot.jpg")
        shutil.copy2(CLEAN, root / "ep101" / "final" / "plate.jpg")
        shutil.copy2(AI, root / "ep101" / "temp" / "idea.jpg")
        got = wait_for(lambda: len(w.decisions()) >= 3 and w.decisions())
    by = {Path(d["path"]).name: d for d in got}
    assert by["shot.jpg"]["action"] == "block" and by["shot.jpg"]["actor"] == "daemon"
    assert by["plate.jpg"]["action"] == "allow"
    assert by["idea.jpg"]["action"] == "flag"
    assert not (root / "ep101" / "final" / "shot.jpg").exists()
    assert (quarantine_dir / "ep101" / "final" / "shot.jpg").exists()
    assert len(got) == 3  # the quarantine move did not feed anything back in


def test_growing_file_is_read_only_when_complete(root: Path) -> None:
    data = AI.read_bytes()
    target = root / "ep101" / "final" / "growing.jpg"
    with Running([root], settle=1.0) as w:
        with open(target, "wb") as fh:
            for i in range(0, len(data), 1000):  # a slow transfer: longer than the window
                fh.write(data[i:i + 1000])
                fh.flush()
                time.sleep(0.3)
                assert w.decisions() == []
        got = wait_for(lambda: w.decisions())
    import hashlib
    assert got[0]["fingerprint"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert len(got) == 1


def test_partial_then_rename_counts_once(root: Path) -> None:
    with Running([root]) as w:
        part = root / "ep101" / "final" / "clip.jpg.part"
        shutil.copy2(CLEAN, part)
        # a partial left standing in a final zone is an incomplete delivery: held, never read
        held = wait_for(lambda: w.decisions())
        assert names(held) == ["clip.jpg.part"] and held[0]["action"] == "escalate"
        assert "transfer partial" in held[0]["error"] and held[0]["fingerprint"] is None
        os.rename(part, root / "ep101" / "final" / "clip.jpg")
        got = wait_for(lambda: len(w.decisions()) > 1 and w.decisions())
        time.sleep(1.0)
        assert names(w.decisions()) == ["clip.jpg.part", "clip.jpg"]
    assert got[1]["kind"] == "unknown"


def test_tree_moved_in_with_one_mv(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "incoming" / "reel2"
    (outside / "sub").mkdir(parents=True)
    shutil.copy2(CLEAN, outside / "a.jpg")
    shutil.copy2(AI, outside / "sub" / "b.jpg")
    with Running([root], mode="warn") as w:
        os.rename(tmp_path / "incoming" / "reel2", root / "ep101" / "final" / "reel2")
        wait_for(lambda: len(w.decisions()) >= 2)
    assert sorted(names(w.decisions())) == ["a.jpg", "b.jpg"]


def test_catch_up_at_start_and_nothing_decided_twice(root: Path) -> None:
    shutil.copy2(AI, root / "ep101" / "temp" / "before.jpg")
    with Running([root]) as w:
        wait_for(lambda: w.decisions())
    with Running([root]) as w:
        shutil.copy2(CLEAN, root / "ep101" / "temp" / "after.jpg")
        wait_for(lambda: len(w.decisions()) >= 2)
        time.sleep(0.5)
        assert sorted(names(w.decisions())) == ["after.jpg", "before.jpg"]


def test_files_added_while_down_are_caught_up(root: Path) -> None:
    with Running([root]) as w:
        shutil.copy2(CLEAN, root / "ep101" / "temp" / "one.jpg")
        wait_for(lambda: w.decisions())
    shutil.copy2(CLEAN, root / "ep101" / "temp" / "two.jpg")  # while nobody watches
    with Running([root]) as w:
        wait_for(lambda: len(w.decisions()) >= 2)


def test_polling_observer(root: Path) -> None:
    with Running([root], observer="polling", poll_interval=0.3) as w:
        shutil.copy2(AI, root / "ep101" / "temp" / "polled.jpg")
        got = wait_for(lambda: w.decisions(), 20)
    assert got[0]["kind"] == "ai_generated"


def test_overflow_schedules_a_rescan(root: Path) -> None:
    import logging
    with Running([root]) as w:
        before = w.watcher.stats.rescans
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost")
        wait_for(lambda: w.watcher.stats.rescans > before)


def test_burst_of_files(root: Path) -> None:
    folder = root / "ep101" / "temp" / "burst"
    folder.mkdir()
    with Running([root], mode="warn") as w:
        for i in range(300):
            shutil.copy2(CLEAN, folder / f"f{i:03}.jpg")
        wait_for(lambda: len(w.decisions()) >= 300, 120)
    assert len(set(names(w.decisions()))) == 300


def test_second_instance_on_the_same_ledger_is_refused(root: Path) -> None:
    with Running([root]):
        other = Watcher(Options(), [str(root)])
        with pytest.raises(LedgerError, match="another provgate watch"):
            other.run()


def test_filesystem_type_from_the_mount_table(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\nserver:/export /mnt/nas nfs4 rw 0 0\n")
    assert filesystem_type("/mnt/nas/show/ep101", str(mounts)) == "nfs4"
    assert filesystem_type("/srv/local", str(mounts)) == "ext4"


def test_daemon_stops_on_sigterm_and_reports_status(root: Path, tmp_path: Path) -> None:
    import socket
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's end of Type=notify
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    proc = subprocess.Popen([sys.executable, "-m", "provgate", "watch", str(root), "--settle",
                             "0.5"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: run("status").exit_code == 0, 30)
        shutil.copy2(AI, root / "ep101" / "final" / "x.jpg")
        wait_for(lambda: "decided: 1" in run("status").stdout, 30)
        second = subprocess.run([sys.executable, "-m", "provgate", "watch", str(root)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 3 and "another provgate watch" in second.stderr
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    told = []
    while True:
        try:
            told.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    notify.close()
    assert told[0].startswith("READY=1\nSTATUS=watching 1 root(s)")
    assert any(m.startswith("WATCHDOG=1") for m in told) and told[-1] == "STOPPING=1"
    status = run("status")
    assert status.exit_code == 1 and "not running" in status.stdout


def test_sighup_reloads_policy_and_refuses_a_bad_one(root: Path, tmp_path: Path) -> None:
    from provgate.policy import DEFAULT_POLICY
    pol = tmp_path / "p.toml"
    pol.write_text(DEFAULT_POLICY.read_text())
    proc = subprocess.Popen([sys.executable, "-m", "provgate", "watch", str(root), "--settle",
                             "0.3", "--policy", str(pol)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: run("status").exit_code == 0, 30)
        pol.write_text("version = 1\nnonsense = true\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        pol.write_text(DEFAULT_POLICY.read_text().replace('[zones.temp]\npaths = [',
                                                          '[zones.temp]\npaths = ["**/final/**", '))
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        shutil.copy2(AI, root / "ep101" / "temp" / "y.jpg")
        wait_for(lambda: "decided: 1" in run("status").stdout, 30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "policy reload refused" in err and "policy reloaded" in err
    assert json.loads(run("ledger", "list", "--json").stdout)[0]["action"] == "flag"


def test_root_that_disappears_and_comes_back(root: Path, tmp_path: Path) -> None:
    with Running([root], mode="warn") as w:
        shutil.copy2(CLEAN, root / "ep101" / "temp" / "a.jpg")
        wait_for(lambda: w.decisions())
        os.rename(root, tmp_path / "unmounted")  # the share goes away
        wait_for(lambda: str(root) in w.watcher.roots_down)
        shutil.copy2(AI, tmp_path / "unmounted" / "ep101" / "temp" / "b.jpg")  # written elsewhere
        os.rename(tmp_path / "unmounted", root)  # and comes back
        wait_for(lambda: len(w.decisions()) >= 2, 30)
        shutil.copy2(AI, root / "ep101" / "temp" / "c.jpg")  # the new observer hears this
        wait_for(lambda: len(w.decisions()) >= 3, 30)
    assert sorted(names(w.decisions())) == ["a.jpg", "b.jpg", "c.jpg"]


def test_daemon_killed_9_mid_batch_then_restarted(root: Path, quarantine_dir: Path) -> None:
    import hashlib
    final = root / "ep101" / "final"
    for i in range(120):
        shutil.copy2(AI if i % 2 else CLEAN, final / f"f{i:03}.jpg")
        with open(final / f"f{i:03}.jpg", "ab") as fh:
            fh.write(str(i).encode())
    before = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in final.iterdir())
    proc = subprocess.Popen([sys.executable, "-m", "provgate", "watch", str(root), "--mode",
                             "enforce", "--settle", "0.3"], stderr=subprocess.DEVNULL)
    wait_for(lambda: quarantine_dir.exists() and any(quarantine_dir.rglob("*.jpg")), 60)
    proc.kill()  # -9, in the middle of the catch-up batch
    proc.wait()

    def everything() -> list[str]:
        files = [p for d in (final, quarantine_dir) for p in d.rglob("*.jpg")]
        return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    assert set(everything()) == set(before)  # nothing lost (mid-move: maybe in both)
    with Running([root]) as w:
        wait_for(lambda: len(list(final.iterdir())) == 60, 60)
        decisions = w.decisions()
    assert everything() == before
    ids = [d["path"] for d in decisions]
    assert len(ids) == len(set(ids)) == 120  # none decided twice
    assert run("ledger", "verify").exit_code == 0


def test_deletions_and_moves_are_recorded_as_such(root: Path, tmp_path: Path) -> None:
    final, temp = root / "ep101" / "final", root / "ep101" / "temp"
    with Running([root], mode="warn") as w:
        for n in ("a.jpg", "b.jpg", "c.jpg"):
            shutil.copy2(CLEAN, final / n)
        wait_for(lambda: len(w.decisions()) >= 3)
        (final / "a.jpg").unlink()
        os.rename(final / "b.jpg", temp / "b.jpg")  # within the tree, into another zone
        shutil.move(final / "c.jpg", tmp_path / "c_outside.jpg")  # out of the tree
        events = wait_for(lambda: len(w.events()) >= 3 and w.events())
        wait_for(lambda: any(d["path"] == str(temp / "b.jpg") for d in w.decisions()))
    by = {Path(e["path"]).name: e for e in events}
    assert by["a.jpg"]["event"] == "removed" and by["a.jpg"]["dest"] is None
    assert by["b.jpg"]["event"] == "moved" and by["b.jpg"]["dest"] == str(temp / "b.jpg")
    assert by["c.jpg"]["event"] == "removed"
    assert all(e["decision_id"] and e["fingerprint"].startswith("sha256:") for e in events)
    moved = [d for d in w.decisions() if d["path"] == str(temp / "b.jpg")]
    assert len(moved) == 1 and moved[0]["zone"] == "temp"
    verify = run("ledger", "verify")
    assert verify.exit_code == 0 and "3 departures, chain intact" in verify.stdout
    listed = run("ledger", "events").stdout
    assert "moved" in listed and "-> " in listed and "temp/b.jpg" in listed
    report = json.loads(run("report", "--json").stdout)
    gone = {Path(f["path"]).name + f["zone"]: f.get("departed") for f in report["files"]}
    assert gone["a.jpgfinal"]["event"] == "removed"
    assert gone["b.jpgfinal"]["dest"] == str(temp / "b.jpg") and gone["b.jpgtemp"] is None
    assert report["totals"]["departed"] == 3


def test_departures_while_down_are_caught_up(root: Path) -> None:
    final = root / "ep101" / "final"
    with Running([root], mode="warn") as w:
        shutil.copy2(CLEAN, final / "a.jpg")
        shutil.copy2(AI, final / "b.jpg")
        wait_for(lambda: len(w.decisions()) >= 2)
    (final / "a.jpg").unlink()
    os.rename(final / "b.jpg", final / "b_v2.jpg")
    with Running([root], mode="warn") as w:
        events = wait_for(lambda: len(w.events()) >= 2 and w.events())
    by = {Path(e["path"]).name: e for e in events}
    assert by["a.jpg"]["event"] == "removed"
    assert by["b.jpg"]["event"] == "moved" and by["b.jpg"]["dest"] == str(final / "b_v2.jpg")
    assert sorted(names(w.decisions())) == ["a.jpg", "b.jpg", "b_v2.jpg"]
    with Running([root], mode="warn") as w:  # a third start records nothing again
        time.sleep(1)
        assert len(w.events()) == 2 and len(w.decisions()) == 3


def test_file_deleted_while_queued(root: Path) -> None:
    final = root / "ep101" / "final"
    with Running([root], settle=2.0) as w:
        shutil.copy2(AI, final / "gone.jpg")
        time.sleep(0.3)
        (final / "gone.jpg").unlink()  # before its settle window ended
        shutil.copy2(CLEAN, final / "kept.jpg")
        wait_for(lambda: w.decisions(), 20)
        time.sleep(2.5)
        assert names(w.decisions()) == ["kept.jpg"] and w.events() == []
        assert w.watcher.queue.waiting == []


def test_own_quarantine_on_another_filesystem_is_not_a_departure(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs("8m") as mnt:
        monkeypatch.setenv("PROVGATE_QUARANTINE", str(mnt / "quarantine"))
        final = root / "ep101" / "final"
        with Running([root]) as w:
            shutil.copy2(AI, final / "shot.jpg")
            wait_for(lambda: (mnt / "quarantine" / "ep101" / "final" / "shot.jpg").exists())
            time.sleep(1)  # the deletion event of the move has been heard by now
            events = w.events()
        assert not (final / "shot.jpg").exists()
        kept = mnt / "quarantine" / "ep101" / "final" / "shot.jpg"
        assert kept.read_bytes() == AI.read_bytes()
        assert json.loads(Path(str(kept) + ".provgate-receipt.json").read_text())["original_path"] \
            == str(final / "shot.jpg")
        assert events == []  # the quarantine table has it; no 'removed' on top


def test_exiftool_hanging_on_one_file_the_daemon_goes_on(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = hanging_exiftool(tmp_path, monkeypatch)
    temp = root / "ep101" / "temp"
    with Running([root], timeout=2, catalogue=cat, mode="warn") as w:
        for n in ("a.jpg", "hang.jpg", "b.jpg"):
            shutil.copy2(AI, temp / n)
        got = wait_for(lambda: len(w.decisions()) >= 3 and w.decisions(), 40)
        shutil.copy2(AI, temp / "after.jpg")  # the pool was restarted: later files go on
        wait_for(lambda: len(w.decisions()) >= 4, 40)
        assert w.error is None
    by = {Path(d["path"]).name: d for d in w.decisions()}
    assert by["hang.jpg"]["kind"] == "unreadable" and "no answer" in by["hang.jpg"]["error"]
    assert by["a.jpg"]["kind"] == by["b.jpg"]["kind"] == by["after.jpg"]["kind"] == \
        "ai_generated"
    assert len(got) == 3


def test_permission_denied_subfolder_then_fixed(tmp_path: Path) -> None:
    """Permission checks on even as root (see conftest.without_dac_override)."""
    drop = without_dac_override()
    root = tmp_path / "delivery"
    (root / "open").mkdir(parents=True)
    (root / "locked").mkdir()
    shutil.copy2(CLEAN, root / "open" / "a.jpg")
    shutil.copy2(CLEAN, root / "locked" / "b.jpg")
    os.chmod(root / "locked", 0o000)
    ledger = tmp_path / "state" / "ledger.db"
    proc = subprocess.Popen([*drop, sys.executable, "-m", "provgate", "watch", str(root),
                             "--settle", "0.3", "--ledger", str(ledger)],
                            stderr=subprocess.PIPE, text=True)

    def decided() -> dict[str, dict]:
        if not ledger.exists():
            return {}
        with Ledger(ledger) as led:
            return {os.path.relpath(d["path"], root): d for d in led.decisions()}
    try:
        got = wait_for(lambda: len(decided()) >= 2 and decided(), 30)
        assert got["locked"]["kind"] == "unreadable"
        assert "folder not scanned: permission denied" in got["locked"]["error"]
        shutil.copy2(CLEAN, root / "open" / "c.jpg")  # the daemon goes on
        wait_for(lambda: "open/c.jpg" in decided(), 20)
        os.chmod(root / "locked", 0o755)  # fixed: caught up, and watched from now on
        wait_for(lambda: "locked/b.jpg" in decided(), 30)
        shutil.copy2(CLEAN, root / "locked" / "d.jpg")
        wait_for(lambda: "locked/d.jpg" in decided(), 20)
    finally:
        os.chmod(root / "locked", 0o755)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "is readable now" in err


def test_modified_in_place_and_moved_in_from_outside(root: Path, tmp_path: Path) -> None:
    temp = root / "ep101" / "temp"
    outside = tmp_path / "vendor_drop.jpg"
    shutil.copy2(AI, outside)
    with Running([root], mode="warn") as w:
        shutil.copy2(CLEAN, temp / "plate.jpg")
        first = wait_for(lambda: w.decisions())
        assert first[0]["kind"] == "unknown"
        with open(temp / "plate.jpg", "wb") as fh:  # an editor saves over it
            fh.write(AI.read_bytes())
        os.rename(outside, temp / "vendor_drop.jpg")  # one file moved in
        got = wait_for(lambda: len(w.decisions()) >= 3 and w.decisions())
        time.sleep(0.5)
        assert w.events() == []  # replaced in place, moved in: no departure
    by = [(Path(d["path"]).name, d["kind"]) for d in w.decisions()]
    assert sorted(by) == [("plate.jpg", "ai_generated"), ("plate.jpg", "unknown"),
                          ("vendor_drop.jpg", "ai_generated")]
    assert len(got) == 3


def test_doctor_says_whether_inotify_can_watch_the_tree(tmp_path: Path) -> None:
    from provgate.watch import inotify_check
    tree = tmp_path / "show"
    for i in range(30):
        (tree / f"reel{i:02}" / "final").mkdir(parents=True)
    result = run("doctor", tree)
    assert result.exit_code == 0, result.stdout
    assert "enough for 61 folders" in result.stdout
    ok, message = inotify_check([str(tree)], limit=100)  # a kernel left at a tiny default
    assert not ok
    assert "too low for 61 folders" in message and "sysctl fs.inotify.max_user_watches=" in message


def test_file_open_for_writing_waits_for_its_close(root: Path) -> None:
    """A transfer that stalls longer than the settle window is not read half-written: under
    inotify the file waits for its close-after-write event."""
    import hashlib
    data = AI.read_bytes()
    target = root / "ep101" / "final" / "stalled.jpg"
    with Running([root], settle=0.5, mode="warn") as w:
        with open(target, "wb") as fh:
            fh.write(data[:1000])
            fh.flush()
            time.sleep(2.0)  # four settle windows without a byte
            assert w.decisions() == []
            assert w.watcher.queue.writing and not w.watcher.queue.waiting
            fh.write(data[1000:])
        got = wait_for(lambda: w.decisions())
        os.chmod(target, 0o644)  # an attribute change after the close decides nothing anew
        time.sleep(1.0)
        assert len(w.decisions()) == 1
    assert got[0]["fingerprint"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert got[0]["kind"] == "ai_generated"


def test_systemd_unit_is_valid(tmp_path: Path) -> None:
    """The unit as the README installs it, checked by systemd's own parser."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    from conftest import ROOT
    unit = (ROOT / "hooks" / "systemd" / "provgate-watch.service").read_text()
    assert "Type=notify" in unit and "Restart=on-failure" in unit
    local = tmp_path / "provgate-watch.service"
    local.write_text(unit.replace("/opt/provgate/.venv/bin/provgate",
                                  str(Path(sys.executable).parent / "provgate")))
    out = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "provgate-watch.service" not in out.stderr, out.stderr  # no warning about it


def test_departure_of_a_file_whose_name_is_not_utf8(root: Path) -> None:
    final = os.fsencode(root / "ep101" / "final")
    odd = final + b"/take\xff.jpg"  # Latin-1 from an old Windows share
    with Running([root], mode="warn") as w:
        with open(odd, "wb") as fh:
            fh.write(CLEAN.read_bytes())
        wait_for(lambda: w.decisions())
        os.unlink(odd)
        events = wait_for(lambda: w.events())
    assert events[0]["event"] == "removed" and events[0]["path"].endswith("take\\xff.jpg")


def test_full_disk_under_the_ledger_is_waited_out(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """The ledger's filesystem fills up: the daemon logs it, keeps running, and once space is
    back it catches up, so the file that arrived meanwhile is decided, not dropped."""
    with tmpfs("8m") as mnt:
        monkeypatch.setenv("PROVGATE_LEDGER", str(mnt / "ledger.db"))
        temp = root / "ep101" / "temp"
        with Running([root], mode="warn") as w:
            shutil.copy2(CLEAN, temp / "first.jpg")
            wait_for(lambda: w.decisions())
            filler = mnt / "filler"
            try:  # every byte left on the ledger's filesystem
                with open(filler, "wb") as fh:
                    while True:
                        fh.write(b"\0" * 4096)
                        fh.flush()
            except OSError:
                pass
            for i in range(40):  # enough rows to need new pages
                shutil.copy2(AI, temp / f"while_full_{i:02}.jpg")
            wait_for(lambda: "failed (1 in a row" in caplog.text, 30)
            assert w.error is None and w.thread.is_alive()
            filler.unlink()  # space is back
            wait_for(lambda: len(w.decisions()) >= 41, 60)
        assert sorted(names(w.decisions()))[-1] == "while_full_39.jpg"
        assert run("ledger", "verify").exit_code == 0


def test_writer_that_never_closes_gets_its_file_judged(
        root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from provgate.watch import settle
    monkeypatch.setattr(settle, "OPEN_CAP_SECONDS", 1)
    target = root / "ep101" / "temp" / "held_open.jpg"
    with Running([root], settle=0.3, mode="warn", status_interval=0.2) as w:
        with open(target, "wb") as fh:
            fh.write(AI.read_bytes())
            fh.flush()
            got = wait_for(lambda: w.decisions(), 20)  # while the writer still holds it
            assert "still open for writing" in caplog.text
    assert got[0]["kind"] == "ai_generated"


def test_hidden_files_heard_in_final_are_held_and_elsewhere_left_out(root: Path) -> None:
    """The daemon's events go through the walk's filter: a hidden file in a final zone is a
    held record, the same file in a working zone is left out."""
    with Running([root], mode="warn") as w:
        shutil.copy2(AI, root / "ep101" / "final" / ".key_art.jpg")
        shutil.copy2(AI, root / "ep101" / "temp" / ".notes.jpg")
        shutil.copy2(CLEAN, root / "ep101" / "temp" / "after.jpg")
        wait_for(lambda: len(w.decisions()) >= 2)
        time.sleep(1.0)
    by = {Path(d["path"]).name: d for d in w.decisions()}
    assert set(by) == {".key_art.jpg", "after.jpg"}
    assert by[".key_art.jpg"]["action"] == "escalate"
    assert "hidden file" in by[".key_art.jpg"]["error"]


def test_files_include_applies_to_events_as_to_the_walk(root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One filter for the walk and the events: with files.include, a file outside it heard
    in a working zone is left out, in a final zone it is held as not judged."""
    from provgate.policy import DEFAULT_POLICY

    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text().replace(
        "[files]\n", '[files]\ninclude = ["**/*.jpg"]\n', 1))
    monkeypatch.setenv("PROVGATE_POLICY", str(policy))
    with Running([root], mode="warn") as w:
        shutil.copy2(AI, root / "ep101" / "temp" / "notes.png")
        shutil.copy2(AI, root / "ep101" / "final" / "plate.png")
        shutil.copy2(CLEAN, root / "ep101" / "temp" / "kept.jpg")
        wait_for(lambda: len(w.decisions()) >= 2)
        time.sleep(1.0)
    by = {Path(d["path"]).name: d for d in w.decisions()}
    assert set(by) == {"plate.png", "kept.jpg"}
    assert by["plate.png"]["action"] == "escalate"
    assert "outside files.include" in by["plate.png"]["error"]


_SLOW_CONFIG = """
%Image::ExifTool::UserDefined = (
    'Image::ExifTool::Composite' => {
        SlowForTest => { Require => 'FileName', ValueConv =>
            'if ($val =~ /slow/) { open(my $fh, ">", $ENV{SLOW_MARKER}); close($fh); sleep(4); } $val' },
    },
);
1;
"""


def test_the_heartbeat_goes_on_while_a_file_is_slow_to_judge(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The status file and the watchdog beat come from their own thread: a long read does
    not make a working daemon look dead to `provgate status` or to systemd."""
    from provgate.watch import read_status

    config, marker = tmp_path / "slow.config", tmp_path / "reading"
    config.write_text(_SLOW_CONFIG)
    monkeypatch.setenv("PROVGATE_EXIFTOOL_CONFIG", str(config))
    monkeypatch.setenv("SLOW_MARKER", str(marker))
    with Running([root], mode="warn", status_interval=0.2) as w:
        shutil.copy2(AI, root / "ep101" / "final" / "slow_key_art.jpg")
        wait_for(marker.exists, 20)  # ExifTool is busy with it for 4 s
        first = read_status(w.watcher.opts)
        time.sleep(1.0)
        second = read_status(w.watcher.opts)
        assert first and second and second["time"] - first["time"] >= 0.5
        assert second["state"] == "running" and w.decisions() == []
        got = wait_for(lambda: w.decisions(), 20)
    assert got[0]["action"] == "block"


def test_a_cli_run_leaves_a_running_daemons_pending_moves_to_it(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One ledger, two processes: a move the daemon has committed but not made is in flight,
    not a crash to recover. A CLI run while the daemon lives leaves it alone; once the daemon
    is gone, the next run finishes it."""
    from provgate import stages
    from provgate.assets import stat_asset
    from provgate.session import Session

    elsewhere = tmp_path / "elsewhere" / "final"
    elsewhere.mkdir(parents=True)
    blocked = elsewhere / "key_art.jpg"
    shutil.copy2(AI, blocked)
    proc = subprocess.Popen([sys.executable, "-m", "provgate", "watch", str(root), "--settle",
                             "0.5"], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: run("status").exit_code == 0, 30)
        with Session(Options(mode="enforce", actor="daemon")) as session, \
                monkeypatch.context() as m:  # the daemon's move, committed, not yet made
            m.setattr(stages, "_carry_out", lambda s, planned: None)
            session.process([stat_asset(str(blocked), str(elsewhere))])
        assert run("scan", root / "ep101" / "temp").exit_code == 0
        assert blocked.exists()  # the CLI did not carry out the daemon's move
        with Ledger(Options().policy.config.ledger_path()) as led:
            assert [m["state"] for m in led.moves()] == ["pending"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert run("scan", root / "ep101" / "temp").exit_code == 0
    assert not blocked.exists()  # the daemon is gone: a crash's move is finished


def test_files_planted_at_a_quarantine_path_inside_a_root_are_judged(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In warn mode nothing is moved, so a quarantine path inside a watched root is only a
    folder a vendor can write to: what lands there is judged, never ignored."""
    monkeypatch.setenv("PROVGATE_QUARANTINE", str(root / ".quarantine"))
    planted = root / ".quarantine" / "ep101" / "final"
    with Running([root], mode="warn") as w:
        planted.mkdir(parents=True)
        shutil.copy2(AI, planted / "key_art.jpg")
        got = wait_for(lambda: w.decisions())
    assert names(got) == ["key_art.jpg"] and got[0]["action"] in ("escalate", "block")


def test_a_daemon_in_enforce_mode_refuses_a_quarantine_inside_its_root(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provgate.errors import ConfigError

    monkeypatch.setenv("PROVGATE_QUARANTINE", str(root / ".quarantine"))
    watcher = Watcher(Options(mode="enforce"), [str(root)])
    with pytest.raises(ConfigError, match="lies inside"):
        watcher.run()


def test_a_dangling_link_heard_in_final_is_held_not_dropped(root: Path, tmp_path: Path) -> None:
    """A file the daemon hears but cannot stat (a link to nothing, a file it may not read)
    is recorded as unreadable, as a scan would, never dropped as gone."""
    with Running([root], mode="warn") as w:
        (root / "ep101" / "final" / "key_art.jpg").symlink_to(tmp_path / "nowhere.jpg")
        got = wait_for(lambda: w.decisions())
    assert names(got) == ["key_art.jpg"]
    assert got[0]["kind"] == "unreadable" and got[0]["action"] == "escalate"
