"""Pixel evidence (provgate.pixels): false positives, recall and cost per megapixel.

1. Truth: every file of ../shared/realworld (when present) through ``pixels.detect``; its
   labels (MANIFEST.tsv ``kind``, WILD.tsv ``label``) say which files are AI-made. Prints false
   AI on the rest (goal: none) and recall on the AI files.
2. Null: the best watermark agreement seen on the non-AI images, each read at 8 grid offsets
   and mirrored, against the thresholds (how far an unmarked photo stays from them).
3. Cost: synthetic photo-like frames (HD, 4K UHD, 8K UHD; PNG and JPEG) through ``detect``:
   milliseconds per megapixel split into decode and analysis, and the peak memory of a fresh
   process reading one frame. Also how fast hostile headers are refused.

Writes bench/results/pixels.json and prints it.
"""

from __future__ import annotations

import csv
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "plugin"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from _common import write_results  # noqa: E402
from provgate import pixels  # noqa: E402
from provgate.vocabulary import AI_KINDS  # noqa: E402

ROOT = HERE.parent
REALWORLD = Path(os.environ.get("PROVGATE_REALWORLD", ROOT.parent / "shared" / "realworld"))


def labels() -> dict[Path, bool]:
    """file -> is it AI-made, from the collectors' manifests."""
    out: dict[Path, bool] = {}
    for name, column, is_ai in (("MANIFEST.tsv", "kind", lambda v: v in AI_KINDS),
                                ("WILD.tsv", "label", lambda v: v == "ai_generated")):
        manifest = REALWORLD / name
        if manifest.is_file():
            with manifest.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    out[REALWORLD / row["file"]] = is_ai(row[column])
    return out


def truth() -> dict[str, Any]:
    files = labels()
    if not files:
        return {"skipped": f"{REALWORLD} not found"}
    rows, false_ai, hits, errors = [], [], [], []
    for path, is_ai in sorted(files.items()):
        t0 = time.perf_counter()
        try:
            found = pixels.detect(path)
            error = None
        except pixels.PixelError as exc:
            found, error = list(exc.partial), f"{type(exc).__name__}: {exc}"
            errors.append(path.name)
        ai = [s for s in found if s.kind in AI_KINDS]
        if ai and not is_ai:
            false_ai.append(path.name)
        if ai and is_ai:
            hits.append(path.name)
        size = None
        try:
            with Image.open(path) as im:
                size = f"{im.size[0]}x{im.size[1]}"
        except Exception:  # noqa: BLE001 - not an image: fine
            pass
        rows.append({"file": str(path.relative_to(REALWORLD)), "ai": is_ai, "pixels": size,
                     "signals": [f"{s.kind}:{s.marker}" for s in found], "error": error,
                     "ms": round((time.perf_counter() - t0) * 1000, 1)})
    n_ai = sum(files.values())
    ai_rows = [r for r in rows if r["ai"]]
    return {
        "files": len(files), "ai_files": n_ai, "non_ai_files": len(files) - n_ai,
        "false_ai": false_ai, "false_ai_count": len(false_ai),
        "recall": f"{len(hits)}/{n_ai}", "recalled": hits,
        "ai_files_with_pixels_to_read": [r["file"] for r in ai_rows
                                         if r["pixels"] not in (None, "1x1")],
        "refused_or_undecodable": errors, "rows": rows,
    }


def null_distribution() -> dict[str, Any]:
    """Highest agreement per message over unmarked real images, grid shifted and mirrored."""
    files = [p for p, is_ai in labels().items() if not is_ai]
    best = {w.key: 0 for w in pixels.WATERMARKS}
    readings = 0
    for path in files:
        try:
            with Image.open(path) as im:
                if im.size[0] * im.size[1] > pixels.DEFAULT_LIMITS.max_pixels:
                    continue
                rgb = np.asarray(im.convert("RGB"))
        except Exception:  # noqa: BLE001 - not an image
            continue
        for dy, dx in ((0, 0), (3, 5), (4, 4), (7, 1)):
            for mirror in (False, True):
                view = rgb[dy:, dx:][:, ::-1] if mirror else rgb[dy:, dx:]
                for r in pixels.read_watermarks(np.ascontiguousarray(view)):
                    readings += 1
                    best[r.watermark.key] = max(best[r.watermark.key], r.agree)
    return {"readings": readings, "messages": {
        w.key: {"bits": len(w.bits), "best_unmarked": best[w.key], "ai_possible_from": w.weak,
                "ai_generated_from": w.strong} for w in pixels.WATERMARKS}}


def frame(width: int, height: int, seed: int = 1) -> np.ndarray:
    """Photo-like: smooth colour fields plus grain (noise costs a PNG decoder the most)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 97.0), 128 + 90 * np.cos(y / 131.0),
                     128 + 80 * np.sin((x + y) / 173.0)], axis=-1)
    grain = np.random.default_rng(seed).normal(0, 6, base.shape).astype(np.float32)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


# peak memory of a fresh process: VmHWM of its own address space (ru_maxrss would carry the
# parent's peak across fork and exec)
_CHILD = r"""
import sys
from provgate import pixels
import numpy, PIL.Image
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm()
pixels.detect(sys.argv[1])
print(base, hwm())
"""


def cost() -> dict[str, Any]:
    sizes = (("HD 1920x1080", 1920, 1080), ("4K UHD 3840x2160", 3840, 2160),
             ("8K UHD 7680x4320", 7680, 4320))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, w, h in sizes:
            rgb = frame(w, h)
            mp = w * h / 1e6
            for fmt, opts in (("PNG", {"compress_level": 6}), ("JPEG", {"quality": 90})):
                path = Path(tmp) / f"frame.{fmt.lower()}"
                Image.fromarray(rgb).save(path, fmt, **opts)
                runs = 3 if mp < 20 else 2
                total, decode = [], []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    found = pixels.detect(path)
                    total.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    with Image.open(path) as im:
                        np.asarray(im.convert("RGB"))
                    decode.append(time.perf_counter() - t0)
                assert not found, found
                child = subprocess.run([sys.executable, "-c", _CHILD, str(path)],
                                       capture_output=True, text=True, check=True)
                base_kb, peak_kb = map(int, child.stdout.split())
                t, d = statistics.median(total), statistics.median(decode)
                out.append({"frame": label, "format": fmt, "megapixels": round(mp, 1),
                            "file_mb": round(path.stat().st_size / 1e6, 1),
                            "detect_s": round(t, 3), "ms_per_mp": round(t * 1000 / mp, 1),
                            "decode_ms_per_mp": round(d * 1000 / mp, 1),
                            "analysis_ms_per_mp": round(max(t - d, 0) * 1000 / mp, 1),
                            "peak_rss_mb_over_imports": round((peak_kb - base_kb) / 1024, 1),
                            "peak_rss_bytes_per_pixel": round((peak_kb - base_kb) * 1024
                                                              / (w * h), 1)})
        # hostile: a 10-gigapixel header, and a real 60 MP PNG of zeros (130 KB)
        hostile = []
        for label, width, height, rows in (("header claims 100000x100000", 100_000, 100_000, 1),
                                           ("real 7746x7746 PNG of zeros", 7746, 7746, 7746)):
            z = zlib.compressobj(9)
            row = b"\0" * (width * 3 + 1)
            idat = b"".join(z.compress(row) for _ in range(rows)) + z.flush()
            path = Path(tmp) / "bomb.png"
            path.write_bytes(_png(width, height, idat))
            t0 = time.perf_counter()
            try:
                pixels.detect(path)
                outcome = "read"
            except pixels.PixelRefused as exc:
                outcome = f"refused: {str(exc).split(': ', 1)[1]}"
            hostile.append({"file": label, "bytes": path.stat().st_size,
                            "ms": round((time.perf_counter() - t0) * 1000, 2),
                            "outcome": outcome})
    return {"frames": out, "hostile": hostile}


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def main() -> None:
    t = truth()
    if "skipped" not in t:
        print(f"realworld: {t['files']} files, false AI on non-AI files: {t['false_ai_count']} "
              f"of {t['non_ai_files']} {t['false_ai'] or ''}; recall on AI files: {t['recall']} "
              f"(AI files with more than 1x1 pixels: {t['ai_files_with_pixels_to_read']})")
    with warnings.catch_warnings():  # Pillow on palette files of the corpus: not ours
        warnings.simplefilter("ignore", UserWarning)
        n = null_distribution()
    for key, m in n["messages"].items():
        print(f"null {key}: best of {n['readings']} unmarked readings {m['best_unmarked']}/"
              f"{m['bits']} bits; ai_possible from {m['ai_possible_from']}, ai_generated from "
              f"{m['ai_generated_from']}")
    c = cost()
    for r in c["frames"]:
        print(f"cost {r['frame']:18} {r['format']:4} {r['detect_s']:6.2f} s  "
              f"{r['ms_per_mp']:5.1f} ms/MP (decode {r['decode_ms_per_mp']:5.1f}, analysis "
              f"{r['analysis_ms_per_mp']:5.1f})  peak +{r['peak_rss_mb_over_imports']} MB")
    for r in c["hostile"]:
        print(f"hostile {r['file']} ({r['bytes']} bytes): {r['outcome']} in {r['ms']} ms")
    write_results("pixels", {"truth": t, "null": n, "cost": c})


if __name__ == "__main__":
    main()
