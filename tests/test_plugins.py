"""Detector plugins for real: a third-party package installed into a temporary virtualenv
declares an entry point in the ``provgate`` group, and provgate calls it for every file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import provgate
from conftest import SAMPLES

PLUGIN = '''
from provgate.hookspecs import hookimpl


@hookimpl
def provgate_detect(path, metadata, settings):
    """A studio's own rule: plates whose title says they came from the generator farm."""
    if settings.get("studio_rules", {}).get("enabled") is False:
        return None
    title = str(metadata.get("XMP-dc:Title") or "")
    if title.startswith("GENFARM"):
        return [{"kind": "ai_generated", "meaning": "made on the studio's generator farm",
                 "tag": "XMP-dc:Title", "value": title, "marker": "studio-genfarm"}]
    if path.endswith("boom.jpg"):
        raise RuntimeError("a detector that breaks")
    return [{"kind": "not-a-kind"}] if path.endswith("junk.jpg") else []
'''


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv that sees provgate (through a .pth) and has the plugin pip-installed."""
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "studio-rules"
    pkg.mkdir()
    (pkg / "studio_rules.py").write_text(PLUGIN)
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "studio-rules"
        version = "1.0"
        [project.entry-points.provgate]
        studio_rules = "studio_rules"
        [tool.hatch.build.targets.wheel]
        include = ["studio_rules.py"]
    """))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    source = Path(provgate.__file__).resolve().parent.parent  # an editable install's source
    (site / "provgate-dev.pth").write_text(f"{source}\n{sysconfig.get_paths()['purelib']}\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(pkg)], check=True)
    return venv


def _scan(python: Path, *args: str, env: dict[str, str]) -> list[dict]:
    out = subprocess.run([str(python), "-m", "provgate", "scan", *args, "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_installed_detector_is_called_for_every_file(plugin_venv: Path, tmp_path: Path
                                                        ) -> None:
    work = tmp_path / "show" / "work"
    work.mkdir(parents=True)
    plate = work / "plate.jpg"
    shutil.copy2(SAMPLES / "unknown_camera.jpg", plate)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=GENFARM batch 7",
                    str(plate)], check=True)
    for name in ("boom.jpg", "junk.jpg"):
        shutil.copy2(SAMPLES / "unknown_camera.jpg", work / name)
    env = {**os.environ, "PROVGATE_LEDGER": str(tmp_path / "state" / "ledger.db")}
    with_plugin = {Path(r["path"]).name: r
                   for r in _scan(plugin_venv / "bin" / "python", str(work), env=env)}
    assert with_plugin["plate.jpg"]["kind"] == "ai_generated"
    assert with_plugin["plate.jpg"]["evidence"][0]["marker"] == "studio-genfarm"
    # a detector that raises, or returns what is not evidence, changes nothing
    assert with_plugin["boom.jpg"]["kind"] == with_plugin["junk.jpg"]["kind"] == "unknown"
    assert any("detector studio_rules failed: a detector that breaks" in w
               for w in with_plugin["boom.jpg"]["warnings"])
    assert any("not evidence" in w for w in with_plugin["junk.jpg"]["warnings"])
    without = {Path(r["path"]).name: r
               for r in _scan(Path(sys.executable), str(work), "--rescan", env=env)}
    assert without["plate.jpg"]["kind"] == "unknown"  # the rule is the plugin's, not ours
