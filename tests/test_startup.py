"""What a run loads: a rescan of unchanged files reads no file, so it needs neither ExifTool
(pyexiftool), nor the archive reader, nor c2pa-python, nor sqlite-utils (which only makes
and migrates the ledger's schema). Each is a share of a short run's start-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

HEAVY = ("exiftool", "sqlite_utils", "provgate.archives", "c2pa")
PROBE = """
import json, sys
from provgate.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
"""


def _scan(tree: Path, ledger: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), "scan", str(tree),
                          "--ledger", str(ledger), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(out.stdout), out.stderr
    return json.loads(out.stderr.strip().splitlines()[-1])


def test_a_rescan_of_unchanged_files_loads_no_reader(tmp_path: Path) -> None:
    tree = tmp_path / "delivery"
    tree.mkdir()
    for name in ("ai_iptc_generated.jpg", "ai_storyboard.pdf", "unknown_room_tone.wav"):
        shutil.copy(ROOT / "sample_media" / name, tree / name)
    ledger = tmp_path / "ledger.db"
    first = _scan(tree, ledger)
    assert {"exiftool", "sqlite_utils", "provgate.archives"} <= set(first)  # it read files
    assert _scan(tree, ledger) == []


def _exiftool_children() -> list[str]:
    """ExifTool processes this test process started (their parent is us)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid() and b"exiftool" in cmd:
            found.append(pid)
    return found


def test_a_new_ledger_starts_exiftool_while_opening_and_an_opening_that_fails_stops_it(
        tmp_path: Path) -> None:
    """On a new ledger ExifTool starts beside the session's opening; an opening that fails
    after that (here: the ledger is not a database) leaves no ExifTool running."""
    from provgate.errors import LedgerError
    from provgate.session import Options, Session

    processes = os.cpu_count() or 1
    with Session(Options(ledger=str(tmp_path / "new.db"))):
        deadline = time.monotonic() + 30
        while len(_exiftool_children()) < processes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_exiftool_children()) == processes  # no file was read yet
    assert _exiftool_children() == []
    with Session(Options(ledger=str(tmp_path / "new.db"))):
        time.sleep(0.5)  # the ledger exists: its cache may answer, ExifTool waits for a file
        assert _exiftool_children() == []
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    try:
        Session(Options(ledger=str(bad), rescan=True))
    except LedgerError:
        pass
    else:
        raise AssertionError("a ledger that is not a database was opened")
    time.sleep(1)  # a start left running would have its processes by now
    assert _exiftool_children() == []
