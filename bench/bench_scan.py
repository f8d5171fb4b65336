#!/usr/bin/env python3
"""Scan benchmark: provgate against raw ExifTool on the same files, in the same run.

    python bench/bench_scan.py [--files 2000] [--runs 3] [--processes 2]

Builds a corpus of small mixed files from sample_media/ (each made unique), then times,
interleaved and repeated (medians reported; the machine is shared and noisy, read ratios):

- A: ``provgate scan --json`` on a fresh ledger (hash, probe, validate C2PA, decide, record);
- B: the fastest plain ExifTool run reading the same tags with the same number of processes:
     the files split over N ``exiftool -json -G3:1 -a -n -fast`` processes (all tags: what
     provgate reads, since naming the catalogue's tags makes ExifTool 12.57 slower, see B2);
- B2: the same, naming the catalogue's tags (what "only the needed tags" would cost);
- C: ``exiftool -r -json -G1 DIR``, one process, all tags;
- D: a second ``provgate scan --json`` of the unchanged tree (the cache);

Writes bench/results/scan.json and prints a table for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "sample_media"
sys.path.insert(0, str(HERE.parent / "plugin"))

from provgate.signals import Catalogue  # noqa: E402
from provgate.probe import ALWAYS_TAGS, COMMON_ARGS, FAST_ARGS  # noqa: E402


def build_corpus(dest: Path, n: int) -> list[Path]:
    expected = json.loads((SAMPLES / "EXPECTED.json").read_text())
    # the loose samples (the film delivery's frames and packages are bench_sequences' work)
    sources = [SAMPLES / name for name, kind in sorted(expected.items())
               if isinstance(kind, str) and "/" not in name and not name.startswith("unreadable")]
    files = []
    for i in range(n):
        src = sources[i % len(sources)]
        sub = dest / f"reel{i // 250:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        target = sub / f"{src.stem}_{i:05d}{src.suffix}"
        data = src.read_bytes()
        target.write_bytes(data + i.to_bytes(4, "big"))  # unique content, same structure
        files.append(target)
    return files


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of the children of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   env=env)
    wall = time.perf_counter() - t0
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def exiftool_split(files: list[Path], processes: int, tag_args: list[str]) -> float:
    """N plain ExifTool processes over the files, started together; wall time of all."""
    chunks = [files[i::processes] for i in range(processes)]
    lists = []
    for chunk in chunks:
        fd, name = tempfile.mkstemp(suffix=".args")
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(str(p) for p in chunk))
        lists.append(name)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["exiftool", *COMMON_ARGS, *FAST_ARGS, *tag_args, "-@", lst],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for lst in lists]
    for p in procs:
        p.wait()
    wall = time.perf_counter() - t0
    for lst in lists:
        os.unlink(lst)
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    provgate = shutil.which("provgate") or str(Path(sys.executable).parent / "provgate")
    tag_args = [*ALWAYS_TAGS, *Catalogue.load().tag_arguments()]
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-"))
    corpus = work / "corpus"
    files = build_corpus(corpus, args.files)
    # provgate as installed: its bytecode cached (pip compiles it; a sandbox that sets
    # PYTHONDONTWRITEBYTECODE would make every run compile 40 modules from source)
    env = {**os.environ, "PROVGATE_QUARANTINE": str(work / "q")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([provgate, "--version"], env=env, stdout=subprocess.DEVNULL, check=False)
    results: dict[str, list[float]] = {k: [] for k in ("A", "B", "B2", "C", "D")}
    rss = 0
    try:
        for run in range(args.runs):
            ledger = work / f"ledger{run}.db"
            scan = [provgate, "scan", str(corpus), "--json", "--ledger", str(ledger),
                    "--processes", str(args.processes)]
            wall, peak = timed(scan, env)
            results["A"].append(wall)
            rss = max(rss, peak)
            results["B"].append(exiftool_split(files, args.processes, []))
            results["B2"].append(exiftool_split(files, args.processes, tag_args))
            results["C"].append(timed(["exiftool", "-r", "-json", "-G1", str(corpus)])[0])
            results["D"].append(timed(scan, env)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    out = {
        "files": args.files, "runs": args.runs, "processes": args.processes,
        "seconds": med,
        "ratio_scan_vs_same_tags_same_processes": med["A"] / med["B"],
        "ratio_scan_vs_exiftool_all_tags_one_process": med["A"] / med["C"],
        "ratio_named_tags_vs_all_tags": med["B2"] / med["B"],
        "speedup_second_scan": med["A"] / med["D"],
        "scan_peak_rss_mib": rss / 1024,
        "exiftool_version": subprocess.run(["exiftool", "-ver"], capture_output=True,
                                           text=True).stdout.strip(),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scan.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.files} files, {args.processes} processes, median of {args.runs} runs")
    print(f"A provgate scan --json (fresh ledger)        {med['A']:7.2f} s")
    print(f"B exiftool, same tags, {args.processes} processes           {med['B']:7.2f} s"
          f"   A/B = {out['ratio_scan_vs_same_tags_same_processes']:.2f} (target <= 1.20)")
    print(f"B2 exiftool, catalogue's {len(tag_args)} tags named, {args.processes} processes "
          f"{med['B2']:6.2f} s")
    print(f"C exiftool -r -json -G1 (all tags, 1 process) {med['C']:7.2f} s"
          f"   A/C = {out['ratio_scan_vs_exiftool_all_tags_one_process']:.2f} (target <= 0.70)")
    print(f"D provgate scan, unchanged tree (cache)      {med['D']:7.2f} s"
          f"   A/D = {out['speedup_second_scan']:.1f}x (target >= 10)")
    print(f"provgate peak RSS {out['scan_peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
