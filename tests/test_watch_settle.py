"""What the daemon decides while files arrive: an image sequence settles as a whole (a shot
written frame by frame is decided once its last frame has settled), and decisions about a
file still being written are marked superseded (real daemon, real inotify events, real
ExifTool)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import Running, wait_for

FILM = Path(__file__).resolve().parent.parent / "sample_media" / "film" / "plate_exr"


@pytest.fixture
def frames() -> list[Path]:
    if not FILM.is_dir():
        pytest.skip("sample_media/film is made by `make samples`")
    return sorted(FILM.glob("sh010_plate.*.exr"))


def test_a_sequence_arriving_frame_by_frame_settles_as_a_whole(tmp_path: Path,
                                                               frames: list[Path]) -> None:
    root = tmp_path / "delivery" / "final" / "sh010"
    root.mkdir(parents=True)
    (root / "notes.jpg").write_bytes(b"")  # a file beside it is decided on its own clock
    with Running([tmp_path / "delivery"], settle=1.0) as w:
        for frame in frames:  # one frame every 0.4 s: always inside the last one's window
            shutil.copy(frame, root / frame.name)
            time.sleep(0.4)
            assert not any("sh010_plate" in d["path"] for d in w.decisions()), \
                "a frame was decided while its sequence was still arriving"
        wait_for(lambda: sum("sh010_plate" in d["path"] for d in w.decisions()) == len(frames))
        decided = [d for d in w.decisions() if "sh010_plate" in d["path"]]
        assert {d["path"].rsplit("/", 1)[1] for d in decided} == {f.name for f in frames}
        assert any(d["kind"] == "ai_generated" and d["path"].endswith(".1007.exr")
                   for d in decided)
        assert any(d["path"].endswith("notes.jpg") for d in w.decisions())


def test_frames_of_two_sequences_settle_apart(tmp_path: Path, frames: list[Path]) -> None:
    root = tmp_path / "delivery" / "final"
    root.mkdir(parents=True)
    with Running([tmp_path / "delivery"], settle=0.8) as w:
        for frame in frames[:3]:
            shutil.copy(frame, root / frame.name.replace("sh010_plate", "sh020_done"))
        time.sleep(1.2)
        for frame in frames[3:8]:  # another shot keeps arriving...
            shutil.copy(frame, root / frame.name)
            time.sleep(0.3)
            # ...and the finished one is decided meanwhile
        assert sum("sh020_done" in d["path"] for d in w.decisions()) == 3
        wait_for(lambda: sum("sh010_plate" in d["path"] for d in w.decisions()) == 5)


def test_decisions_of_a_file_still_being_written_are_marked_superseded(tmp_path: Path) -> None:
    """A writer that closes and reopens a file between chunks gets a decision per settled
    chunk; each earlier one names the decision about the complete file that superseded it."""
    from conftest import SAMPLES, run

    root = tmp_path / "delivery" / "final"
    root.mkdir(parents=True)
    data = (SAMPLES / "ai_iptc_generated.jpg").read_bytes()
    target = root / "key.jpg"
    with Running([tmp_path / "delivery"], settle=0.5) as w:
        third = len(data) // 3
        for n, end in enumerate((third, 2 * third, len(data)), start=1):
            with open(target, "ab") as fh:
                fh.write(data[len(target.read_bytes()) if target.exists() else 0:end])
            wait_for(lambda n=n: len([d for d in w.decisions() if d["path"] == str(target)])
                     == n)
    listed = run("ledger", "list", "--json", "--path", str(target))
    rows = json.loads(listed.stdout)
    assert len(rows) == 3
    assert rows[0]["superseded_by"] == rows[1]["id"]
    assert rows[1]["superseded_by"] == rows[2]["id"]
    assert rows[2]["superseded_by"] is None and rows[2]["kind"] == "ai_generated"
    table = run("ledger", "list", "--path", str(target)).stdout
    assert f"(superseded by #{rows[2]['id']})" in table


def test_frames_whose_numbers_cross_a_width_settle_as_one_sequence(tmp_path: Path,
                                                                    frames: list[Path]) -> None:
    """plate.998 .. plate.1003 is one sequence to the grouping (numbers without a leading
    zero join across widths): the 3-digit frames wait for the 4-digit ones still arriving."""
    root = tmp_path / "delivery" / "final"
    root.mkdir(parents=True)
    with Running([tmp_path / "delivery"], settle=1.0) as w:
        for number, frame in zip(range(998, 1004), frames, strict=False):
            shutil.copy(frame, root / f"sh030_count.{number}.exr")
            time.sleep(0.45)
            assert not any("sh030_count" in d["path"] for d in w.decisions()), \
                "a frame was decided while its sequence was still arriving"
        wait_for(lambda: sum("sh030_count" in d["path"] for d in w.decisions()) == 6)
