"""The vendor's GenAI register at the gate: declared and detected evidence reconciled per file,
the guidance's principles as policy rules, through `provgate check` and the hook."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import ROOT, SAMPLES, run, run_json

HEADER = ("id,files,tool,version,purpose,category,environment,trains_on_inputs,stage,"
          "consent_ref,approval_ref\n")


def _delivery(tmp_path: Path, rows: str) -> Path:
    final = tmp_path / "EP101" / "final"
    (final / "vfx").mkdir(parents=True)
    for src, dest in (("ai_iptc_generated.jpg", "vfx/sh010_key.jpg"),
                      ("unknown_camera.jpg", "vfx/sh020_comp.jpg"),
                      ("ai_genfill_composite.jpg", "vfx/sh030_comp.jpg"),
                      ("human_capture.jpg", "vfx/sh040_plate.jpg"),
                      ("unknown_camera.jpg", "vfx/sh050_plate.jpg")):
        shutil.copy2(SAMPLES / src, final / dest)
    (final / "GENAI-DISCLOSURE.csv").write_text(HEADER + rows)
    return final


ROWS = (
    "G-1,vfx/sh010_key.jpg,Adobe Firefly,Image 3,generated key art,creative_output,enterprise,"
    "no,final,,NFX-0042\n"
    "G-2,sh020,Runway,Gen-3,sky replacement,creative_output,enterprise,no,final,,NFX-0043\n"
    "G-3,sh040,ElevenLabs,v2,voice clone of the lead,talent_performance,enterprise,no,final,,"
    "NFX-0044\n"
    "G-4,sh050,ChatGPT,4o,reference look,creative_output,consumer,yes,temp,,\n"
)


def test_declared_and_detected_evidence_are_reconciled_per_file(tmp_path: Path) -> None:
    final = _delivery(tmp_path, ROWS)
    records = {Path(r["path"]).name: r for r in run_json("check", final)}
    assert "GENAI-DISCLOSURE.csv" not in records  # the declaration is not a delivered file
    key = records["sh010_key.jpg"]  # declared and detected
    assert key["register"]["status"] == "disclosed" and key["register"]["entries"] == ["G-1"]
    assert any(e["source"] == "register" for e in key["evidence"])
    sky = records["sh020_comp.jpg"]  # declared, invisible to metadata: a re-rendered comp
    assert sky["register"]["status"] == "declared_only"
    assert sky["kind"] == "ai_composite" and sky["action"] == "escalate"
    fill = records["sh030_comp.jpg"]  # detected, not declared
    assert fill["register"]["status"] == "undisclosed"
    assert fill["action"] == "escalate" and "no entry of the GenAI register" in fill["reason"]
    voice = records["sh040_plate.jpg"]  # a talent use with no consent reference
    assert "principles.talent_without_consent" in {f["rule"] for f in voice["register"]["findings"]}
    assert voice["action"] in ("escalate", "block")
    look = records["sh050_plate.jpg"]  # trains on inputs, a consumer tool
    rules = {f["rule"] for f in look["register"]["findings"]}
    assert {"principles.trains_on_inputs", "principles.consumer_environment"} <= rules
    assert look["action"] == "escalate"


def test_a_register_that_does_not_validate_stops_the_gate(tmp_path: Path) -> None:
    final = _delivery(tmp_path, "G-1,vfx/sh010_key.jpg,Firefly,,key art,creative,enterprise,"
                                "no,final,,\n")
    result = run("check", final)
    assert result.exit_code == 2
    assert "line 2" in result.stderr and "category" in result.stderr


def test_the_hook_passes_the_register_and_the_template_validates(tmp_path: Path) -> None:
    final = _delivery(tmp_path, ROWS)
    elsewhere = tmp_path / "register.csv"
    (final / "GENAI-DISCLOSURE.csv").rename(elsewhere)
    hook = subprocess.run([str(ROOT / "hooks" / "pre-delivery"), "--register", str(elsewhere),
                           str(final)], capture_output=True, text=True,
                          env={**__import__("os").environ,
                               "PROVGATE": str(ROOT / ".venv" / "bin" / "provgate")})
    assert hook.returncode == 1 and "GenAI register" in hook.stderr
    template = tmp_path / "GENAI-DISCLOSURE.csv"
    assert run("register", "template", template).exit_code == 0
    assert run("register", "validate", template).exit_code == 0


def test_a_principle_raises_the_action_by_its_own_policy_line(tmp_path: Path) -> None:
    """Outside final a declared composite is only flagged, but a tool that trains on what it is
    given, run as a consumer service, escalates by the register's own rule."""
    final = _delivery(tmp_path, ROWS)
    look = {Path(r["path"]).name: r
            for r in run_json("check", final, "--zone", "working")}["sh050_plate.jpg"]
    assert look["kind"] == "ai_composite" and look["action"] == "escalate"
    assert look["rule"] in ("register.principles.trains_on_inputs",
                            "register.principles.consumer_environment")


def test_a_recheck_reads_the_cache_without_folding_the_declaration_in_again(
        tmp_path: Path) -> None:
    """The file cache keeps what the file alone says: a declared-only comp stays declared-only
    on every re-check, and the declaration is in its evidence once."""
    final = _delivery(tmp_path, ROWS)
    first = {Path(r["path"]).name: r for r in run_json("check", final)}
    for _ in range(2):
        again = {Path(r["path"]).name: r for r in run_json("check", final)}
    for name in ("sh010_key.jpg", "sh020_comp.jpg"):
        assert again[name]["register"]["status"] == first[name]["register"]["status"]
        assert again[name]["reason"] == first[name]["reason"]
        assert sum(e["source"] == "register" for e in again[name]["evidence"]) == sum(
            e["source"] == "register" for e in first[name]["evidence"]) == 1
    assert again["sh020_comp.jpg"]["register"]["status"] == "declared_only"


def test_an_approval_reference_counts_only_where_the_approval_is_scoped(tmp_path: Path) -> None:
    """A final use declares approval NFX-0042; an approval with that reference scoped to
    another delivery does not satisfy it here, one scoped to this delivery does."""
    final = _delivery(tmp_path, ROWS)
    other = tmp_path / "other.jpg"
    other.write_bytes(b"not a delivery file")

    def findings() -> set[str]:
        key = {Path(r["path"]).name: r for r in run_json("check", final)}["sh010_key.jpg"]
        return {f["rule"] for f in key["register"]["findings"]}

    assert "principles.final_without_approval" in findings()
    assert run("approve", other, "--ref", "NFX-0042", "--by", "S",
               "--delivery", "EP999").exit_code == 0
    assert "principles.final_without_approval" in findings()
    assert run("approve", other, "--ref", "NFX-0042", "--by", "S",
               "--delivery", "final").exit_code == 0
    assert "principles.final_without_approval" not in findings()
