"""The pyblish validator in hooks/pyblish/, discovered from PYBLISHPLUGINPATH and run by
pyblish-base itself on instances shaped as AYON/OpenPype publishes them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, SAMPLES, run

import pyblish.api as pyblish_api  # noqa: E402
import pyblish.util as pyblish_util  # noqa: E402


@pytest.fixture
def publish(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Publish instances through pyblish: a collector made here, the validator discovered."""
    monkeypatch.setenv("PYBLISHPLUGINPATH", str(ROOT / "hooks" / "pyblish"))
    monkeypatch.delenv("PROVGATE_ZONE", raising=False)
    staging = tmp_path / "staging"
    staging.mkdir()

    def run(instances: list[dict[str, Any]]) -> Any:
        class Collect(pyblish_api.ContextPlugin):
            order = pyblish_api.CollectorOrder

            def process(self, context: Any) -> None:
                for spec in instances:
                    inst = context.create_instance(spec["name"], family=spec["family"])
                    inst.data.update(spec["data"])

        pyblish_api.register_plugin(Collect)
        try:
            return pyblish_util.publish()
        finally:
            pyblish_api.deregister_all_plugins()

    run.staging = staging  # type: ignore[attr-defined]
    return run


def _stage(staging: Path, *names: str) -> list[str]:
    for n in names:
        shutil.copy2(SAMPLES / n, staging / n)
    return list(names)


def _errors(context: Any) -> dict[str, str]:
    return {str(r["instance"]): str(r["error"]) for r in context.data["results"]
            if r["error"] and r["plugin"].__name__ == "ValidateProvgate"}


def test_validator_is_discovered_from_the_plugin_path(publish: Any) -> None:
    names = [p.__name__ for p in pyblish_api.discover()]
    assert "ValidateProvgate" in names


def test_generated_render_fails_validation(publish: Any) -> None:
    staging = publish.staging
    ctx = publish([
        {"name": "renderMain", "family": "render", "data": {"representations": [
            {"name": "jpg", "stagingDir": str(staging),
             "files": _stage(staging, "human_capture.jpg", "ai_iptc_generated.jpg")}]}},
        {"name": "plateMain", "family": "plate", "data": {"representations": [
            {"name": "mov", "stagingDir": str(staging),
             "files": _stage(staging, "unknown_plate.mov")[0]}]}},
        {"name": "voMain", "family": "audio",
         "data": {"files": [str(staging / _stage(staging, "ai_voice.wav")[0])]}},
    ])
    errors = _errors(ctx)
    assert set(errors) == {"renderMain", "voMain"}
    assert "provgate holds 1 of 2 files in renderMain" in errors["renderMain"]
    assert "ai_iptc_generated.jpg: In zone final, ai_generated" in errors["renderMain"]
    assert "provgate approve" in errors["renderMain"]
    by_name = {i.name: i for i in ctx}
    recs = {Path(r["path"]).name: r for r in by_name["renderMain"].data["provgate"]}
    assert recs["human_capture.jpg"]["action"] == "allow"
    assert recs["ai_iptc_generated.jpg"]["action"] == "block"
    assert (staging / "ai_iptc_generated.jpg").exists()  # the validator never moves files
    assert by_name["plateMain"].data["provgate"][0]["action"] == "allow"


def test_zone_per_instance_and_approval(publish: Any) -> None:
    staging = publish.staging
    files = _stage(staging, "ai_comfyui.png")
    spec = {"name": "conceptArt", "family": "image", "data": {
        "provgateZone": "temp", "representations": [
            {"stagingDir": str(staging), "files": files}]}}
    assert _errors(publish([spec])) == {}  # temp material is only socialized
    del spec["data"]["provgateZone"]
    assert "conceptArt" in _errors(publish([spec]))
    assert run("approve", staging / files[0], "--ref", "NFX-7", "--by", "Jo").exit_code == 0
    ctx = publish([spec])
    assert _errors(ctx) == {}
    assert next(iter(ctx)).data["provgate"][0]["approval"]["ref"] == "NFX-7"
