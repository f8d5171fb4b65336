"""The pre-commit hook as a pipeline would install it: the real pre-commit builds provgate from
this checkout's .pre-commit-hooks.yaml into its own virtualenv and runs it on `git commit`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES

import pre_commit  # noqa: E402,F401 - run as python -m pre_commit below


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=check, env=env, timeout=600)


@pytest.fixture(scope="module")
def hook_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as pre-commit would clone it, uncommitted changes included."""
    src = tmp_path_factory.mktemp("provgate-src")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        if rel.startswith(("sample_media/", "tests/", "bench/")) or not (ROOT / rel).is_file():
            continue
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    _git(src, "init", "-q")
    _git(src, "add", "-A")
    _git(src, "commit", "-qm", "snapshot")
    return src


@pytest.fixture
def media_repo(tmp_path: Path, hook_source: Path, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    # one pre-commit cache (the hook's virtualenv) for the whole module
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path_factory.getbasetemp() / "pre-commit"))
    repo = tmp_path / "show-deliverables"
    repo.mkdir()
    _git(repo, "init", "-q")
    rev = _git(hook_source, "rev-parse", "HEAD").stdout.strip()
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {hook_source.as_uri()}\n  rev: {rev}\n  hooks:\n"
        "  - id: provgate-check\n    args: [--zone, final]\n")
    _git(repo, "add", ".pre-commit-config.yaml")
    _git(repo, "commit", "-qm", "config", "--no-verify")
    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, check=True,
                   capture_output=True, timeout=60)
    return repo


def _commit(repo: Path, *names: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    for sample, dest in names:
        (repo / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLES / sample, repo / dest)
        _git(repo, "add", "--", dest)
    return _git(repo, "commit", "-m", "deliver", check=False)


def test_commit_of_generated_media_is_refused(media_repo: Path) -> None:
    result = _commit(media_repo, ("human_capture.jpg", "ep101/sh010.jpg"),
                     ("ai_iptc_generated.jpg", "ep101/-sh020 v2.jpg"))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "provgate check" in out and "Failed" in out
    assert "HELD block" in out and "-sh020 v2.jpg" in out  # a leading '-' is a name, not a flag
    assert _git(media_repo, "rev-list", "--count", "HEAD").stdout.strip() == "1"


def test_clean_media_commits(media_repo: Path) -> None:
    result = _commit(media_repo, ("human_capture.jpg", "ep101/sh010.jpg"),
                     ("unknown_plate.mov", "ep101/plate.mov"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "provgate check" in out and "Passed" in out
    assert _git(media_repo, "rev-list", "--count", "HEAD").stdout.strip() == "2"


def test_non_media_files_are_not_gated(media_repo: Path, tmp_path: Path) -> None:
    (media_repo / "notes.txt").write_text("turnover notes\n")
    _git(media_repo, "add", "notes.txt")
    result = _git(media_repo, "commit", "-m", "notes", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "(no files to check)Skipped" in out.replace(".", "")
