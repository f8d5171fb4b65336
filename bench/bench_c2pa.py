#!/usr/bin/env python3
"""C2PA validation cost: per signed image of a few MB, and on a scan without credentials.

    python bench/bench_c2pa.py

1. a 1600x1200 JPEG (about 2 MB) signed with a throwaway test CA: median time of
   CredentialChecker.check (target: at most 30 ms);
2. ``provgate scan --json`` of the 2,000-file corpus of bench_scan.py with and without
   c2pa-python importable, fresh ledgers, medians of 3 (target: at most +10 %).
Writes bench/results/c2pa.json.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import write_results  # noqa: E402
sys.path.insert(0, str(HERE.parent / "plugin"))
sys.path.insert(0, str(HERE.parent / "sample_media"))
sys.path.insert(0, str(HERE))

import c2pa  # noqa: E402
import make_c2pa_samples as samples  # noqa: E402
from bench_scan import build_corpus  # noqa: E402
from PIL import Image  # noqa: E402
from provgate.credentials import CredentialChecker  # noqa: E402
from provgate.probe import ExifToolPool  # noqa: E402
from provgate.signals import Catalogue  # noqa: E402

WITH = "from provgate.cli import main\nmain()"
WITHOUT = "import sys; sys.modules['c2pa'] = None\nfrom provgate.cli import main\nmain()"


def signed_image(work: Path) -> Path:
    rnd = random.Random(1)
    raw = bytes(rnd.getrandbits(8) for _ in range(1600 * 1200 * 3))
    Image.frombytes("RGB", (1600, 1200), raw).save(work / "big.jpg", quality=95)
    _ca, chain, key = samples.test_ca()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key,
                                                       None))
    created = [{"action": "c2pa.created",
                "digitalSourceType": samples.DST + "trainedAlgorithmicMedia"}]
    builder = c2pa.Builder(samples.manifest("big", created), context=samples.CONTEXT)
    out = work / "big_signed.jpg"
    with open(work / "big.jpg", "rb") as fin, open(out, "w+b") as fout:
        builder.sign(signer, "image/jpeg", fin, fout)
    return out


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-c2pa-"))
    os.environ["PROVGATE_QUARANTINE"] = str(work / "q")
    try:
        img = signed_image(work)
        checker = CredentialChecker(Catalogue.load())
        with ExifToolPool(None, processes=1) as pool:
            meta = pool.probe([str(img)])[str(img)]
        times = []
        for _ in range(11):
            t0 = time.perf_counter()
            state = checker.check(str(img), meta, "not_checked").state
            times.append(time.perf_counter() - t0)
        corpus = work / "corpus"
        build_corpus(corpus, 2000)
        runs: dict[str, list[float]] = {"with": [], "without": []}
        for i in range(3):
            for name, code in (("with", WITH), ("without", WITHOUT)):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", code, "scan", str(corpus), "--json",
                                "--ledger", str(work / f"{name}{i}.db")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                runs[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in runs.items()}
        out = {"signed_image_mb": img.stat().st_size / 1e6, "state": state,
               "validate_ms": statistics.median(times) * 1000,
               "scan_with_c2pa_s": med["with"], "scan_without_c2pa_s": med["without"],
               "c2pa_overhead": med["with"] / med["without"] - 1}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results("c2pa", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
