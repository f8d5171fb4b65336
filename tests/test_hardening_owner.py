"""One ledger, many processes, and who holds provgate's files (issue 12, second part).

Each test performs the attack or the race for real: a child process that planned a move and is
paused (SIGSTOP) while a CLI recovers, then killed with SIGKILL; a watch daemon and a CLI scan
deciding the same 200 files at once; a ledger (and its -wal) pre-created by another user (uid
65534) in a sticky folder everyone may write; the policy's service group on everything provgate
makes; a receipt's ledger head against a ledger rolled back, or rewritten by the key's holder.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SAMPLES, Running, run, run_json, wait_for
from provgate import actions, data, ledger, safefs
from provgate.ledger import CHAINS, Ledger, SealKey, owner_state, row_hash
from provgate.policy import DEFAULT_POLICY

NOBODY = 65534
AI, AI_PNG, CLEAN = "ai_iptc_generated.jpg", "ai_a1111_txt2img.png", "unknown_camera.jpg"
PROVGATE = [sys.executable, "-m", "provgate"]

# a process that plans the quarantine moves of a scan (committed with the decisions), then
# stops itself just before carrying them out: a CLI or daemon caught between the two
PLAN_THEN_PAUSE = """
import os, signal, sys
from provgate import stages
from provgate.session import Options, Session

carry_out = stages._carry_out

def paused(session, planned):
    if planned.moves:
        print("planned", len(planned.moves), flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    carry_out(session, planned)

stages._carry_out = paused
with Session(Options(mode="enforce")) as gate:
    list(gate.run([sys.argv[1]]))
"""


@pytest.fixture(autouse=True)
def no_service_group() -> Iterator[None]:
    """The policy's service block is process-wide (``safefs.configure``): none leaks out."""
    yield
    safefs.configure()


def final_with(tmp_path: Path, name: str, *files: str) -> Path:
    final = tmp_path / name / "final"
    final.mkdir(parents=True)
    for f in files:
        shutil.copy2(SAMPLES / f, final / f)
    return final


def state_of(pid: int) -> str:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw[raw.rindex(b")") + 2:].split()[0].decode()


def moves(ledger_path: Path) -> list[dict]:
    with Ledger(ledger_path, readonly=True) as led:
        return led.moves()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def quarantined(q: Path, name: str) -> list[Path]:
    return list(q.rglob(name)) if q.exists() else []


# -- 1. pending moves carry their owner -------------------------------------------------------

def test_a_paused_processs_move_is_left_to_it_and_taken_once_it_is_killed(
        tmp_path: Path, ledger_path: Path, quarantine_dir: Path) -> None:
    final = final_with(tmp_path, "paused", AI, AI_PNG, CLEAN)
    other = final_with(tmp_path, "other", CLEAN)
    child = subprocess.Popen([sys.executable, "-c", PLAN_THEN_PAUSE, str(final)],
                             stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        assert child.stdout is not None and child.stdout.readline().split() == ["planned", "2"]
        wait_for(lambda: state_of(child.pid) == "T", 10)  # stopped for real, moves not made
        planned = moves(ledger_path)
        assert [m["state"] for m in planned] == ["pending", "pending"]
        assert {(m["owner_pid"], m["owner_host"]) for m in planned} == {
            (child.pid, socket.gethostname())}
        assert all(m["owner_start"] for m in planned)
        # a CLI run meanwhile (its recovery runs first) must leave the paused process's moves
        cli = subprocess.run([*PROVGATE, "scan", str(other), "--mode", "enforce"],
                             capture_output=True, text=True, env=os.environ, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert [m["state"] for m in moves(ledger_path)] == ["pending", "pending"]
        assert (final / AI).exists() and (final / AI_PNG).exists()
        assert not quarantined(quarantine_dir, AI)
        assert state_of(child.pid) == "T"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # its owner is gone: the next run takes the moves, marks them taken, and finishes them
    cli = subprocess.run([*PROVGATE, "scan", str(other), "--mode", "enforce"],
                         capture_output=True, text=True, env=os.environ, timeout=120)
    assert cli.returncode == 0, cli.stderr
    done = moves(ledger_path)
    assert [m["state"] for m in done] == ["done", "done"]
    # taken over, as the (verified) update log says: by the new run, not the dead planner
    takers = {json.loads(m["taken_by"])["owner_pid"] for m in done}
    assert len(takers) == 1 and child.pid not in takers
    assert not (final / AI).exists() and not (final / AI_PNG).exists()
    assert quarantined(quarantine_dir, AI) and quarantined(quarantine_dir, AI_PNG)
    assert run("ledger", "verify").exit_code == 0


def test_a_move_is_left_to_a_live_owner_and_to_another_host() -> None:
    """``owner_state`` on real processes: running (even stopped) is alive, a different start
    time (the pid reused) or a dead pid is gone, another host is never taken."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        owner = {"owner_pid": proc.pid, "owner_start": ledger._process_start(proc.pid),
                 "owner_host": socket.gethostname()}
        assert owner["owner_start"] and owner_state(owner) == "alive"
        proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: state_of(proc.pid) == "T", 10)
        assert owner_state(owner) == "alive"
        assert owner_state({**owner, "owner_start": owner["owner_start"] + "1"}) == "gone"
        assert owner_state({**owner, "owner_host": "render-07.elsewhere"}) == "alive"
        assert owner_state(ledger.process_owner()) == "me"
    finally:
        proc.kill()
        proc.wait()
    assert owner_state(owner) == "gone"
    assert owner_state({**owner, "owner_host": "render-07.elsewhere"}) == "alive"


def test_a_ledger_written_before_owners_still_opens_verifies_and_recovers(
        tmp_path: Path, ledger_path: Path, quarantine_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A sealed ledger from before moves had owners (no owner or taken_by columns, moves hashed
    without them): it opens, verifies, and its pending move is finished when no daemon runs."""
    from provgate import stages
    from provgate.session import Options, Session

    final = final_with(tmp_path, "old", AI)
    with monkeypatch.context() as m:  # the version before: no owner, and a crash before moving
        m.setattr(ledger, "process_owner", lambda: dict.fromkeys(ledger.MOVE_OWNER))
        m.setattr(stages, "_carry_out", lambda session, planned: None)
        with Session(Options(mode="enforce")) as gate:
            list(gate.run([str(final)]))
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND "
                                   "tbl_name = 'quarantine'").fetchall():
        conn.execute(f"DROP TRIGGER [{trigger}]")
    for col in (*ledger.MOVE_OWNER, "taken_by"):
        conn.execute(f"ALTER TABLE quarantine DROP COLUMN [{col}]")
    conn.close()
    code = run("ledger", "verify")
    assert code.exit_code == 0, code.output
    run_json("scan", final_with(tmp_path, "other", CLEAN), "--mode", "enforce")
    [move] = moves(ledger_path)
    assert move["state"] == "done" and move["owner_pid"] is None
    assert not (final / AI).exists()
    assert run("ledger", "verify").exit_code == 0


# -- 2. a path decided by the daemon while a CLI scans it is recorded once -------------------

def test_the_daemon_and_a_cli_deciding_the_same_files_at_once_record_each_once(
        tmp_path: Path, ledger_path: Path) -> None:
    root = tmp_path / "delivery"
    shots = root / "ep101" / "shots"
    shots.mkdir(parents=True)
    samples = [AI, AI_PNG, CLEAN, "human_capture.jpg", "ai_comfyui.png", "unknown_plate.mov",
               "ai_genfill_composite.jpg", "unreadable_corrupt.jpg"]
    for i in range(200):
        name = samples[i % len(samples)]
        shutil.copy2(SAMPLES / name, shots / f"f{i:03}{Path(name).suffix}")
    # both at once: the CLI scans the tree while the daemon's start-up catch-up decides it
    cli = subprocess.Popen([*PROVGATE, "scan", str(root), "--mode", "warn", "--ndjson"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=os.environ)
    with Running([root], mode="warn", settle=0.2) as daemon:
        out, err = cli.communicate(timeout=300)
        assert cli.returncode in (0, 1), err
        wait_for(lambda: len({d["path"] for d in daemon.decisions()}) >= 200 and daemon.idle(),
                 120)
        time.sleep(1.0)  # anything late would land now
        rows = daemon.decisions()
    per_path = Counter(d["path"] for d in rows)
    assert len(per_path) == 200
    twice = {p: n for p, n in per_path.items() if n > 1}
    assert not twice, f"{len(twice)} paths decided twice: {sorted(twice)[:5]}"
    # the CLI's records name the one row of each path (its own, or the daemon's)
    ids = {d["path"]: d["id"] for d in rows}
    printed = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(printed) == 200 and all(r["id"] == ids[r["path"]] for r in printed)
    assert run("ledger", "verify").exit_code == 0


# -- 3. a ledger someone else holds ----------------------------------------------------------

def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("making a file another user owns needs root (os.chown)")


def test_a_ledger_owned_by_another_user_is_refused_unless_it_is_the_services(
        tmp_path: Path, ledger_path: Path) -> None:
    need_root()
    final = final_with(tmp_path, "d", CLEAN)
    run_json("scan", final)
    os.chown(ledger_path, NOBODY, NOBODY)
    refused = run("scan", final)
    assert refused.exit_code == 3
    assert f"{ledger_path} belongs to nobody" in refused.stderr
    assert '[service] user = "nobody"' in refused.stderr
    # reading it in a private folder is fine (an auditor, a producer's report)
    assert run("ledger", "verify").exit_code == 0
    # the service's own ledger, named in the policy: a producer's CLI may write it
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text() + '\n[service]\nuser = "nobody"\n')
    assert run("scan", final, "--policy", policy, "--rescan").exit_code == 0


def test_a_ledger_pre_created_by_someone_else_in_a_sticky_folder_is_refused(
        tmp_path: Path) -> None:
    need_root()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: everyone may create names in it
    final = final_with(tmp_path, "d", CLEAN)
    # someone else made the ledger (and its key) there first, to read or forge what it records
    squat = shared / "ledger.db"
    with Ledger(squat):
        pass
    for f in (squat, Path(f"{squat}.key")):
        os.chown(f, NOBODY, NOBODY)
    for args in (("scan", final), ("ledger", "verify")):
        refused = run(*args, "--ledger", squat)
        assert refused.exit_code == 3, refused.output
        assert "which everyone may write: someone else made it there" in refused.stderr
    # our own ledger in that folder works; a -wal someone put beside it is refused
    mine = shared / "mine.db"
    assert run("scan", final, "--ledger", mine).exit_code == 0
    wal = Path(f"{mine}-wal")
    if wal.exists():
        wal.unlink()
    wal.write_bytes(b"")
    os.chown(wal, NOBODY, NOBODY)
    refused = run("scan", final, "--ledger", mine)
    assert refused.exit_code == 3 and f"{wal} belongs to nobody" in refused.stderr
    wal.unlink()
    assert run("scan", final, "--ledger", mine).exit_code == 0


# -- 4. the service's group --------------------------------------------------------------------

def service_group() -> int:
    """A group of this process's other than its own (os.getgroups()), so the group shown is
    provgate's doing; as root, whose only group is its own, nogroup (root may give any)."""
    others = [g for g in os.getgroups() if g != os.getegid()]
    if others:
        return others[0]
    return NOBODY if os.geteuid() == 0 else os.getegid()


def test_the_policys_service_group_is_given_to_the_ledger_key_and_quarantine(
        tmp_path: Path) -> None:
    gid = service_group()
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text() + f'\n[service]\ngroup = "{group}"\n')
    ledger_path = tmp_path / "svc" / "ledger.db"
    ledger_path.parent.mkdir(mode=0o750)
    q = tmp_path / "svc-quarantine"
    final_with(tmp_path, "d", AI, AI_PNG, CLEAN)
    run_json("scan", tmp_path / "d", "--mode", "enforce", "--policy", policy, "--ledger",
             ledger_path, "--quarantine", q)
    key = Path(f"{ledger_path}.key")
    for path, want in ((ledger_path, 0o660), (key, 0o640)):
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (want, gid), path
    folders = [q, *(p for p in q.rglob("*") if p.is_dir())]
    assert len(folders) >= 2
    assert all((mode(f), os.stat(f).st_gid) == (0o2750, gid) for f in folders), [
        (f, oct(mode(f)), os.stat(f).st_gid) for f in folders]
    receipts = list(q.rglob(f"*{actions.RECEIPT_SUFFIX}"))
    assert len(receipts) == 2
    assert all((mode(r), os.stat(r).st_gid) == (0o640, gid) for r in receipts)
    # without the block: private again (0600 and 0700, no group of its own)
    plain = tmp_path / "plain" / "ledger.db"
    plain.parent.mkdir()
    run_json("scan", final_with(tmp_path, "e", AI), "--mode", "enforce", "--ledger", plain,
             "--quarantine", tmp_path / "plain-q")
    assert mode(plain) == 0o600 and mode(Path(f"{plain}.key")) == 0o600
    assert mode(tmp_path / "plain-q") == 0o700


def test_an_unknown_service_group_is_a_policy_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text() + '\n[service]\ngroup = "no-such-group-x"\n')
    result = run("scan", SAMPLES / CLEAN, "--policy", policy)
    assert result.exit_code == 2 and "no such group 'no-such-group-x'" in result.stderr


# -- 5. a receipt carries the ledger's head ----------------------------------------------------

def copy_ledger(src: Path, dst: Path) -> None:
    """A consistent copy of a whole ledger file (SQLite's backup), nothing left beside it."""
    for side in ("-wal", "-shm"):
        Path(f"{dst}{side}").unlink(missing_ok=True)
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def test_a_receipt_carries_the_head_that_a_rollback_or_a_rewrite_loses(
        tmp_path: Path, ledger_path: Path, quarantine_dir: Path) -> None:
    final = final_with(tmp_path, "r", AI, CLEAN)
    run_json("scan", final)  # warn: decisions, nothing moved yet
    before, after = tmp_path / "before.db", tmp_path / "after.db"
    copy_ledger(ledger_path, before)
    run_json("scan", final, "--mode", "enforce")
    [receipt] = list(quarantine_dir.rglob("*.provgate-receipt.json"))
    doc = json.loads(receipt.read_text())
    data.validate(doc, "receipt", "receipt")
    heads = doc["ledger_heads"]
    assert heads["quarantine"]["count"] == doc["move_id"]
    with Ledger(ledger_path, readonly=True) as led:
        assert led.check_heads(heads, "the receipt") is None
    copy_ledger(ledger_path, after)

    # the whole file rolled back to a consistent earlier copy: verify alone cannot tell
    copy_ledger(before, ledger_path)
    assert run("ledger", "verify").exit_code == 0
    with Ledger(ledger_path, readonly=True) as led:
        problem = led.check_heads(heads, f"the receipt {receipt.name}")
    assert problem and "move 1 of quarantine" in problem and "rolled back" in problem

    # the move rewritten and sealed again by someone who holds the key
    copy_ledger(after, ledger_path)
    key = SealKey.load(Path(f"{ledger_path}.key"), create=False)
    assert key is not None
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER IF EXISTS quarantine_no_update")
    row = dict(conn.execute("SELECT * FROM quarantine WHERE id = 1").fetchone())
    row["original_path"] = str(tmp_path / "somewhere-else.jpg")
    row["hash"] = row_hash(row, CHAINS["quarantine"].fields)
    conn.execute("UPDATE quarantine SET original_path = ?, hash = ?, seal = ? WHERE id = 1",
                 [row["original_path"], row["hash"], key.seal("quarantine", "1", row["hash"])])
    conn.execute("UPDATE heads SET head = ?, seal = ? WHERE chain = 'quarantine'",
                 [row["hash"], key.seal("head", "quarantine", "1", row["hash"])])
    conn.close()
    assert run("ledger", "verify").exit_code == 0  # re-sealed with the key: consistent
    with Ledger(ledger_path, readonly=True) as led:
        problem = led.check_heads(heads, "the receipt")
        assert problem and "is not the one at the receipt" in problem
        # a receipt is not a way in: only the ledger's chains are looked up
        assert "no chain" in (led.check_heads({"files; DROP TABLE x": {"count": 1}}) or "")
