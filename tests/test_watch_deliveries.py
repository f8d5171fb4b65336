"""The watch daemon records each watched root as a delivery when the policy says so
(``[delivery] watch = true``): real daemon, real files dropped into a watched root, a real
ledger; `provgate deliveries` and `provgate report --delivery NAME` show the daemon's view."""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from conftest import SAMPLES, Running, run, wait_for
from provgate import data, safefs
from provgate.errors import ConfigError
from provgate.policy import DEFAULT_POLICY, Policy
from provgate.session import Options
from provgate.watch import Watcher

AI = SAMPLES / "ai_iptc_generated.jpg"  # blocked in final
CLEAN = SAMPLES / "unknown_camera.jpg"  # allowed


def _policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Path:
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text() + "\n[delivery]\nwatch = true\n" + extra)
    monkeypatch.setenv("PROVGATE_POLICY", str(policy))
    return policy


def _records(name: str) -> list[dict]:
    result = run("deliveries", "--json", "--name", name)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _report(name: str) -> dict:
    result = run("report", "--delivery", name, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    data.validate(doc, "report", "report")
    return doc


def test_a_watched_root_is_recorded_as_a_delivery_that_follows_its_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(tmp_path, monkeypatch, 'show = "The Long Night"\n')
    root = tmp_path / "incoming" / "EP101"
    final = root / "final"
    final.mkdir(parents=True)
    with Running([root], mode="warn"):
        shutil.copy2(CLEAN, final / "plate.jpg")
        first = wait_for(lambda: _records("EP101"))[0]
        assert (first["verdict"], first["files"], first["held"]) == ("passed", 1, 0)
        assert (first["actor"], first["show"], first["roots"]) == (
            "daemon", "The Long Night", [str(root)])
        assert first["decisions_head"]

        shutil.copy2(AI, final / "shot.jpg")  # a held file arrives: the verdict follows
        second = wait_for(lambda: (r := _records("EP101")) and len(r) > 1 and r[-1])
        assert (second["verdict"], second["files"], second["held"]) == ("FAILED", 2, 1)
        assert second["decisions"][str(final / "shot.jpg")]["action"] == "block"

        doc = _report("EP101")
        assert doc["banner"]["verdict"] == "FAILED" and doc["banner"]["delivery"] == "EP101"
        assert sorted(Path(f["path"]).name for f in doc["files"]) == ["plate.jpg", "shot.jpg"]
        blocked = next(s for s in doc["sections"] if s["id"] == "blocked")["items"]
        assert [Path(i["path"]).name for i in blocked] == ["shot.jpg"]

        time.sleep(1.5)  # three settle windows with nothing new: no record
        assert len(_records("EP101")) == 2

        (final / "shot.jpg").unlink()  # the held file leaves: passed again, one file
        third = wait_for(lambda: (r := _records("EP101")) and len(r) > 2 and r[-1])
        assert (third["verdict"], third["files"]) == ("passed", 1)
        assert list(third["decisions"]) == [str(final / "plate.jpg")]

    with Running([root], mode="warn"):  # a restart that finds nothing changed records nothing
        time.sleep(1.0)
    assert len(_records("EP101")) == 3
    assert run("ledger", "verify").exit_code == 0


def test_a_burst_is_recorded_once_per_settle_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(tmp_path, monkeypatch)
    root = tmp_path / "final"
    root.mkdir()
    with Running([root], mode="warn", settle=1.0) as w:
        for i in range(30):
            shutil.copy2(CLEAN if i % 2 else AI, root / f"f{i:02d}.jpg")
            time.sleep(0.05)
        wait_for(lambda: len(w.decisions()) == 30 and w.idle())
        last = wait_for(lambda: (r := _records("final")) and r[-1]["files"] == 30 and r)
    stamps = [r["time"] for r in last]
    assert len(last) <= 3  # 30 files in about 1.5 s: a record per window at most
    assert last[-1]["verdict"] == "FAILED" and last[-1]["held"] == 15
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_no_delivery_unless_the_policy_asks(tmp_path: Path) -> None:
    root = tmp_path / "final"
    root.mkdir()
    with Running([root], mode="warn") as w:
        shutil.copy2(CLEAN, root / "plate.jpg")
        wait_for(lambda: w.decisions())
        time.sleep(1.0)
    assert json.loads(run("deliveries", "--json").stdout) == []


def test_roots_are_named_by_the_policy_and_never_share_a_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "vendor-a" / "final", tmp_path / "vendor-b" / "final"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    _policy(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="both be recorded as delivery 'final'"):
        Watcher(Options(), [str(a), str(b)])
    _policy(tmp_path, monkeypatch, f'names = {{ "{a}" = "EP101-A", "vendor-b/final" = '
                                   '"EP101-B" }\n')  # relative: from the policy's folder
    policy = Policy.load()
    assert (policy.watched_delivery(str(a)), policy.watched_delivery(str(b) + "/")) == (
        "EP101-A", "EP101-B")
    with Running([a, b], mode="warn"):
        shutil.copy2(CLEAN, a / "plate.jpg")
        shutil.copy2(AI, b / "shot.jpg")
        wait_for(lambda: _records("EP101-A") and _records("EP101-B"))
    assert _records("EP101-A")[-1]["verdict"] == "passed"
    assert _records("EP101-B")[-1]["verdict"] == "FAILED"


def test_the_lock_and_status_are_made_with_the_service_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_path: Path) -> None:
    """The policy's [service] group applies before the daemon takes its lock: the lock, the
    status and the ledger the lock creates are the group's (0660), not private to root."""
    others = [g for g in os.getgroups() if g != os.getegid()]
    gid = others[0] if others else (grp.getgrnam("nogroup").gr_gid if os.geteuid() == 0
                                    else os.getegid())
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text()
                      + f'\n[service]\ngroup = "{grp.getgrgid(gid).gr_name}"\n')
    monkeypatch.setenv("PROVGATE_POLICY", str(policy))
    root = tmp_path / "final"
    root.mkdir()
    try:
        with Running([root], mode="warn", status_interval=0.2) as w:
            status = Path(f"{ledger_path}.status.json")
            wait_for(status.exists)
            lock = safefs.lock_path(ledger_path)
            for path in (lock, status, ledger_path):
                st = os.stat(path)
                assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, gid), path
            assert w.watcher.ready
    finally:
        safefs.configure()  # the group is this process's setting: not for the next tests


def test_an_approval_scoped_to_a_delivery_clears_its_file_in_the_daemon_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon decides a watched root's files as that delivery's check would: an approval
    given for delivery EP101 clears the file there, and not in another delivery."""
    _policy(tmp_path, monkeypatch)
    ep101, ep102 = tmp_path / "incoming" / "EP101", tmp_path / "incoming" / "EP102"
    for root in (ep101, ep102):
        (root / "final").mkdir(parents=True)
    staged = tmp_path / "staged.jpg"
    shutil.copy2(AI, staged)
    given = run("approve", str(staged), "--ref", "NFX-9", "--by", "P", "--delivery", "EP101")
    assert given.exit_code == 0, given.output
    with Running([ep101, ep102], mode="warn") as w:
        shutil.copy2(AI, ep101 / "final" / "key.jpg")
        shutil.copy2(AI, ep102 / "final" / "key.jpg")
        wait_for(lambda: len(w.decisions()) >= 2)
        by_root = {Path(d["path"]).parent.parent.name: d for d in w.decisions()}
    assert by_root["EP101"]["action"] == "allow" and by_root["EP101"]["approval_ref"] == "NFX-9"
    assert by_root["EP102"]["action"] == "block"


def test_a_forged_departure_does_not_drop_a_held_file_from_the_delivery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An insider appends a 'removed' event for a blocked file, chained with the public
    algorithm but without the key: the daemon's view of the delivery keeps the file, held."""
    import sqlite3

    from provgate import deliveries
    from provgate.ledger import EVENT_CHAINED, Ledger
    from test_seal import drop_guards, forge

    _policy(tmp_path, monkeypatch)
    root = tmp_path / "incoming" / "EP101"
    (root / "final").mkdir(parents=True)
    with Running([root], mode="warn") as w:
        shutil.copy2(AI, root / "final" / "key.jpg")
        wait_for(lambda: _records("EP101") and _records("EP101")[-1]["verdict"] == "FAILED")
        ledger_path = w.ledger_path
    held = next(d for d in w.decisions() if d["path"].endswith("key.jpg"))
    conn = sqlite3.connect(ledger_path)
    drop_guards(conn, "events")
    forge(conn, "events", EVENT_CHAINED, {
        "time": "2999-01-01T00:00:00+00:00", "event": "removed", "path": held["path"],
        "dest": None, "fingerprint": held["fingerprint"], "decision_id": held["id"],
        "actor": "daemon", "user": "x"})
    conn.commit()
    conn.close()
    with Ledger(ledger_path) as led:
        view = {Path(b.path).name: b for b in deliveries.root_view(led, str(root))}
    assert view["key.jpg"].held


def test_the_daemon_holds_a_delivery_whose_package_fails_its_pkl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file of the tampered package is allowed on its own; only the whole shows that a
    track file is not what its PKL declares: the daemon's delivery record fails, as check."""
    film = SAMPLES / "film" / "imf" / "SHOW_EP102_IMF_TAMPERED"
    if not film.is_dir():
        pytest.skip("sample_media/film is made by `make samples`")
    _policy(tmp_path, monkeypatch)
    root = tmp_path / "incoming" / "EP102"
    (root / "final").mkdir(parents=True)
    with Running([root], mode="warn", settle=0.3):
        shutil.copytree(film, root / "final" / film.name)
        record = wait_for(lambda: (r := _records("EP102")) and r[-1]["files"] == 6 and r[-1],
                          60)
    assert record["verdict"] == "FAILED" and record["held"] == 0
    doc = _report("EP102")
    integrity = next(s for s in doc["sections"] if s["id"] == "integrity")["items"]
    assert any("packing list" in (i.get("problem") or "") for i in integrity)
