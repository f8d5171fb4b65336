"""The daemon reads each watched root's GenAI register like `check` reads a delivery's: the
declaration joins the evidence of the files it covers, and a register that arrives or changes
has the root's files decided again under it (real daemon, real ExifTool, real ledger)."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Running, wait_for
from test_register_gate import HEADER, ROWS, _delivery


def _latest(w: Running) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for d in w.decisions():
        out[Path(d["path"]).name] = d
    return out


def test_the_daemon_reconciles_each_root_with_its_register(tmp_path: Path) -> None:
    final = _delivery(tmp_path, ROWS)
    with Running([final], settle=0.3) as w:
        wait_for(lambda: len(_latest(w)) >= 5, 60)
        wait_for(lambda: all("GenAI register" in d["reason"] for d in _latest(w).values()), 30)
        latest = _latest(w)
        assert "GENAI-DISCLOSURE.csv" not in latest  # the declaration is not a delivered file
        sky = latest["sh020_comp.jpg"]  # declared, invisible to metadata
        assert sky["kind"] == "ai_composite" and sky["action"] == "escalate"
        fill = latest["sh030_comp.jpg"]  # detected, not declared
        assert fill["action"] == "escalate" and "no entry of the GenAI register" in fill["reason"]
        # the vendor declares the fill: the daemon decides the root's files again under it
        time.sleep(1.1)  # another mtime second for the register
        (final / "GENAI-DISCLOSURE.csv").write_text(
            HEADER + ROWS + "G-5,vfx/sh030_comp.jpg,Adobe Firefly,3,generative fill,"
            "creative_output,enterprise,no,final,,NFX-0050\n")
        wait_for(lambda: "no entry of the GenAI register" not in
                 _latest(w)["sh030_comp.jpg"]["reason"], 60)
        assert "G-5" in _latest(w)["sh030_comp.jpg"]["reason"]


def test_a_register_that_does_not_validate_holds_its_roots_files(tmp_path: Path) -> None:
    """check stops on a register that does not validate; the daemon holds the root's files
    until the vendor fixes it (a broken declaration never lets the files through quietly)."""
    final = _delivery(tmp_path, "G-1,vfx/sh010_key.jpg,Firefly,,key art,creative,enterprise,"
                                "no,final,,\n")
    with Running([final], settle=0.3) as w:
        wait_for(lambda: len(_latest(w)) >= 5, 60)
        plate = _latest(w)["sh040_plate.jpg"]  # a human capture: allowed on its own
    assert plate["action"] in ("escalate", "block")
    assert "GenAI register does not validate" in plate["reason"]
