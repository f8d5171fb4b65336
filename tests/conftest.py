"""Shared fixtures: real ExifTool, real SQLite files, real temporary trees of sample media."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from provgate import data
from provgate.cli import main
from provgate.ledger import Ledger
from provgate.session import Options
from provgate.watch import Watcher

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_media"
EXPECTED: dict[str, str] = json.loads((SAMPLES / "EXPECTED.json").read_text())


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own ledger and quarantine, never the user's."""
    (tmp_path / "state").mkdir(exist_ok=True)
    monkeypatch.setenv("PROVGATE_LEDGER", str(tmp_path / "state" / "ledger.db"))
    monkeypatch.setenv("PROVGATE_QUARANTINE", str(tmp_path / "state" / "quarantine"))
    monkeypatch.delenv("PROVGATE_POLICY", raising=False)
    monkeypatch.delenv("PROVGATE_EXIFTOOL", raising=False)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.db"


@pytest.fixture
def quarantine_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "quarantine"


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A copy of the sample media (sidecars included), without the script and EXPECTED.json."""
    dest = tmp_path / "samples"
    dest.mkdir()
    for f in SAMPLES.iterdir():
        if f.name in EXPECTED or f.suffix == ".xmp":
            shutil.copy2(f, dest / f.name)
    return dest


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    """A delivery tree: AI and clean files in final/, AI files in temp/."""
    root = tmp_path / "delivery"
    final, temp = root / "ep101" / "final", root / "ep101" / "temp"
    final.mkdir(parents=True)
    temp.mkdir(parents=True)
    for name in ("ai_iptc_generated.jpg", "ai_genfill_composite.jpg", "unknown_camera.jpg",
                 "human_capture.jpg", "ai_a1111_txt2img.png"):
        shutil.copy2(SAMPLES / name, final / name)
    for name in ("ai_iptc_generated.jpg", "ai_comfyui.png"):
        shutil.copy2(SAMPLES / name, temp / name)
    return root


def run(*args: str, input: str | None = None):  # noqa: A002 - click's name
    """Run the real CLI in-process; returns click's Result."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def run_json(*args: str) -> list[dict]:
    result = run(*args, "--json")
    records = json.loads(result.stdout)
    for rec in records:
        data.validate(rec, "decision", rec.get("path", "record"))
    return records


def report_json(*args: object) -> dict:
    """``provgate report --json ARGS``, valid against schemas/report.schema.json."""
    result = run("report", "--json", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    data.validate(doc, "report", "report")
    return doc


def by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in records}


def need_tool(name: str) -> str:
    """The path of a system tool a test drives (chromium, strace). Missing: skipped on a
    developer's machine, a failure in CI (.ci/run sets PROVGATE_REQUIRE_TOOLS=1), so a test
    that claims a capability never passes by not running."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (make test-tools installs it)"
    if os.environ.get("PROVGATE_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def without_dac_override() -> list[str]:
    """A command prefix that runs a child with permission checks on, even as root: the two
    DAC capabilities are dropped (setpriv), the user stays the same, so the virtualenv under
    /root still runs. Skipped where that cannot be done."""
    import subprocess

    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"]
    if os.geteuid() != 0 or not shutil.which("setpriv") or subprocess.run(
            [*drop, "true"], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            return []  # an ordinary user has permission checks anyway
        pytest.skip("setpriv cannot drop capabilities here")
    return drop


HANG_CONFIG = """
# A user-defined tag whose value takes an hour for files named *hang*: real ExifTool, stuck.
%Image::ExifTool::UserDefined = (
    'Image::ExifTool::Composite' => {
        HangForTest => { Require => 'FileName', ValueConv => 'sleep(3600) if $val =~ /hang/; $val' },
    },
);
1;
"""


def hanging_exiftool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the real ExifTool hang on files named *hang* (HANG_CONFIG) for the gate; returns a
    catalogue that asks for the hanging tag."""
    from provgate.signals import DEFAULT_CATALOGUE

    cfg = tmp_path / "hang.config"
    cfg.write_text(HANG_CONFIG)
    monkeypatch.setenv("PROVGATE_EXIFTOOL_CONFIG", str(cfg))
    cat = tmp_path / "sig.toml"
    cat.write_text(DEFAULT_CATALOGUE.read_text().replace(
        'tags = ["JUMBF:JUMDLabel"', 'tags = ["Composite:HangForTest", "JUMBF:JUMDLabel"'))
    return cat


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size``: another filesystem, and one that can be filled. Skips the
    test where mounting needs a root this machine does not give."""
    import subprocess
    import tempfile

    mnt = Path(tempfile.mkdtemp(prefix="provgate-tmpfs-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        mnt.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


# -- the watch daemon in a thread ----------------------------------------------------------

class Running:
    """A watch daemon (Watcher) in a thread, stopped and joined at the end of the test."""

    def __init__(self, roots: list[Path], **kw: object) -> None:
        opts = Options(mode=kw.pop("mode", "enforce"),  # type: ignore[arg-type]
                       timeout=kw.pop("timeout", 30.0),  # type: ignore[arg-type]
                       catalogue=kw.pop("catalogue", None))  # type: ignore[arg-type]
        self.watcher = Watcher(opts, [str(r) for r in roots], settle=kw.pop("settle", 0.5),
                               **kw)  # type: ignore[arg-type]
        self.ledger_path = opts.policy.config.ledger_path()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: self.watcher.ready, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()

    def decisions(self) -> list[dict]:
        if not self.ledger_path.exists():
            return []
        with Ledger(self.ledger_path) as led:
            return list(led.decisions())


    def idle(self) -> bool:
        return len(self.watcher.queue) == 0

    def events(self) -> list[dict]:
        if not self.ledger_path.exists():
            return []
        with Ledger(self.ledger_path) as led:
            return list(led.events())


def wait_for(cond, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def names(decisions: list[dict]) -> list[str]:
    return [Path(d["path"]).name for d in decisions]


# -- a deadline for code that must finish in bounded time -----------------------------------

class Watchdog(Exception):
    """Raised in the test when ``watchdog``'s alarm fires: the code under test ran too long."""


@contextlib.contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """SIGALRM after ``seconds``: a bound that fails the test instead of hanging it (no timing
    assertion: a failure means the alarm fired)."""
    def fire(signum: int, frame: object) -> None:
        raise Watchdog(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
