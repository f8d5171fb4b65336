"""Image sequences: frame trees made here (EXR frames written with the OpenEXR package when it
is installed, named files otherwise), grouped, digested and summarised."""

from __future__ import annotations

import gc
import hashlib
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from provgate import sequences
from provgate.sequences import Sequence, digest, format_ranges, group, ranges, summarize

try:
    import numpy as np
    import OpenEXR
except ImportError:  # grouping only needs names
    OpenEXR = None


def write_frame(path: Path, header: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if OpenEXR is not None and path.suffix == ".exr":
        n = sum(path.name.encode())
        h = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
             **(header or {})}
        pixels = np.full((4, 4, 3), n % 255 / 255, dtype="float16")
        OpenEXR.File(h, {"RGB": pixels}).write(str(path))
    else:
        path.write_bytes(b"frame " + path.name.encode() + repr(header).encode())


def walk(root: Path) -> list[str]:
    out = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        out += [os.path.join(here, f) for f in sorted(files)]
    return out


def fingerprint(path: str) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A vendor's delivery: an EXR plate with a gap and a generated frame spliced in, a DPX
    scan named by timecode, a lone numbered TIFF, versions, a movie, look-alikes."""
    root = tmp_path / "delivery"
    plate = root / "sh010" / "plate"
    for n in range(1001, 1025):
        if n in (1010, 1011):
            continue  # a gap
        header = {"prompt": '{"prompt": "castle", "sampler": "euler"}',
                  "software": "ComfyUI"} if n == 1017 else None
        write_frame(plate / f"sh010_plate_v001.{n}.exr", header)
    write_frame(plate / "sh010_plate_v001.1025.EXR")          # another extension (case)
    write_frame(plate / "sh010_plate_v001.01026.exr")          # another padding
    write_frame(root / "sh020" / "plate" / "sh010_plate_v001.1001.exr")  # another folder
    write_frame(root / "sh020" / "plate" / "sh010_plate_v001.1002.exr")
    for n in range(86400, 86410):
        write_frame(root / "scan" / f"A001_{n:07d}.dpx")
    write_frame(root / "ref" / "still.1001.tif")               # one frame: a file
    write_frame(root / "ref" / "still_v001.exr")                # versions, not frames
    write_frame(root / "ref" / "still_v002.exr")
    write_frame(root / "ref" / "reel_001.mov")                  # movies are never frames
    write_frame(root / "ref" / "reel_002.mov")
    write_frame(root / "ref" / "notes.txt")
    return root


def test_a_delivery_tree_groups_into_sequences_and_files(tree: Path) -> None:
    paths = walk(tree)
    units = group(paths)
    seqs = [u for u in units if isinstance(u, Sequence)]
    files = sorted(os.path.relpath(u, tree) for u in units if isinstance(u, str))
    plate = str(tree / "sh010" / "plate") + "/"
    assert [(s.directory, s.pattern, s.first, s.last, s.count, s.gaps) for s in seqs] == [
        (str(tree / "scan") + "/", "A001_#######.dpx", 86400, 86409, 10, ()),
        (plate, "sh010_plate_v001.####.exr", 1001, 1024, 22, ((1010, 1011),)),
        (str(tree / "sh020" / "plate") + "/", "sh010_plate_v001.####.exr", 1001, 1002, 2, ()),
    ]
    assert files == sorted([
        "sh010/plate/sh010_plate_v001.1025.EXR", "sh010/plate/sh010_plate_v001.01026.exr",
        "ref/still.1001.tif", "ref/still_v001.exr", "ref/still_v002.exr", "ref/reel_001.mov",
        "ref/reel_002.mov", "ref/notes.txt"])
    # every path is accounted for exactly once, and a sequence's paths are its files on disk
    covered = [p for s in seqs for p in s.paths()] + [u for u in units if isinstance(u, str)]
    assert sorted(covered) == sorted(paths)
    plate_seq = seqs[1]
    assert all(os.path.isfile(p) for p in plate_seq.paths())
    assert plate_seq.path_pattern == plate + "sh010_plate_v001.####.exr"
    assert plate_seq.printf == "sh010_plate_v001.%04d.exr"
    assert plate_seq.describe() == \
        "sh010_plate_v001.####.exr 1001-1024 (22 frames; 2 missing: 1010-1011)"
    assert plate_seq.frame_of(plate + "sh010_plate_v001.1017.exr") == 1017
    assert plate_seq.frame_of(plate + "sh010_plate_v001.1010.exr") is None  # in the gap
    assert plate_seq.frame_of(plate + "sh010_plate_v001.01017.exr") is None
    assert plate_seq.folder == plate[:-1]


def test_group_keeps_the_order_paths_came_in() -> None:
    units = group(["/a/z.txt", "/a/b.0002.exr", "/a/c.mov", "/a/b.0001.exr", "/a/a.txt"])
    assert [u if isinstance(u, str) else u.pattern for u in units] == \
        ["/a/z.txt", "b.####.exr", "/a/c.mov", "/a/a.txt"]


@pytest.mark.parametrize("names, expected", [
    # any padding; numbers past the padding stay in the sequence
    (["p.998.exr", "p.999.exr", "p.1000.exr"], [("p.###.exr", 998, 1000)]),
    (["p.9999.exr", "p.10000.exr"], [("p.####.exr", 9999, 10000)]),
    # unpadded numbers
    (["p.1.exr", "p.2.exr", "p.10.exr"], [("p.#.exr", 1, 10)]),
    # two paddings of one name are two sequences
    (["p.001.exr", "p.002.exr", "p.0001.exr", "p.0002.exr"],
     [("p.###.exr", 1, 2), ("p.####.exr", 1, 2)]),
    # the separator may be "_"; a name may be only the number
    (["plate_0001.dpx", "plate_0003.dpx"], [("plate_####.dpx", 1, 3)]),
    (["00086400.dpx", "00086401.dpx"], [("########.dpx", 86400, 86401)]),
    # the last number is the frame: versions and shot numbers before it are the name
    (["sh010_v002.1001.exr", "sh010_v002.1002.exr", "sh010_v003.1001.exr"],
     [("sh010_v002.####.exr", 1001, 1002)]),
    # no separator before the number: not a frame
    (["render0001.png", "render0002.png"], []),
    # not an image format delivered as frames
    (["take.0001.wav", "take.0002.wav"], []),
])
def test_naming(names: list[str], expected: list[tuple[str, int, int]]) -> None:
    seqs = [u for u in group([f"/x/{n}" for n in names]) if isinstance(u, Sequence)]
    assert [(s.pattern, s.first, s.last) for s in seqs] == expected
    for s in seqs:  # paths come back exactly as given
        assert set(s.paths()) <= {f"/x/{n}" for n in names}


def test_paths_are_reproduced_exactly() -> None:
    given = ["plate.0001.exr", "plate.0002.exr", "/plate.0001.exr", "/plate.0002.exr",
             "a//b/plate.0001.exr", "a//b/plate.0002.exr", "/x/ü ñ/p.1.tif", "/x/ü ñ/p.2.tif",
             "/x/bad\udcff/p.01.tif", "/x/bad\udcff/p.02.tif"]
    units = group(given)
    assert all(isinstance(u, Sequence) for u in units) and len(units) == 5
    assert sorted(p for u in units for p in u.paths()) == sorted(given)


def test_sequence_digest_binds_every_frame(tree: Path) -> None:
    (seq,) = [u for u in group(walk(tree / "sh010" / "plate")) if isinstance(u, Sequence)]
    fps = [(n, fingerprint(p)) for n, p in seq]
    d = digest(fps)
    assert d.startswith("sha256:") and len(d) == 71 and d == digest(list(fps))
    # the digest is not any frame's fingerprint nor the hash of the concatenation
    assert d not in {fp for _, fp in fps}
    # one frame's bytes changed: a new digest
    frame = Path(seq.path(1017))
    frame.write_bytes(frame.read_bytes() + b"\0")
    assert digest((n, fingerprint(p)) for n, p in seq) != d
    # a frame dropped, added or renumbered: a new digest
    assert digest(fps[:-1]) != d
    assert digest([*fps, (1030, fps[0][1])]) != d
    assert digest([(n + 1, fp) for n, fp in fps]) != d
    # a frame without a fingerprint (unreadable, vanished): nothing to approve
    with pytest.raises(ValueError):
        digest([*fps[:3], (1004, None)])
    with pytest.raises(ValueError):
        digest([fps[1], fps[0]])  # out of order
    with pytest.raises(ValueError):
        digest([])


def test_summary_names_the_spliced_frame() -> None:
    rows = [(n, "unknown", ()) for n in range(1001, 1101) if n != 1050]
    rows.append((1050, "ai_generated", ("OpenEXR:Prompt", "OpenEXR:Software")))
    s = summarize(rows)
    assert s.kind == "ai_generated"
    assert s.frames == ((1050, 1050),)
    assert s.count == 100
    assert [(k.kind, k.frames, k.count) for k in s.kinds] == [
        ("ai_generated", ((1050, 1050),), 1),
        ("unknown", ((1001, 1049), (1051, 1100)), 99)]
    assert [(t.tag, t.kind, t.frames) for t in s.evidence] == [
        ("OpenEXR:Prompt", "ai_generated", ((1050, 1050),)),
        ("OpenEXR:Software", "ai_generated", ((1050, 1050),))]
    (c,) = s.callouts
    assert c.text == "frame 1050 is ai_generated; frames around it are unknown"
    assert (c.before, c.after) == ((1049, "unknown"), (1051, "unknown"))
    assert s.lines() == [
        "ai_generated: frame 1050 (1 of 100)",
        "unknown: frames 1001-1049, 1051-1100 (99 of 100)",
        "OpenEXR:Prompt: ai_generated on frame 1050",
        "OpenEXR:Software: ai_generated on frame 1050",
        "frame 1050 is ai_generated; frames around it are unknown",
    ]


def test_summary_ranges_runs_and_edges() -> None:
    rows = ([(n, "ai_composite", ("XMP-iptcExt:DigitalSourceType",)) for n in (1001, 1002, 1003)]
            + [(n, "human", ("C2PA:actions",)) for n in range(1004, 1050)]
            + [(1050, "ai_composite", ("XMP-iptcExt:DigitalSourceType",))]
            + [(n, "human", ("C2PA:actions",)) for n in range(1051, 1061)])
    s = summarize(reversed(rows))  # any order in
    assert s.kind == "ai_composite"
    assert format_ranges(s.frames) == "1001-1003, 1050"
    assert [c.text for c in s.callouts] == [
        "frames 1001-1003 are ai_composite; frame 1004 after them is human",
        "frame 1050 is ai_composite; frames around it are human"]


def test_sequence_kind_order() -> None:
    """Any AI kind outranks the rest; an unreadable frame outranks the non-AI kinds (it holds
    a final sequence); a sequence is human only when every frame is."""
    def kind(*kinds: str) -> str:
        return summarize([(i, k, ()) for i, k in enumerate(kinds)]).kind

    assert kind("human", "ai_possible", "unreadable") == "ai_possible"
    assert kind("ai_possible", "ai_generated", "ai_composite") == "ai_generated"
    assert kind("human", "unreadable", "algorithmic") == "unreadable"
    assert kind("human", "algorithmic", "unknown") == "algorithmic"
    assert kind("human", "human", "unknown") == "unknown"
    assert kind("human", "human") == "human"
    s = summarize([(1, "ai_generated", ()), (2, "unreadable", ()), (3, "unknown", ())])
    assert s.unreadable == ((2, 2),)  # the policy takes the strongest action over s.kinds
    assert [k.kind for k in s.kinds] == ["ai_generated", "unreadable", "unknown"]
    assert sequences.SEQUENCE_ORDER[0] == "ai_generated"
    with pytest.raises(ValueError):
        summarize([(1, "clean", ())])
    with pytest.raises(ValueError):
        summarize([(1, "human", ()), (1, "human", ())])
    with pytest.raises(ValueError):
        summarize([])


def test_callouts_are_bounded() -> None:
    rows = [(n, "ai_generated" if n % 2 else "unknown", ("T",)) for n in range(10_000)]
    s = summarize(rows)
    assert len(s.callouts) == sequences.MAX_CALLOUTS
    assert s.callouts_left_off == 5000 - sequences.MAX_CALLOUTS
    assert max(len(line) for line in s.lines()) <= 400
    assert "more ranges" in s.lines()[0]


def test_ranges() -> None:
    assert ranges([1050, 1001, 1002, 1003, 1002]) == [(1001, 1003), (1050, 1050)]
    assert format_ranges([(1001, 1003), (1050, 1050)]) == "1001-1003, 1050"
    assert format_ranges([(i, i) for i in range(0, 40, 2)], limit=3) == \
        "0, 2, 4 and 17 more ranges"


def test_100k_frames_in_bounded_memory_and_time() -> None:
    """Grouping 100,000 frame paths, digesting and summarising them: the figures the
    session's budget (200 MB for 100,000 frames) is measured against."""
    paths = [f"/srv/delivery/show/ep101/final/vfx/sh010/plate/sh010_plate_v001.{n:07d}.exr"
             for n in range(1001, 101_001) if n != 50_000]
    paths += [f"/srv/delivery/show/ep101/final/vfx/sh010/plate/notes_{i}.txt" for i in range(3)]
    fps = ["sha256:" + hashlib.sha256(str(n).encode()).hexdigest() for n in range(100_000)]
    gc.collect()
    tracemalloc.start()
    t = time.perf_counter()
    units = group(paths)
    t_group = time.perf_counter() - t
    _, peak_group = tracemalloc.get_traced_memory()
    (seq,) = [u for u in units if isinstance(u, Sequence)]
    held = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    d = digest(zip(seq.frames, fps, strict=False))
    s = summarize((n, "ai_generated" if n == 77_777 else "unknown",
                   ("OpenEXR:Prompt",) if n == 77_777 else ()) for n in seq.frames)
    t_fold = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seq.count == 99_999 and seq.gaps == ((50_000, 50_000),) and d.startswith("sha256:")
    assert s.frames == ((77_777, 77_777),) and len(s.callouts) == 1
    print(f"\n100k frames: group {t_group:.2f}s peak {peak_group / 2**20:.1f} MiB "
          f"(sequence held: {held / 2**20:.1f} MiB incl. result list); digest+summarize "
          f"{t_fold:.2f}s, overall peak {peak / 2**20:.1f} MiB")
    # with tracemalloc on (it slows Python down about twice)
    assert peak_group < 32 * 2**20 and peak < 64 * 2**20
    assert t_group < 10 and t_fold < 20
