"""What a run loads: a rescan of unchanged files reads no file, so it needs neither ExifTool
(pyexiftool), nor the archive reader, nor c2pa-python, nor sqlite-utils (which only makes
and migrates the ledger's schema). Each is a share of a short run's start-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
