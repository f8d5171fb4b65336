"""Red team of the fail-closed gate (issue 10, commit ff7d21c): each door found open is walked
the way it was found, as a new user or a hostile vendor would (names, nesting, contents,
symlinks, timing), and marked ``xfail(strict=True)`` until it is closed; a few closed doors the
other suites do not walk are pinned as passing tests.

A pass (exit 0 of ``provgate check`` or ``hooks/pre-delivery``) must mean "every file of this
delivery was judged and none needs approval". Real ExifTool, real files, no mocks.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, run, run_json

AI = "ai_iptc_generated.jpg"
CLEAN = "unknown_camera.jpg"
HOOK = ROOT / "hooks" / "pre-delivery"
PROVGATE = Path(sys.executable).parent / "provgate"


def _final(tmp_path: Path, *names: str) -> Path:
    final = tmp_path / "EP101" / "final"
    final.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(SAMPLES / name, final / name)
    return final


def _hook(*args: object, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PROVGATE": str(PROVGATE)}
    full.pop("PROVGATE_ZONE", None)
    full.update(env)
    return subprocess.run(["sh", str(HOOK), *map(str, args)], env=full, input=stdin,
                          capture_output=True, text=True, timeout=300)


def _provgate(*args: object, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROVGATE), *map(str, args)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def _decisions(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    with sqlite3.connect(ledger) as db:
        return [r[0] for r in db.execute("SELECT path FROM decisions")]


# == open doors ===================================================================================

# -- archives ExifTool types as something else are never opened ---------------------------------
# pipeline/stages: an archive is expanded only when ExifTool's FileType is ZIP/TAR/GZIP/...; a
# zip whose first member is `mimetype` is ODT/EPUB to ExifTool, an OOXML/iWork/IDML package is
# DOCX/PPTX/PAGES/IDML, and a tar whose first member name starts with GIF magic is a GIF. Their
# members are never judged: `unknown`, allowed in final.

def _zip(path: Path, members: list[tuple[str, bytes | None]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            if data is None:
                zf.write(SAMPLES / AI, name)
            else:
                zf.writestr(name, data, compress_type=zipfile.ZIP_STORED
                            if name == "mimetype" else zipfile.ZIP_DEFLATED)


_CT = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
       'package/2006/content-types"><Default Extension="jpeg" ContentType="image/jpeg"/>'
       '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
       'officedocument.wordprocessingml.document.main+xml"/></Types>')


def _gif_tar(path: Path) -> None:
    data = (SAMPLES / AI).read_bytes()
    info = tarfile.TarInfo("GIF89a\x01\x01\x01\x01\x01\x01\x01;")  # a whole GIF header + trailer
    info.size = len(data)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(data))


CONTAINERS: dict[str, Callable[[Path], None]] = {
    "stills.zip (mimetype: ODT)": lambda p: _zip(p.with_name("stills.zip"), [
        ("mimetype", b"application/vnd.oasis.opendocument.text"), ("key_art.jpg", None)]),
    "stills.zip (mimetype: EPUB)": lambda p: _zip(p.with_name("stills.zip"), [
        ("mimetype", b"application/epub+zip"), ("key_art.jpg", None)]),
    "frames.tar (GIF magic in the first name)": lambda p: _gif_tar(p.with_name("frames.tar")),
    "storyboard.docx": lambda p: _zip(p.with_name("storyboard.docx"), [
        ("[Content_Types].xml", _CT.encode()), ("word/document.xml", b"<w:document/>"),
        ("word/media/image1.jpeg", None)]),
    "deck.pptx": lambda p: _zip(p.with_name("deck.pptx"), [
        ("[Content_Types].xml", _CT.replace("word/document.xml", "ppt/presentation.xml").replace(
            "wordprocessingml.document.main", "presentationml.presentation.main").encode()),
        ("ppt/presentation.xml", b"<p/>"), ("ppt/media/image1.jpeg", None)]),
    "board.pages": lambda p: _zip(p.with_name("board.pages"), [
        ("Index/Document.iwa", b"\0" * 10), ("Data/image1.jpg", None)]),
    "layout.idml": lambda p: _zip(p.with_name("layout.idml"), [
        ("mimetype", b"application/vnd.adobe.indesign-idml-package"), ("Links/key.jpg", None)]),
}


@pytest.mark.parametrize("container", CONTAINERS)
def test_archive_typed_as_a_document_or_image_by_exiftool(tmp_path: Path, container: str) -> None:
    final = _final(tmp_path)
    CONTAINERS[container](final / "x")
    result = run("check", final)
    assert result.exit_code == 1, result.stderr
    assert "HELD" in result.stderr


# -- provenance written after the media data ----------------------------------------------------
# With -fast ExifTool stops a RIFF file at its `data` chunk (RIFF.pm: "Adobe Bridge stores XMP
# after this!!") and a GIF after its first comment (GIF.pm); such files are read again without
# it, so the provenance of ordinary files laid out this way is seen.

_XMP_AI = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:'
           'ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/'
           '2008-02-29/" Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/'
           'digitalsourcetype/trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
           '<?xpacket end="w"?>').encode()
_TRANSPARENT_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01"
                    b"\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    import struct

    out, pos = [], 12
    while pos + 8 <= len(data):
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        out.append((data[pos:pos + 4], data[pos:pos + 8 + size + (size & 1)]))
        pos += 8 + size + (size & 1)
    return out


def _riff(chunks: list[bytes]) -> bytes:
    import struct

    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _wav_list_after_data(dest: Path) -> None:
    """The ElevenLabs sample (RIFF INFO ISFT names the generator) with its LIST chunk after
    the audio, where many writers put it; a valid WAV (Python's wave module reads it)."""
    import wave

    chunks = _riff_chunks((SAMPLES / "ai_voice.wav").read_bytes())
    dest.write_bytes(_riff([c for i, c in chunks if i != b"LIST"]
                           + [c for i, c in chunks if i == b"LIST"]))
    with wave.open(str(dest)) as w:
        assert w.getnframes() > 0


def _wav_xmp_after_data(dest: Path) -> None:
    """A WAV with IPTC trainedAlgorithmicMedia in an XMP `_PMX` chunk after the audio, as
    Adobe Audition/Bridge write it (ExifTool without -fast reads it)."""
    import struct

    xmp = _XMP_AI + (b" " if len(_XMP_AI) & 1 else b"")
    chunks = [c for _, c in _riff_chunks((SAMPLES / "unknown_room_tone.wav").read_bytes())]
    dest.write_bytes(_riff([*chunks, b"_PMX" + struct.pack("<I", len(xmp)) + xmp]))


def _gif_comment_then_xmp(dest: Path) -> None:
    """A GIF that ExifTool itself tags: a comment and IPTC trainedAlgorithmicMedia in XMP."""
    from provgate.probe import find_exiftool

    src = dest.with_name("src.gif")
    src.write_bytes(_TRANSPARENT_GIF)
    subprocess.run([find_exiftool(), "-q", "-Comment=storyboard frame",
                    "-XMP-iptcExt:DigitalSourceType=http://cv.iptc.org/newscodes/"
                    "digitalsourcetype/trainedAlgorithmicMedia", "-o", str(dest), str(src)],
                   check=True)
    src.unlink()


AFTER_DATA: dict[str, tuple[str, Callable[[Path], None]]] = {
    "wav-info-after-data": ("voice.wav", _wav_list_after_data),
    "wav-xmp-after-data": ("tone.wav", _wav_xmp_after_data),
    "gif-comment-then-xmp": ("frame.gif", _gif_comment_then_xmp),
}


@pytest.mark.parametrize("case", AFTER_DATA)
def test_provenance_after_the_media_data_is_read(tmp_path: Path, case: str) -> None:
    from provgate.probe import find_exiftool

    name, make = AFTER_DATA[case]
    final = _final(tmp_path)
    make(final / name)
    full = subprocess.run([find_exiftool(), "-G1", "-a", str(final / name)],
                          capture_output=True, text=True).stdout
    assert "ElevenLabs" in full or "trainedAlgorithmicMedia" in full  # ExifTool can see it
    result = run("check", final)
    assert result.exit_code == 1, result.stderr
    assert "HELD block" in result.stderr


# -- polyglots: a clean image with a zip of generated images appended ---------------------------

def _polyglot(host: str, dest: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(SAMPLES / AI, "key_art.jpg")
        zf.comment = b"\xff\xd9"  # a JPEG end marker last: the end-of-file check is satisfied
    dest.write_bytes((SAMPLES / host).read_bytes() + buf.getvalue())
    assert zipfile.ZipFile(dest).namelist() == ["key_art.jpg"]  # unzip opens it too


@pytest.mark.parametrize("host", [CLEAN, "algorithmic_procedural.png", "unknown_room_tone.wav"])
def test_polyglot_media_with_an_appended_zip(tmp_path: Path, host: str) -> None:
    final = _final(tmp_path)
    _polyglot(host, final / f"plate{Path(host).suffix}")
    result = run("check", final)
    assert result.exit_code == 1, result.stderr


def test_zip_with_a_local_entry_the_central_directory_hides(tmp_path: Path) -> None:
    final = _final(tmp_path)
    hidden = io.BytesIO()
    with zipfile.ZipFile(hidden, "w") as zf:
        zf.write(SAMPLES / AI, "key_art.jpg")
    raw = hidden.getvalue()
    f = io.BytesIO()
    f.write(raw[:raw.rfind(b"PK\x01\x02")])  # the AI member's local header and data only
    with zipfile.ZipFile(f, "a") as zf:       # then a whole zip of the clean plate after it
        zf.write(SAMPLES / CLEAN, "plate.jpg")
    (final / "stills.zip").write_bytes(f.getvalue())
    assert zipfile.ZipFile(final / "stills.zip").namelist() == ["plate.jpg"]
    result = run("check", final)
    assert result.exit_code == 1, result.stderr


# -- a zip entry with an empty name crashes check (and loops the daemon) ------------------------

def test_zip_entry_with_an_empty_name_does_not_crash(tmp_path: Path) -> None:
    final = _final(tmp_path)
    with zipfile.ZipFile(final / "stills.zip", "w") as zf:
        zf.write(SAMPLES / AI, "key_art.jpg")
        zf.writestr(zipfile.ZipInfo(""), b"x")
    result = _provgate("check", final)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 1 and "HELD" in result.stderr


# -- --from lists: names with a line break, NUL, bytes that are not UTF-8 -----------------------

@pytest.mark.parametrize("brk", ["\n", "\r"], ids=["LF", "CR"])
@pytest.mark.parametrize("via", ["check", "hook"])
def test_from_list_with_a_line_break_in_a_file_name(tmp_path: Path, brk: str, via: str) -> None:
    final = _final(tmp_path)
    shutil.copy2(SAMPLES / CLEAN, final / "plate.jpg")
    shutil.copy2(SAMPLES / AI, final / f"plate.jpg{brk}")
    listing = "".join(f"{p}\n" for p in sorted(map(str, final.iterdir())))  # find -type f
    if via == "check":
        code = run("check", "--from", "-", input=listing).exit_code
    else:
        code = _hook("--from", "-", stdin=listing).returncode
    assert code != 0


def test_from_list_separated_by_nul_is_a_usage_error(tmp_path: Path, ledger_path: Path) -> None:
    final = _final(tmp_path, AI, CLEAN)
    listing = "".join(f"{p}\0" for p in sorted(final.iterdir()))
    result = run("check", "--from", "-", input=listing)
    assert result.exit_code == 2, result.stderr
    assert _decisions(ledger_path) == []


def test_from_list_with_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    final = _final(tmp_path, CLEAN)
    odd = os.path.join(os.fsencode(final), b"key\xff.jpg")
    shutil.copy2(SAMPLES / AI, odd)
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(final / CLEAN) + b"\n" + odd + b"\n")
    result = _provgate("check", "--from", listing)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 1 and "HELD block" in result.stderr


# -- zones: symlinks, roots, empty --zone, lookalike names, relative globs -----------------------

@pytest.mark.parametrize("target", ["folder", "file in linked folder", "file link"])
def test_zone_through_a_symlink_to_a_final_folder(tmp_path: Path, target: str) -> None:
    real = tmp_path / "storage" / "EP101" / "final"
    real.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, real / AI)
    out = tmp_path / "outgoing"
    out.mkdir()
    (out / "EP101").symlink_to(real, target_is_directory=True)
    (out / "key.jpg").symlink_to(real / AI)
    given = {"folder": out / "EP101", "file in linked folder": out / "EP101" / AI,
             "file link": out / "key.jpg"}[target]
    result = run("check", given)
    assert result.exit_code == 1, result.stderr


def test_tag_through_a_symlink_into_final_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "storage" / "EP101" / "final"
    real.mkdir(parents=True)
    shutil.copy2(SAMPLES / CLEAN, real / "plate.jpg")
    before = (real / "plate.jpg").read_bytes()
    (tmp_path / "outgoing").mkdir()
    (tmp_path / "outgoing" / "EP101").symlink_to(real, target_is_directory=True)
    result = run("tag", tmp_path / "outgoing" / "EP101" / "plate.jpg",
                 "--source-type", "trainedAlgorithmicMedia")
    assert (real / "plate.jpg").read_bytes() == before
    assert result.exit_code == 2, result.output


def test_roots_set_to_the_final_folder_itself(tmp_path: Path) -> None:
    final = _final(tmp_path)
    (final / "vfx").mkdir()
    shutil.copy2(SAMPLES / AI, final / "vfx" / AI)
    policy = tmp_path / "policy.toml"
    text = (ROOT / "plugin" / "provgate" / "default_policy.toml").read_text()
    policy.write_text(text.replace('# roots = ["/srv/delivery"]', f'roots = ["{final}"]'))
    result = run("check", final, "--policy", policy)
    assert result.exit_code == 1, result.stderr


@pytest.mark.parametrize("via", ["hook", "check"])
def test_an_empty_zone_is_not_silently_no_zone(tmp_path: Path, via: str) -> None:
    out = tmp_path / "outgoing"
    out.mkdir()
    shutil.copy2(SAMPLES / AI, out / AI)
    code = (_hook("--zone=", out).returncode if via == "hook"
            else run("check", "--zone", "", out).exit_code)
    assert code != 0


@pytest.mark.parametrize("name", ["final ", "final.", "ＦＩＮＡＬ", "final\u200b"],
                         ids=["trailing-space", "trailing-dot", "fullwidth", "zero-width"])
def test_lookalike_final_folder_names(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "EP101" / name
    folder.mkdir(parents=True)
    shutil.copy2(SAMPLES / AI, folder / AI)
    result = run("check", tmp_path / "EP101")
    assert result.exit_code == 1, result.stderr


def test_a_zone_glob_that_can_never_match_is_said(tmp_path: Path) -> None:
    final = _final(tmp_path, AI)
    policy = tmp_path / "policy.toml"
    text = (ROOT / "plugin" / "provgate" / "default_policy.toml").read_text()
    policy.write_text(text.replace(
        'paths = ["**/final/**", "**/finals/**", "**/deliverables/**", "**/masters/**"]',
        'paths = ["final/**"]'))
    result = run("check", final, "--policy", policy)
    assert result.exit_code == 1 or "final/**" in result.stderr, result.stderr


# -- the quarantine inside a delivery ships what it holds --------------------------------------

def test_quarantine_inside_the_delivery_is_not_a_pass(tmp_path: Path) -> None:
    ep = _final(tmp_path, AI, CLEAN).parent
    quarantine = ep / ".quarantine"
    # a quarantine inside the tree being gated is refused: what it held would ship
    refused = run("check", ep, "--mode", "enforce", "--quarantine", quarantine)
    assert refused.exit_code == 2 and "lies inside" in refused.stderr, refused.stderr
    assert (ep / "final" / AI).exists() and not quarantine.exists()
    # a vendor planting files at the quarantine's path: they are walked, and held
    (quarantine / "final").mkdir(parents=True)
    shutil.move(str(ep / "final" / AI), quarantine / "final" / AI)
    result = run("check", ep, "--quarantine", quarantine)
    assert result.exit_code != 0, result.stderr


# -- deep nesting: a crash, and exit 1 that is not a gate verdict -------------------------------

def test_deeply_nested_delivery_does_not_crash(tmp_path: Path) -> None:
    final = _final(tmp_path, CLEAN)
    deep = str(final)
    for _ in range(1200):
        deep = os.path.join(deep, "a")
        os.mkdir(deep)
    shutil.copy2(SAMPLES / AI, os.path.join(deep, AI))
    try:
        result = _provgate("check", final)
        assert "Traceback" not in result.stderr, result.stderr[-400:]
        assert result.returncode == 1 and "HELD block" in result.stderr
    finally:
        # pytest's own clean-up of tmp_path recurses too: undo the nesting from the bottom
        os.remove(os.path.join(deep, AI))
        while deep != str(final):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


# -- timing: a file that arrives while the check runs -------------------------------------------

_SLOW_CONFIG = """
%Image::ExifTool::UserDefined = (
    'Image::ExifTool::Composite' => {
        SlowForTest => { Require => 'FileName', ValueConv =>
            'if ($val =~ /slow/) { open(my $fh, ">", $ENV{SLOW_MARKER}); close($fh); sleep(4); } $val' },
    },
);
1;
"""


def test_a_file_arriving_during_the_check_is_not_a_pass(tmp_path: Path) -> None:
    final = _final(tmp_path)
    shutil.copy2(SAMPLES / CLEAN, final / "slow_plate.jpg")
    config, marker = tmp_path / "slow.config", tmp_path / "reading"
    config.write_text(_SLOW_CONFIG)
    env = {**os.environ, "PROVGATE_EXIFTOOL_CONFIG": str(config), "SLOW_MARKER": str(marker)}
    proc = subprocess.Popen([str(PROVGATE), "check", str(final)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import time

        deadline = time.monotonic() + 120
        while not marker.exists():  # ExifTool is reading slow_plate.jpg: the walk is over
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        shutil.copy2(SAMPLES / AI, final / "late.part")
        os.rename(final / "late.part", final / "key_art.jpg")  # the transfer tool's rename
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, err


# == closed doors the other suites do not walk ===================================================

@pytest.mark.parametrize("option", [["--exclude", "*.jpg"], ["--include", "*.png"],
                                    ["--exclude", "**/final/**"]])
def test_hook_include_exclude_cannot_leave_a_final_file_out(tmp_path: Path,
                                                            option: list[str]) -> None:
    final = _final(tmp_path, AI)
    result = _hook(*option, final.parent)
    assert result.returncode == 1, result.stderr
    assert "HELD escalate" in result.stderr and "not judged" in result.stderr


@pytest.mark.parametrize("zone", ["FINAL", "final ", "fіnal"])  # the last i is Cyrillic
def test_zone_option_misspellings_are_usage_errors(tmp_path: Path, zone: str) -> None:
    final = _final(tmp_path, AI)
    assert run("check", final, "--zone", zone).exit_code == 2
    assert _hook("--zone", zone, final).returncode == 2


def test_from_list_with_crlf_line_ends_is_judged(tmp_path: Path) -> None:
    final = _final(tmp_path, AI, CLEAN)
    listing = "".join(f"{p}\r\n" for p in sorted(final.iterdir()))  # a Windows transfer list
    result = run("check", "--from", "-", input=listing)
    assert result.exit_code == 1, result.stderr
    assert "HELD block" in result.stderr


def test_archive_tricks_that_are_held(tmp_path: Path) -> None:
    import py7zr

    final = _final(tmp_path)
    with py7zr.SevenZipFile(final / "enc.7z", "w", password="x",
                            header_encryption=True) as sz:  # encrypted file list
        sz.write(SAMPLES / AI, "key.jpg")
    with zipfile.ZipFile(final / "sidecar_named.zip", "w") as zf:  # AI JPEG named like XMP
        zf.write(SAMPLES / CLEAN, "plate.jpg")
        zf.write(SAMPLES / AI, "plate.jpg.xmp")
    with zipfile.ZipFile(final / "hidden_member.zip", "w") as zf:
        zf.write(SAMPLES / CLEAN, "plate.jpg")
        zf.write(SAMPLES / AI, ".plate.jpg")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.write(SAMPLES / AI, "key.jpg")
    with tarfile.open(final / "nested.tar", "w") as tf:  # a DOCX-like zip inside a tar
        info = tarfile.TarInfo("docs/storyboard.docx")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    by = {Path(r["path"]).name: r for r in run_json("check", final)}
    assert by["enc.7z"]["action"] == "escalate" and "encrypted" in by["enc.7z"]["error"]
    for name in ("sidecar_named.zip", "hidden_member.zip", "nested.tar"):
        assert by[name]["kind"] == "ai_generated" and by[name]["action"] == "block", by[name]


@pytest.mark.parametrize("inside,twin", [(False, False), (True, False), (False, True)])
def test_a_file_swapped_for_a_link_after_the_walk_keeps_nothing_of_its_read(
        tmp_path: Path, inside: bool, twin: bool) -> None:
    """Between the walk and the read a neighbour swaps a file for a link (to a file outside
    the delivery, or to another file inside it; ``twin``: one of the same size and times, so
    that only its inode tells): what was read is not that file's, so the record keeps no
    fingerprint and no evidence, and the file is held as unreadable."""
    from provgate.assets import stat_asset
    from provgate.session import Options, Session

    tree = tmp_path / "delivery"
    tree.mkdir()
    target = tree / "plate.jpg"
    shutil.copy(SAMPLES / "human_capture.jpg", target)
    other = (tree if inside else tmp_path) / "elsewhere.jpg"
    shutil.copy(SAMPLES / ("human_capture.jpg" if twin else "ai_iptc_generated.jpg"), other)
    if twin:
        st = target.stat()
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    asset = stat_asset(str(target), str(tree))
    assert asset.link is False and asset.error is None
    target.unlink()
    target.symlink_to(other)
    with Session(Options(ledger=str(tmp_path / "ledger.db"), zone="final")) as s:
        [rec] = s.process([asset])
    assert rec.asset.fingerprint is None and not rec.verdict.evidence
    assert rec.kind == "unreadable" and "changed while being read" in (rec.verdict.error or "")
    assert rec.held
