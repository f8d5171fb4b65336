"""The sample film delivery (sample_media/make_film_samples.py) is what EXPECTED.json says:
its IMF packages read and verify (the tampered one is held by its altered track file), its
frames group into the sequences listed under "units", and a real scan gives every frame and
file its expected kind, the spliced frames called out among their neighbours."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import EXPECTED, SAMPLES, run, run_json
from provgate import imf, sequences

FILM = {n: k for n, k in EXPECTED.items() if n.startswith("film/")}
UNITS: list[dict] = EXPECTED["units"]
SEQUENCES = [u for u in UNITS if u["unit"] == "sequence"]
PACKAGES = [u for u in UNITS if u["unit"] == "imf"]


@pytest.fixture(scope="module")
def film_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """One real scan of a copy of sample_media/film: records by path from sample_media/."""
    root = tmp_path_factory.mktemp("delivery")
    shutil.copytree(SAMPLES / "film", root / "film")
    with pytest.MonkeyPatch.context() as mp:  # conftest's isolation, for the module
        mp.setenv("PROVGATE_LEDGER", str(root / "ledger.db"))
        mp.delenv("PROVGATE_POLICY", raising=False)
        mp.delenv("PROVGATE_EXIFTOOL", raising=False)
        # once scan speaks in sequences, --frames lists the frames it groups
        frames = ["--frames"] if "--frames" in run("scan", "--help").output else []
        records = run_json("scan", root / "film", *frames)
    return {Path(r["path"]).relative_to(root).as_posix(): r for r in records}


def test_the_film_samples_are_listed_and_small() -> None:
    on_disk = {p.relative_to(SAMPLES).as_posix() for p in (SAMPLES / "film").rglob("*")
               if p.is_file()}
    paperwork = {f"{u['path']}/{n}" for u in PACKAGES for n in u["paperwork"]}
    assert on_disk == set(FILM) | paperwork
    assert sum((SAMPLES / n).stat().st_size for n in on_disk) < 3 << 20


def test_every_film_file_gets_its_expected_kind(film_records: dict[str, dict]) -> None:
    wrong = {n: (film_records.get(n, {}).get("kind"), kind) for n, kind in FILM.items()
             if film_records.get(n, {}).get("kind") != kind}
    assert wrong == {}
    clean = {n: (r["error"], r["warnings"]) for n, r in film_records.items()
             if r["error"] or r["warnings"]}
    assert clean == {}
    # package paperwork is never media: a record for it, if any, says nothing either way
    paperwork = {f"{u['path']}/{n}" for u in PACKAGES for n in u["paperwork"]}
    assert set(film_records) - set(FILM) <= paperwork
    assert all(film_records[n]["kind"] == "unknown" for n in paperwork if n in film_records)


def test_each_generator_record_is_read_where_it_sits(film_records: dict[str, dict]) -> None:
    def tags(name: str) -> set[str]:
        return {e["tag"] for e in film_records[name]["evidence"]}

    assert {"OpenEXR:Prompt", "OpenEXR:Software"} <= tags("film/plate_exr/sh010_plate.1007.exr")
    assert "OpenEXR:Parameters" in tags("film/comp_exr/sh020_comp.1004.exr")
    assert "UserData:Comment" in tags("film/editorial/sh030_prores.mov")
    assert "RIFF:Description" in tags("film/audio/sh050_voice.wav")
    ep101 = next(u for u in PACKAGES if u["integrity"] == "pass")
    assert "MXF:ApplicationName" in tags(f"{ep101['path']}/{ep101['evidence_in'][0]}")


@pytest.mark.parametrize("unit", SEQUENCES, ids=lambda u: u["pattern"])
def test_frames_group_into_the_listed_sequence(unit: dict) -> None:
    folder = (SAMPLES / unit["pattern"]).parent
    found = sequences.group(sorted(str(p) for p in folder.iterdir()))
    assert len(found) == 1 and isinstance(found[0], sequences.Sequence)
    seq = found[0]
    assert seq.pattern == Path(unit["pattern"]).name
    assert sequences.format_ranges(sequences.ranges(seq.frames)) == unit["frames"]
    assert seq.gaps == ()


@pytest.mark.parametrize("unit", SEQUENCES, ids=lambda u: u["pattern"])
def test_sequence_kind_and_the_frames_that_carry_it(unit: dict,
                                                    film_records: dict[str, dict]) -> None:
    folder = Path(unit["pattern"]).parent.as_posix()
    seq = sequences.group([n for n in FILM if n.startswith(folder + "/")])[0]
    assert isinstance(seq, sequences.Sequence)
    rows = [(n, film_records[p]["kind"], [e["tag"] for e in film_records[p]["evidence"]])
            for n, p in seq]
    summary = sequences.summarize(rows)
    assert summary.kind == unit["kind"]
    with_evidence = [n for n, _kind, tags in rows if tags]
    assert sequences.format_ranges(sequences.ranges(with_evidence)) == \
        unit["frames_with_evidence"]
    if unit["frames_with_evidence"]:  # the spliced frame is called out among its neighbours
        (callout,) = summary.callouts
        assert callout.text == f"frame {unit['frames_with_evidence']} is {unit['kind']}; " \
                               "frames around it are unknown"


@pytest.mark.parametrize("unit", PACKAGES, ids=lambda u: u["path"])
def test_imf_package_reads_and_verifies_as_listed(unit: dict) -> None:
    folder = SAMPLES / unit["path"]
    package = imf.read(str(folder))
    assert package.kind == "imf" and package.problems == ()
    (comp,) = package.compositions
    assert comp.title == unit["title"] and str(comp.edit_rate) == unit["edit_rate"]
    roles = {os.path.basename(p): r for p, r in package.roles.items()}
    assert roles == {**{n: "paperwork" for n in unit["paperwork"]},
                     **{n: "track_file" for n in unit["track_files"]}}
    placed = {os.path.basename(package.path_of(r.track_file_id) or ""): r.record_timecode
              for r in comp.resources}
    assert placed == unit["record_timecodes"]
    problems = imf.verify(package)
    if unit["integrity"] == "pass":
        assert problems == []
        return
    assert unit["integrity"] == "hold"
    assert [(p.kind, os.path.basename(p.path or "")) for p in problems] == \
        [("altered", n) for n in unit["altered"]]
    assert "does not match its packing list" in problems[0].message
