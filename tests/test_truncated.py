"""Truncated and corrupt media are held in a final zone (issue 10).

ExifTool reads metadata, not media: a file cut in its image or audio data, or one whose last box
or chunk is gone, often reads "fine". Such a file is ``unreadable`` with the finding as its
error: ExifTool's own truncation or corruption warning (signatures.toml ``[integrity]``), or,
where ExifTool says nothing, a bounded look at the file's end (probe.py). Real ExifTool on real
cut copies of sample_media/; the copies "without provenance" are made with ExifTool itself
(``-all=``) or, for the formats ExifTool 12.57 cannot write (MP3, WebP), by dropping the tag
from the container.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SAMPLES, by_name, run, run_json
from provgate import data
from provgate.errors import ConfigError
from provgate.probe import ExifToolPool, Integrity

FORMATS = ("jpg", "png", "tif", "heic", "webp", "mov", "mp4", "wav", "mp3", "pdf")
# where a copy cut short ends: half, nine tenths, two bytes short (a JPEG without FFD9, a PNG
# cut in IEND, a PDF in %%EOF), twelve bytes short (a PNG without IEND)
CUTS = {"half": lambda n: n // 2, "nine-tenths": lambda n: n * 9 // 10,
        "two-short": lambda n: n - 2, "twelve-short": lambda n: n - 12}
AI_SAMPLES = {"jpg": "ai_iptc_generated.jpg", "png": "ai_comfyui.png",
              "tif": "ai_composite_synthetic.tif", "heic": "ai_midjourney.heic",
              "webp": "possible_composite.webp", "mov": "ai_comfyui_video.mov",
              "mp4": "ai_runway_clip.mp4", "wav": "ai_voice.wav", "mp3": "ai_music.mp3",
              "pdf": "ai_storyboard.pdf"}


def _without_id3v2(mp3: bytes) -> bytes:
    assert mp3[:3] == b"ID3"
    size = (mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9]  # syncsafe
    return mp3[10 + size:]


def _without_riff_chunk(riff: bytes, fourcc: bytes) -> bytes:
    out, pos = bytearray(), 12
    while pos + 8 <= len(riff):
        n = int.from_bytes(riff[pos + 4:pos + 8], "little")
        end = pos + 8 + n + (n & 1)
        if riff[pos:pos + 4] != fourcc:
            out += riff[pos:end]
        pos = end
    return b"RIFF" + (len(out) + 4).to_bytes(4, "little") + riff[8:12] + bytes(out)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """One whole file per format that carries no provenance (kind ``unknown`` or
    ``algorithmic``): what a delivery's ordinary plates, stills and stems look like."""
    work = tmp_path_factory.mktemp("plain")
    out = {"jpg": (SAMPLES / "unknown_camera.jpg").read_bytes(),
           "png": (SAMPLES / "algorithmic_procedural.png").read_bytes(),
           "mov": (SAMPLES / "unknown_plate.mov").read_bytes(),
           "wav": (SAMPLES / "unknown_room_tone.wav").read_bytes(),
           "mp3": _without_id3v2((SAMPLES / "ai_music.mp3").read_bytes()),
           "webp": _without_riff_chunk((SAMPLES / "possible_composite.webp").read_bytes(),
                                       b"XMP ")}
    for fmt in ("tif", "heic", "mp4", "pdf"):
        dest = work / f"plain.{fmt}"
        subprocess.run(["exiftool", "-q", "-q", "-all=", "-o", str(dest),
                        str(SAMPLES / AI_SAMPLES[fmt])], check=True)
        out[fmt] = dest.read_bytes()
    return out


def final_dir(tmp_path: Path) -> Path:
    final = tmp_path / "delivery" / "ep101" / "final"
    final.mkdir(parents=True, exist_ok=True)
    return final


def check_final(path: Path) -> tuple[int, list[dict]]:
    """``provgate check PATH --zone final --json``: exit code and the validated records."""
    result = run("check", path, "--zone", "final", "--json")
    records = json.loads(result.stdout)
    for rec in records:
        data.validate(rec, "decision", rec["path"])
    return result.exit_code, records


def test_whole_files_pass_the_final_gate(tmp_path: Path, plain: dict[str, bytes]) -> None:
    final = final_dir(tmp_path)
    for fmt, content in plain.items():
        (final / f"plain.{fmt}").write_bytes(content)
    code, records = check_final(final)
    assert code == 0, records
    for rec in records:
        assert rec["kind"] in ("unknown", "algorithmic"), rec
        assert rec["error"] is None and rec["action"] == "allow", rec


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_cut_copy_is_unreadable_and_held(tmp_path: Path, plain: dict[str, bytes], fmt: str,
                                         cut: str) -> None:
    whole = plain[fmt]
    f = final_dir(tmp_path) / f"plain.{fmt}"
    f.write_bytes(whole[:CUTS[cut](len(whole))])
    code, (rec,) = check_final(f)
    assert code == 1, rec
    assert rec["kind"] == "unreadable" and rec["action"] == "escalate", rec
    assert rec["rule"] == "zones.final.actions.unreadable"
    assert rec["error"].startswith("truncated or corrupt file: "), rec
    assert "truncated" in rec["error"].lower() or "corrupt" in rec["error"].lower()
    assert rec["error"] in rec["reason"]


def test_errors_name_what_was_found(tmp_path: Path, plain: dict[str, bytes]) -> None:
    """ExifTool's warning where it gives one, else what the end of the file showed."""
    final = final_dir(tmp_path)
    for fmt in ("jpg", "png", "wav", "mp3", "mov", "tif", "pdf"):
        (final / f"plain.{fmt}").write_bytes(plain[fmt][:-2])
    code, records = check_final(final)
    errors = {name: rec["error"] for name, rec in by_name(records).items()}
    assert code == 1
    assert "ExifTool warns: Truncated PNG IEND chunk" in errors["plain.png"]
    assert "ExifTool warns: Truncated 'moov' data (missing 2 bytes)" in errors["plain.mov"]
    assert "JPEG truncated: no end-of-image marker (FFD9)" in errors["plain.jpg"]
    assert "RIFF truncated: its header declares 44144 bytes, the file has 44142 (2 missing)" \
        in errors["plain.wav"]
    assert "MP3 truncated: its last MPEG audio frame runs 2 bytes past the end" \
        in errors["plain.mp3"]
    assert "TIFF truncated: its image data (strips of IFD0) ends at byte" in errors["plain.tif"]
    assert "PDF truncated" in errors["plain.pdf"]
    # ExifTool's own words stay in the record's warnings too
    assert "Truncated PNG IEND chunk" in by_name(records)["plain.png"]["warnings"]


def test_corrupt_box_in_the_middle_is_unreadable(tmp_path: Path, plain: dict[str, bytes]) -> None:
    """Bytes flipped over a QuickTime box header: ExifTool warns of a box past the end."""
    mov = bytearray(plain["mov"])
    mid = len(mov) // 2
    mov[mid:mid + 64] = bytes(b ^ 0xFF for b in mov[mid:mid + 64])
    f = final_dir(tmp_path) / "plate.mov"
    f.write_bytes(bytes(mov))
    code, (rec,) = check_final(f)
    assert code == 1 and rec["kind"] == "unreadable"
    assert rec["error"].startswith("truncated or corrupt file: ExifTool warns: Truncated '")


def test_corrupt_segment_and_chunk_lengths(tmp_path: Path, plain: dict[str, bytes]) -> None:
    """A JPEG segment or PNG chunk whose length runs off the file."""
    jpg, png = bytearray(plain["jpg"]), bytearray(plain["png"])
    jpg[4:6] = b"\xff\xf0"  # the first APP segment's length
    at = png.find(b"IDAT") - 4
    png[at:at + 4] = b"\x7f\xff\xff\xff"
    final = final_dir(tmp_path)
    (final / "still.jpg").write_bytes(bytes(jpg))
    (final / "still.png").write_bytes(bytes(png))
    code, records = check_final(final)
    recs = by_name(records)
    assert code == 1
    assert recs["still.jpg"]["error"] == "truncated or corrupt file: ExifTool warns: JPEG format error"
    assert recs["still.png"]["error"] == "truncated or corrupt file: ExifTool warns: Truncated PNG image"
    assert {r["kind"] for r in records} == {"unreadable"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_cut_ai_file_stays_ai_and_held_with_the_error(tmp_path: Path, fmt: str) -> None:
    """An AI signal outranks the damage (block or escalate either way); the error is kept.
    Where the signal sits in the part cut off (the MOV's moov box, the PDF's last update, the
    WebP's XMP chunk) it goes with it: then the file is unreadable, held all the same."""
    sample = SAMPLES / AI_SAMPLES[fmt]
    whole = sample.read_bytes()
    f = final_dir(tmp_path) / sample.name
    f.write_bytes(whole[:len(whole) - 2])
    code, (rec,) = check_final(f)
    assert code == 1
    expected = json.loads((SAMPLES / "EXPECTED.json").read_text())[sample.name]
    assert rec["kind"] == ("unreadable" if fmt in ("mov", "pdf", "webp") else expected)
    assert rec["action"] in ("block", "escalate")
    assert rec["error"].startswith("truncated or corrupt file: "), rec


def test_tiff_strips_read_from_the_file_and_directory_at_the_end(tmp_path: Path) -> None:
    """Many strips (ExifTool prints them as "(Binary data ...)": IFD0 is read, bounded) and a
    directory written after the image data (cut: ExifTool cannot read IFD0 or its values)."""
    from PIL import Image

    final = final_dir(tmp_path)
    with Image.open(SAMPLES / "ai_composite_synthetic.tif") as src:
        im = Image.frombytes(src.mode, src.size, src.tobytes())  # its pixels, no metadata
    im.save(tmp_path / "strips.tif", tiffinfo={278: 1})  # one row per strip
    im.save(tmp_path / "lzw.tif", compression="tiff_lzw")  # Pillow writes IFD0 last
    for name in ("strips.tif", "lzw.tif"):
        whole = (tmp_path / name).read_bytes()
        (final / f"whole_{name}").write_bytes(whole)
        (final / f"cut_{name}").write_bytes(whole[:len(whole) * 9 // 10])
    code, records = check_final(final)
    recs = by_name(records)
    assert code == 1
    assert recs["whole_strips.tif"]["kind"] == recs["whole_lzw.tif"]["kind"] == "unknown"
    assert recs["cut_strips.tif"]["kind"] == recs["cut_lzw.tif"]["kind"] == "unreadable"
    assert "TIFF truncated: its image data (strips of IFD0)" in recs["cut_strips.tif"]["error"]
    assert "ExifTool warns:" in recs["cut_lzw.tif"]["error"]


def test_benign_endings_are_not_damage(tmp_path: Path, plain: dict[str, bytes]) -> None:
    """Padding and trailers after a whole file, and ExifTool's "[minor]" warnings, never make a
    file unreadable."""
    final = final_dir(tmp_path)
    id3v1 = b"TAG" + b"room tone".ljust(30, b"\0") + b"\0" * 95
    variants = {
        "trailer.png": plain["png"] + b"\0\0\0\x07",  # "[minor] Trailer data after PNG IEND"
        "padded.jpg": plain["jpg"] + b"\0" * 4000,  # zero padding after FFD9
        "ffpad.jpg": plain["jpg"] + b"\xff" * 3,
        "samsung.jpg": plain["jpg"] + os.urandom(20000) + b"\0\0SEFT",  # a known trailer
        "unique.webp": plain["webp"] + (1999).to_bytes(4, "big"),  # bench corpora do this
        "padded.wav": plain["wav"] + b"\0",
        "id3v1.mp3": plain["mp3"] + id3v1,
        "padded.mov": plain["mov"] + b"\0" * 16,
        "unique.mov": plain["mov"] + b"7",
        "newline.pdf": plain["pdf"] + b"\r\n",
    }
    for name, content in variants.items():
        (final / name).write_bytes(content)
    code, records = check_final(final)
    recs = by_name(records)
    assert code == 0, {n: r["error"] for n, r in recs.items() if r["error"]}
    assert all(r["error"] is None and r["kind"] != "unreadable" for r in records)
    assert "[minor] Trailer data after PNG IEND chunk" in recs["trailer.png"]["warnings"]


def test_samples_keep_their_kinds_and_carry_no_damage(samples: Path) -> None:
    records = run_json("scan", samples)
    damaged = {Path(r["path"]).name: r["error"] for r in records
               if (r["error"] or "").startswith("truncated or corrupt")}
    assert damaged == {}


def test_the_end_check_reads_a_few_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      plain: dict[str, bytes]) -> None:
    """Large files, whole and cut: at most ``tail_bytes`` from the end plus a 64-byte head."""
    wav = bytearray(plain["wav"]) + os.urandom(3_000_000)  # more samples in its last chunk
    at = wav.rfind(b"data")
    wav[4:8] = (len(wav) - 8).to_bytes(4, "little")
    wav[at + 4:at + 8] = (len(wav) - at - 8).to_bytes(4, "little")
    files = {"big.jpg": plain["jpg"][:-2] + os.urandom(3_000_000).replace(b"\xff", b"\0"),
             "big.mp3": plain["mp3"] * 600, "big.wav": bytes(wav)}
    files["cut.mp3"], files["cut.wav"] = files["big.mp3"][:-100], files["big.wav"][:-100]
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    integrity = Integrity.builtin()
    with ExifToolPool(None, processes=1) as pool:
        metas = pool.probe(paths)
    read: dict[str, int] = {}
    real = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        chunk = real(fd, n, offset)
        read[current] = read.get(current, 0) + len(chunk)
        return chunk

    monkeypatch.setattr(os, "pread", counting)
    found = {}
    for current in paths:
        m = metas[current]
        found[Path(current).name] = integrity.damage(current, m.tags, m.warnings)
    monkeypatch.undo()
    assert max(read.values()) <= integrity.tail_bytes + 64, read
    assert found["big.mp3"] is None and found["big.wav"] is None
    assert found["big.jpg"].startswith("JPEG truncated")
    assert found["cut.mp3"].startswith("MP3 truncated")
    assert found["cut.wav"].startswith("RIFF truncated")


def test_warning_patterns_are_data(tmp_path: Path) -> None:
    """signatures.toml ``[integrity]`` is schema-valid; a catalogue's own section replaces the
    built-in patterns (keys it leaves out stay built-in); a bad pattern is a config error."""
    doc = data.load_toml(data.PACKAGE_DIR / "signatures.toml", "signatures")
    data.validate(doc, "signatures", "signatures.toml")
    png = tmp_path / "cut.png"
    whole = (SAMPLES / "algorithmic_procedural.png").read_bytes()
    png.write_bytes(whole[:len(whole) // 2])
    none = Integrity.from_doc({"integrity": {"warnings": []}})
    assert none.tail_bytes == Integrity.builtin().tail_bytes
    with ExifToolPool(None, processes=1) as pool:
        assert pool.probe([str(png)])[str(png)].damage == \
            "ExifTool warns: Truncated PNG image"
    with ExifToolPool(None, processes=1, integrity=none) as pool:
        meta = pool.probe([str(png)])[str(png)]
    assert meta.damage is None and "Truncated PNG image" in meta.warnings
    with pytest.raises(ConfigError, match="integrity.warnings"):
        Integrity.from_doc({"integrity": {"warnings": ["(unclosed"]}})
    bad = dict(doc, integrity={"tail_bytes": 10})
    with pytest.raises(ConfigError, match="tail_bytes"):
        data.validate(bad, "signatures", "sig.toml")
