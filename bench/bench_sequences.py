#!/usr/bin/env python3
"""Sequence benchmark: provgate against plain ExifTool on EXR frame sequences.

    python bench/bench_sequences.py [--frames 10000] [--runs 3] [--processes 2]
                                    [--big] [--big-frames 200] [--huge 100000]

Writes real OpenEXR frames (the OpenEXR package and numpy, as sample_media/make_film_samples.py
does) into one folder each, then times, interleaved and repeated (medians; the machine is
shared and noisy, read ratios):

- A: ``provgate scan --json`` on a fresh ledger (one record for the whole sequence; every frame
     hashed, read, judged and recorded);
- B: the fastest plain ExifTool run over the same frames, same tags, same processes (the frames
     split over N ``exiftool -json -G3:1 -a -n -fast`` processes with ``-@`` argument files,
     as bench_scan.py's B);
- D: a second ``provgate scan --json`` of the unchanged sequence (the cache: a stat a frame);
- H (``--big`` only): SHA-256 of every frame in one Python process, what hashing alone costs.

Peak RSS is the largest process of the scan (provgate; its ExifTool processes are smaller), read
from ``getrusage(RUSAGE_CHILDREN)`` of a fresh wrapper process. ``--big`` adds a sequence of
real-sized 2K frames (2048x1080, half-float RGB, uncompressed: 12.7 MiB each); ``--huge N``
scans one N-frame sequence of tiny frames once, for the memory target (100,000 frames under
200 MB). Parts not run keep their figures from the last run in bench/results/sequences.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import OpenEXR  # noqa: E402

from _common import provgate  # noqa: E402
from bench_scan import exiftool_split  # noqa: E402

SMALL = (64, 36)
BIG = (2048, 1080)
FIRST = 1001
# the largest process under a fresh wrapper: what one command costs in memory, alone
_WRAP = ("import resource, subprocess, sys, time\n"
         "t = time.perf_counter()\n"
         "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
         "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_sequence(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` EXR frames ``plate.NNNNNNN.exr`` of ``size``: a compositing app's header, a
    gradient drifting with the frame (each frame's bytes its own). Small frames are ZIP
    compressed; real-sized ones are written uncompressed, as a plate's noise would leave them."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = np.random.default_rng(7).normal(0, 0.01, (h, w, 3)).astype(np.float32)
    big = w * h > 100_000
    header = {"compression": OpenEXR.NO_COMPRESSION if big else OpenEXR.ZIP_COMPRESSION,
              "type": OpenEXR.scanlineimage, "software": "Foundry Nuke 15.1v3",
              "owner": "Harbour Pictures", "comments": "sh010 plate, bench"}
    frames = []
    for i in range(count):
        n = FIRST + i
        rgb = np.stack([(x + n) / w, y / h, np.full_like(x, (n % 97) / 97)], axis=-1) + grain
        path = folder / f"plate.{n:07d}.exr"
        with OpenEXR.File(header, {"RGB": rgb.astype(np.float16)}) as f:
            f.write(str(path))
        frames.append(path)
    return frames


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the largest process of one command."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def hash_all(frames: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in frames:
        with open(p, "rb") as f:
            hashlib.file_digest(f, "sha256")
    return time.perf_counter() - t0


def bench(name: str, frames: list[Path], work: Path, runs: int, processes: int,
          env: dict[str, str], hashing: bool) -> dict[str, Any]:
    folder = frames[0].parent
    seconds: dict[str, list[float]] = {k: [] for k in ["A", "B", "D"] + ["H"] * hashing}
    rss = 0.0
    for run in range(runs):
        scan = [provgate(), "scan", str(folder), "--json", "--processes", str(processes),
                "--ledger", str(work / f"{name}-ledger{run}.db")]
        wall, peak = measured(scan, env)
        seconds["A"].append(wall)
        rss = max(rss, peak)
        seconds["B"].append(exiftool_split(frames, processes, []))
        seconds["D"].append(measured(scan, env)[0])
        if hashing:
            seconds["H"].append(hash_all(frames))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    size = sum(p.stat().st_size for p in frames)
    out: dict[str, Any] = {
        "frames": len(frames), "frame_bytes": size // len(frames), "runs": runs,
        "processes": processes, "seconds": med, "all_seconds": seconds,
        "ratio_scan_vs_exiftool_same_tags_same_processes": med["A"] / med["B"],
        "speedup_rescan": med["A"] / med["D"],
        "rescan_ms_per_frame": 1000 * med["D"] / len(frames),
        "scan_peak_rss_mib": rss,
        "load_average": os.getloadavg(),  # the machine is shared: how busy it was
    }
    if hashing:
        out["scan_mib_per_s"] = size / med["A"] / (1 << 20)
        out["sha256_only_mib_per_s"] = size / med["H"] / (1 << 20)
    return out


def memory(frames: list[Path], work: Path, processes: int, env: dict[str, str]
           ) -> dict[str, Any]:
    scan = [provgate(), "scan", str(frames[0].parent), "--json", "--processes", str(processes),
            "--ledger", str(work / "huge-ledger.db")]
    wall, peak = measured(scan, env)
    rescan, rescan_peak = measured(scan, env)
    return {"frames": len(frames), "processes": processes, "scan_seconds": wall,
            "scan_peak_rss_mib": peak, "rescan_seconds": rescan,
            "rescan_peak_rss_mib": rescan_peak, "target_mib": 200,
            "load_average": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--big", action="store_true", help="also real-sized 2K frames (2.5 GB)")
    ap.add_argument("--big-frames", type=int, default=200)
    ap.add_argument("--huge", type=int, default=0, metavar="N",
                    help="also one scan of N tiny frames, for peak memory (100000: minutes)")
    ap.add_argument("--skip-small", action="store_true",
                    help="run only --big or --huge (the small figures stay as they were)")
    args = ap.parse_args()
    results_file = HERE / "results" / "sequences.json"
    out: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # provgate as installed, its bytecode cached
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-seq-"))
    env["PROVGATE_QUARANTINE"] = str(work / "q")
    subprocess.run([provgate(), "--version"], env=env, stdout=subprocess.DEVNULL, check=False)
    try:
        if not args.skip_small:
            t0 = time.perf_counter()
            frames = write_sequence(work / "small", args.frames, SMALL)
            print(f"wrote {len(frames)} {SMALL[0]}x{SMALL[1]} frames in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
            out["small"] = bench("small", frames, work, args.runs, args.processes, env, False)
            shutil.rmtree(work / "small")
        if args.big:
            frames = write_sequence(work / "big", args.big_frames, BIG)
            out["big"] = bench("big", frames, work, args.runs, args.processes, env, True)
            shutil.rmtree(work / "big")
        if args.huge:
            t0 = time.perf_counter()
            frames = write_sequence(work / "huge", args.huge, (16, 9))
            print(f"wrote {len(frames)} tiny frames in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
            out["huge"] = memory(frames, work, args.processes, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["exiftool_version"] = subprocess.run(["exiftool", "-ver"], capture_output=True,
                                             text=True).stdout.strip()
    results_file.parent.mkdir(exist_ok=True)
    results_file.write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)
    return 0


def print_table(out: dict[str, Any]) -> None:
    print("| sequence | A provgate scan | B exiftool, same tags and processes | A/B (target "
          "<= 1.25) | D rescan | A/D | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for key, label in (("small", "small frames"), ("big", "2K frames")):
        r = out.get(key)
        if not r:
            continue
        s = r["seconds"]
        print(f"| {r['frames']:,} {label} ({r['frame_bytes'] / 1024:,.0f} KiB) | {s['A']:.2f} s "
              f"| {s['B']:.2f} s | {r['ratio_scan_vs_exiftool_same_tags_same_processes']:.2f} | "
              f"{s['D']:.2f} s ({r['rescan_ms_per_frame']:.2f} ms a frame) | "
              f"{r['speedup_rescan']:.1f}x | {r['scan_peak_rss_mib']:.0f} MiB |")
    if out.get("big", {}).get("scan_mib_per_s"):
        b = out["big"]
        print(f"2K: scan {b['scan_mib_per_s']:.0f} MiB/s; SHA-256 alone "
              f"{b['sha256_only_mib_per_s']:.0f} MiB/s (frames in the page cache)")
    if out.get("huge"):
        h = out["huge"]
        print(f"{h['frames']:,} tiny frames, one scan: {h['scan_seconds']:.0f} s, peak RSS "
              f"{h['scan_peak_rss_mib']:.0f} MiB (target < {h['target_mib']} MB); rescan "
              f"{h['rescan_seconds']:.1f} s, {h['rescan_peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
