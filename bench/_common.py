"""What the benchmarks share: where provgate is, and where results go."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def provgate() -> str:
    return shutil.which("provgate") or str(Path(sys.executable).parent / "provgate")


def write_results(name: str, out: dict[str, Any]) -> None:
    """bench/results/NAME.json, and the same JSON on stdout."""
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
