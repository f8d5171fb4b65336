"""Every sample gets the kind EXPECTED.json names, through real ExifTool, with valid records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import EXPECTED, by_name, run_json
from provgate.signals import Catalogue

# the loose samples at the top of sample_media/ (what the `samples` fixture copies); the film
# delivery's entries (film/...) and its "units" are tests/test_film_samples.py's
LOOSE: dict[str, str] = {n: k for n, k in EXPECTED.items() if isinstance(k, str) and "/" not in n}


def test_every_sample_gets_its_expected_kind(samples: Path) -> None:
    records = by_name(run_json("scan", samples))
    assert set(records) == set(LOOSE)
    wrong = {n: (r["kind"], LOOSE[n]) for n, r in records.items() if r["kind"] != LOOSE[n]}
    assert wrong == {}


def test_records_carry_fingerprint_size_and_evidence(samples: Path) -> None:
    records = by_name(run_json("scan", samples))
    rec = records["ai_iptc_generated.jpg"]
    assert rec["fingerprint"].startswith("sha256:") and len(rec["fingerprint"]) == 71
    assert rec["size"] == (samples / "ai_iptc_generated.jpg").stat().st_size
    ev = rec["evidence"][0]
    assert ev["tag"] == "XMP-iptcExt:DigitalSourceType"
    assert ev["value"].endswith("trainedAlgorithmicMedia")
    assert records["unknown_camera.jpg"]["evidence"] == []
    assert records["unreadable_empty.png"]["error"]


def test_absence_of_signals_is_unknown_never_human(samples: Path) -> None:
    records = by_name(run_json("scan", samples))
    for name in ("unknown_camera.jpg", "unknown_plate.mov", "unknown_room_tone.wav"):
        assert records[name]["kind"] == "unknown"


def test_substring_trap_is_not_generative(samples: Path) -> None:
    rec = by_name(run_json("scan", samples))["trap_substring.jpg"]
    assert rec["kind"] == "algorithmic"


def test_sidecar_counts_as_the_assets_metadata(samples: Path) -> None:
    rec = by_name(run_json("scan", samples))["sidecar_clip.mov"]
    assert rec["kind"] == "ai_generated"
    assert rec["evidence"][0]["source"] == "sidecar"
    os.remove(samples / "sidecar_clip.mov.xmp")
    assert by_name(run_json("scan", samples, "--rescan"))["sidecar_clip.mov"]["kind"] == "unknown"


def test_ai_signal_outranks_human_and_conflict_is_kept(tmp_path: Path) -> None:
    import subprocess
    f = tmp_path / "both.jpg"
    f.write_bytes((Path(__file__).parent.parent / "sample_media" / "human_capture.jpg").read_bytes())
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-IFD0:Software=Midjourney v6",
                    str(f)], check=True)
    rec = run_json("scan", f)[0]
    assert rec["kind"] == "ai_generated"
    assert {e["kind"] for e in rec["evidence"]} == {"ai_generated", "human"}


@pytest.mark.parametrize("fmt", ["--ndjson", "--csv"])
def test_other_output_formats(samples: Path, fmt: str) -> None:
    from conftest import run
    out = run("scan", samples, fmt).stdout.strip().splitlines()
    assert len(out) == len(LOOSE) + (1 if fmt == "--csv" else 0)


def test_catalogue_loads_and_asks_only_for_named_tags() -> None:
    cat = Catalogue.load()
    args = cat.tag_arguments()
    assert "-PNG:Parameters" in args and "-CBOR:all" in args
    assert all(a.startswith("-") and ":" in a for a in args)


def test_bad_catalogue_is_refused(tmp_path: Path) -> None:
    from provgate.errors import ConfigError
    bad = tmp_path / "sig.toml"
    bad.write_text('version = "1"\nmarkers = []\n[source_type]\n'
                   'tags = ["XMP-iptcExt:DigitalSourceType"]\n[source_type.codes]\n'
                   'x = { kind = "ai_made", status = "a", meaning = "b" }\n')
    with pytest.raises(ConfigError, match="source_type.codes.x.kind"):
        Catalogue.load(bad)


def test_builtin_data_files_are_valid() -> None:
    """The built-in catalogue and policy are trusted at run time; this is where they are
    checked against their schemas."""
    import tomllib

    from provgate import data
    from provgate.policy import DEFAULT_POLICY
    from provgate.signals import DEFAULT_CATALOGUE
    data.validate(tomllib.loads(DEFAULT_CATALOGUE.read_text()), "signatures", "catalogue")
    data.validate(tomllib.loads(DEFAULT_POLICY.read_text()), "policy", "default policy")


def test_progress_bar_counts_towards_the_walked_total(
        samples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    from provgate.output import progress
    tick = progress(True, [str(samples)])
    assert tick is not None
    time.sleep(0.5)  # the names-only walk beside the scan
    tick(3)
    err = capsys.readouterr().err
    total = sum(1 for p in samples.iterdir() if p.is_file())
    assert f"] 3/{total} files" in err and "[###" in err
    assert progress(False) is None
