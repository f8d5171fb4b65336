#!/usr/bin/env python3
"""Ledger benchmark: verify speed, the cost of recording, and check on a scanned delivery.

    python bench/bench_ledger.py [--rows 100000] [--files 10000]

1. ``provgate ledger verify`` on a ledger of 100,000 decision rows (target: under 5 s);
2. recording: ``provgate scan --json`` of 2,000 files with the ledger against ``--dry-run``
   (same reading and deciding, nothing written), medians of 3 (target: at most +10 %);
3. ``provgate check`` on an unchanged, already-scanned delivery of 10,000 files (target: under
   2 s).
Writes bench/results/ledger.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import provgate, write_results  # noqa: E402
sys.path.insert(0, str(HERE.parent / "plugin"))
sys.path.insert(0, str(HERE))

from bench_scan import build_corpus  # noqa: E402
from provgate.ledger import Ledger  # noqa: E402



def timed(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([provgate(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - t0


def fill(ledger: Path, rows: int) -> None:
    row = {"time": "2026-11-25T00:00:00+00:00", "root": "/srv/delivery", "size": 1234,
           "kind": "unknown", "c2pa": "absent", "evidence": [], "error": None,
           "zone": "final", "rule": "actions.unknown", "action": "allow",
           "reason": "In zone final, unknown: no provenance either way; allowed.",
           "mode": "warn", "approval_id": None, "approval_ref": None, "policy_digest": "0" * 64,
           "trust_digest": None, "tools": {"provgate": "0.1.0"}, "actor": "cli", "user": "b"}
    with Ledger(ledger) as led:
        for start in range(0, rows, 5000):
            led.append([{**row, "path": f"/srv/delivery/f{i}.exr",
                         "fingerprint": f"sha256:{i:064x}"}
                        for i in range(start, min(rows, start + 5000))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-ledger-"))
    os.environ["PROVGATE_QUARANTINE"] = str(work / "q")
    out: dict[str, float] = {}
    try:
        big = work / "big.db"
        fill(big, args.rows)
        out["verify_rows"] = args.rows
        out["verify_s"] = statistics.median(timed("ledger", "verify", "--ledger", str(big))
                                            for _ in range(3))
        corpus = work / "c2000"
        build_corpus(corpus, 2000)
        rec, dry = [], []
        for run in range(3):
            rec.append(timed("scan", str(corpus), "--json", "--ledger", str(work / f"r{run}.db")))
            dry.append(timed("scan", str(corpus), "--json", "--dry-run", "--ledger",
                             str(work / f"d{run}.db")))
        out["scan_recorded_s"], out["scan_dry_run_s"] = statistics.median(rec), statistics.median(dry)
        out["recording_overhead"] = out["scan_recorded_s"] / out["scan_dry_run_s"] - 1
        delivery = work / "delivery" / "final"
        build_corpus(delivery, args.files)
        led = str(work / "check.db")
        timed("scan", str(delivery), "--ledger", led)
        out["check_files"] = args.files
        out["check_unchanged_s"] = statistics.median(
            timed("check", str(delivery), "--json", "--ledger", led) for _ in range(3))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results("ledger", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
