#!/usr/bin/env python3
"""Detection truth: provgate's verdicts against the labels of real files nobody here made.

    python bench/bench_truth.py [--realworld DIR] [--show] [-- SCAN OPTIONS...]

Scans ``../shared/realworld`` (or DIR) read-only (``provgate scan --json --dry-run``, a
throwaway ledger) and compares every record with its label: ``MANIFEST.tsv`` names an exact
kind and C2PA state per file; ``WILD.tsv`` the collector's word, read as the folder's README
says (``ai_generated`` -> an AI kind; ``human_capture`` -> no AI kind; ``no_provenance`` ->
``unknown``; ``corrupt`` -> ``unreadable`` or a record with a warning, never a crash;
``tampered_or_invalid`` -> C2PA ``invalid``). Prints:

- recall on AI files: the AI-labelled files given an AI kind;
- false AI on the rest: the files labelled not AI that were given an AI kind;
- exact-kind agreement: on the rows whose label names one kind (MANIFEST's kind column, WILD
  ``ai_generated`` and ``no_provenance``);
- C2PA state agreement (MANIFEST rows, WILD ``tampered_or_invalid``), and corrupt files handled;

then every disagreement with its deciding evidence. Options after ``--`` go to ``provgate
scan`` (``--policy FILE`` to turn on a detector). Writes bench/results/truth.json. Exits 1
when a labelled file is missing from the scan.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import provgate  # noqa: E402

AI = frozenset({"ai_generated", "ai_composite", "ai_possible"})
# WILD.tsv's labels: the kind they name exactly, when they name one
EXACT = {"ai_generated": "ai_generated", "no_provenance": "unknown"}


def labels(root: Path) -> list[dict[str, str]]:
    """One row per labelled file: file, label (ai / not_ai / corrupt / tampered), and the
    exact kind and C2PA state when the label names them."""
    rows = []
    manifest = root / "MANIFEST.tsv"
    if manifest.is_file():
        for r in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t"):
            rows.append({"file": r["file"], "label": "ai" if r["kind"] in AI else "not_ai",
                         "kind": r["kind"], "c2pa": r["c2pa"], "table": "MANIFEST.tsv"})
    wild = root / "WILD.tsv"
    if wild.is_file():
        for r in csv.DictReader(wild.open(encoding="utf-8"), delimiter="\t"):
            label = {"ai_generated": "ai", "human_capture": "not_ai", "no_provenance": "not_ai",
                     "corrupt": "corrupt", "tampered_or_invalid": "tampered"}[r["label"]]
            rows.append({"file": r["file"], "label": label, "kind": EXACT.get(r["label"], ""),
                         "c2pa": "invalid" if label == "tampered" else "",
                         "table": "WILD.tsv"})
    return rows


def scan(root: Path, extra: list[str]) -> dict[str, dict[str, Any]]:
    """Every record of a read-only scan, keyed by its path relative to ``root``."""
    with tempfile.TemporaryDirectory(prefix="provgate-truth-") as tmp:
        env = {**os.environ, "PROVGATE_LEDGER": str(Path(tmp) / "ledger.db"),
               "PROVGATE_QUARANTINE": str(Path(tmp) / "q")}
        out = subprocess.run([provgate(), "scan", str(root), "--json", "--dry-run",
                              "--exclude", "*.tsv", "--exclude", "*.md", *extra],
                             capture_output=True, text=True, env=env, timeout=1800)
    if not out.stdout.strip():
        sys.exit(f"bench_truth: provgate scan gave no records (exit {out.returncode}): "
                 f"{out.stderr.strip()[-2000:]}")
    return {os.path.relpath(r["path"], root): r for r in json.loads(out.stdout)}


def deciding(rec: dict[str, Any]) -> str:
    ev = next((e for e in rec["evidence"] if e["kind"] == rec["kind"]), None)
    if ev is None:
        return rec.get("error") or "no evidence"
    return f"{ev['marker']} at {ev['tag']}: {ev['value'][:90]}"


def measure(rows: list[dict[str, str]], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ai = [r for r in rows if r["label"] == "ai"]
    rest = [r for r in rows if r["label"] != "ai"]
    exact = [r for r in rows if r["kind"]]
    states = [r for r in rows if r["c2pa"]]
    corrupt = [r for r in rows if r["label"] == "corrupt"]
    missing = [r["file"] for r in rows if r["file"] not in records]
    got = {r["file"]: records.get(r["file"], {"kind": "missing", "c2pa": "missing",
                                              "evidence": [], "warnings": []}) for r in rows}
    misses = [r for r in ai if got[r["file"]]["kind"] not in AI]
    false_ai = [r for r in rest if got[r["file"]]["kind"] in AI]
    wrong_kind = [r for r in exact if got[r["file"]]["kind"] != r["kind"]]
    wrong_state = [r for r in states if got[r["file"]]["c2pa"] != r["c2pa"]]
    bad_corrupt = [r for r in corrupt if got[r["file"]]["kind"] in AI or not (
        got[r["file"]]["kind"] == "unreadable" or got[r["file"]].get("warnings")
        or got[r["file"]].get("error"))]

    def detail(r: dict[str, str], want: str) -> dict[str, str]:
        rec = got[r["file"]]
        return {"file": r["file"], "want": want, "got": f"{rec['kind']} / {rec['c2pa']}",
                "deciding": deciding(rec) if rec["kind"] != "missing" else "not scanned"}

    return {
        "files": len(rows),
        "recall_ai": [len(ai) - len(misses), len(ai)],
        "false_ai": [len(false_ai), len(rest)],
        "exact_kind": [len(exact) - len(wrong_kind), len(exact)],
        "c2pa_state": [len(states) - len(wrong_state), len(states)],
        "corrupt_handled": [len(corrupt) - len(bad_corrupt), len(corrupt)],
        "missing": missing,
        "disagreements": (
            [detail(r, "an AI kind") for r in misses]
            + [detail(r, "no AI kind") for r in false_ai]
            + [detail(r, f"kind {r['kind']}") for r in wrong_kind if r not in misses
               and r not in false_ai]
            + [detail(r, f"c2pa {r['c2pa']}") for r in wrong_state]
            + [detail(r, "unreadable or a warning, never AI") for r in bad_corrupt]),
    }


def _pct(pair: list[int]) -> str:
    done, total = pair
    return f"{done}/{total} ({100 * done / total:.0f} %)" if total else "0/0"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realworld", type=Path,
                    default=HERE.parent.parent / "shared" / "realworld")
    ap.add_argument("--show", action="store_true", help="print every file's kind and evidence")
    ap.add_argument("scan_options", nargs="*", help="after --: options for provgate scan")
    args = ap.parse_args()
    root = args.realworld.resolve()
    if not root.is_dir():
        print(f"bench_truth: {root} is not here: nothing to measure")
        return 0
    rows = labels(root)
    records = scan(root, args.scan_options)
    out = measure(rows, records)
    if args.show:
        for r in rows:
            rec = records.get(r["file"])
            if rec:
                print(f"{r['file']:58} {r['label']:9} {rec['kind']:13} {deciding(rec)[:110]}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "truth.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['files']} labelled files in {root}")
    print(f"recall on AI files            {_pct(out['recall_ai'])}")
    print(f"false AI on the rest          {_pct(out['false_ai'])}")
    print(f"exact-kind agreement          {_pct(out['exact_kind'])}")
    print(f"C2PA state agreement          {_pct(out['c2pa_state'])}")
    print(f"corrupt files handled         {_pct(out['corrupt_handled'])}")
    for d in out["disagreements"]:
        print(f"  {d['file']}: want {d['want']}, got {d['got']} ({d['deciding']})")
    for name in out["missing"]:
        print(f"  {name}: labelled but not in the scan")
    return 1 if out["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
