#!/usr/bin/env python3
"""Watch benchmark: decision latency after the settle window, polling cost, watching RSS.

    python bench/bench_watch.py [--burst 1000] [--poll-files 10000] [--tree-files 100000]

1. latency: a real ``provgate watch`` (native observer, settle 1 s) gets 20 single files, one
   at a time, then a burst; latency = time the decision row appears in the ledger minus
   (time the file was closed + settle window). p50 and p95.
2. polling: CPU seconds one poll of a 10,000-file tree costs (watchdog's DirectorySnapshot,
   which the polling observer runs every interval), and the idle CPU share at 5 s (default).
3. RSS of a daemon watching a tree of 100,000 files in 10,000 folders (catch-up done).
Writes bench/results/watch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import provgate, write_results  # noqa: E402
SAMPLE = HERE.parent / "sample_media" / "unknown_camera.jpg"
SETTLE = 1.0



def start(root: Path, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([provgate(), "watch", str(root), "--ledger", str(ledger),
                             "--settle", str(SETTLE), "--mode", "warn", *extra],
                            stderr=subprocess.DEVNULL)
    status = Path(str(ledger) + ".status.json")
    while not status.exists():
        time.sleep(0.05)
    return proc


def decided_at(ledger: Path, names: set[str], timeout: float = 300) -> dict[str, float]:
    """Poll the ledger; returns name -> wall time the decision was first seen."""
    seen: dict[str, float] = {}
    deadline = time.time() + timeout
    while len(seen) < len(names) and time.time() < deadline:
        try:
            con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
            rows = con.execute("SELECT path FROM decisions").fetchall()
            con.close()
        except sqlite3.Error:
            rows = []
        now = time.time()
        for (path,) in rows:
            name = Path(path).name
            if name in names and name not in seen:
                seen[name] = now
        time.sleep(0.01)
    return seen


def latency(work: Path, burst: int) -> dict[str, float]:
    root, ledger = work / "lat", work / "lat.db"
    root.mkdir()
    proc = start(root, ledger)
    data = SAMPLE.read_bytes()
    singles: list[float] = []
    try:
        for i in range(20):
            name = f"single{i}.jpg"
            (root / name).write_bytes(data + i.to_bytes(4, "big"))
            closed = time.time()
            t = decided_at(ledger, {name})[name]
            singles.append(t - closed - SETTLE)
        closed_at: dict[str, float] = {}
        for i in range(burst):
            name = f"burst{i:05}.jpg"
            (root / name).write_bytes(data + (10_000 + i).to_bytes(4, "big"))
            closed_at[name] = time.time()
        seen = decided_at(ledger, set(closed_at))
        lost = burst - len(seen)
        bursts = sorted(seen[n] - closed_at[n] - SETTLE for n in seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def pct(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
    return {"single_p50_s": pct(singles, 0.5), "single_p95_s": pct(singles, 0.95),
            "burst_files": burst, "burst_lost": lost,
            "burst_p50_s": pct(bursts, 0.5), "burst_p95_s": pct(bursts, 0.95)}


def make_tree(root: Path, files: int, per_folder: int = 10) -> None:
    for i in range(files):
        folder = root / f"d{i // per_folder // 100:03}" / f"s{i // per_folder:05}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.dpx").write_bytes(b"x")


def polling_cost(work: Path, files: int) -> dict[str, float]:
    from watchdog.utils.dirsnapshot import DirectorySnapshot
    root = work / "poll"
    make_tree(root, files)
    costs = []
    for _ in range(5):
        t0 = time.process_time()
        DirectorySnapshot(str(root), recursive=True)
        costs.append(time.process_time() - t0)
    per_poll = statistics.median(costs)
    return {"poll_files": files, "cpu_per_poll_s": per_poll,
            "idle_cpu_share_at_default_5s": per_poll / 5.0, "idle_cpu_share_at_1s": per_poll}


def watch_rss(work: Path, files: int) -> dict[str, float]:
    root, ledger = work / "rss", work / "rss.db"
    make_tree(root, files)
    proc = start(root, ledger)
    status = Path(str(ledger) + ".status.json")
    try:
        deadline = time.time() + 1800
        while time.time() < deadline:  # wait for the catch-up scan to finish
            doc = json.loads(status.read_text() or "{}")
            if doc.get("rescans", 0) >= 1 and doc.get("decided", 0) >= files:
                break
            time.sleep(1)
        time.sleep(2)
        rss_kb = int([ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                      if ln.startswith("VmRSS")][0].split()[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"tree_files": files, "tree_folders": files // 10, "daemon_rss_mib": rss_kb / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--poll-files", type=int, default=10_000)
    ap.add_argument("--tree-files", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-watch-"))
    os.environ["PROVGATE_QUARANTINE"] = str(work / "q")
    try:
        out = {**latency(work, args.burst), **polling_cost(work, args.poll_files)}
        if args.tree_files:
            out.update(watch_rss(work, args.tree_files))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results("watch", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
