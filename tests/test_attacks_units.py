"""Red-team attacks on the units the gate speaks in: image sequences, IMF packages and the
approval of a sequence, as a hostile vendor who controls file names, contents, folder layout
and the package paperwork (real files, real ExifTool, the real CLI and daemon).

Each test performs the attack for real and asserts the SAFE outcome: generated media in a
final zone never passes ``provgate check`` (exit 1), and an approval of a sequence never
clears frames that were not the approved ones. A test that fails names an open door.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import Running, run, wait_for

FILM = Path(__file__).resolve().parent.parent / "sample_media" / "film"
PLATE = FILM / "plate_exr"
AI_FRAME = PLATE / "sh010_plate.1007.exr"              # a ComfyUI graph in its header
OTHER_AI_FRAME = FILM / "comp_exr" / "sh020_comp.1004.exr"  # another generated frame (A1111)
CLEAN_FRAME = PLATE / "sh010_plate.1001.exr"
TAMPERED = FILM / "imf" / "SHOW_EP102_IMF_TAMPERED"    # all track files `unknown`


@pytest.fixture(autouse=True)
def _film() -> None:
    if not FILM.is_dir():
        pytest.skip("sample_media/film is made by `make samples`")


def _final(tmp_path: Path) -> Path:
    final = tmp_path / "delivery" / "ep101" / "final"
    final.mkdir(parents=True)
    return final


def _b64sha1(path: Path) -> str:
    return base64.b64encode(hashlib.sha1(path.read_bytes()).digest()).decode()


def _clean_package(dest: Path) -> Path:
    """An IMF package that passes a final check: the sample whose track file was altered after
    packing, with its PKL hashes made right again (every track file is `unknown`)."""
    shutil.copytree(TAMPERED, dest)
    pkl = next(dest.glob("PKL_*.xml"))
    text = pkl.read_text()
    for name in [p.name for p in dest.glob("*.mxf")]:
        head, sep, rest = text.partition(f"<OriginalFileName>{name}</OriginalFileName>")
        start = head.rindex("<Hash>")
        end = head.index("</Hash>", start)
        text = head[:start] + f"<Hash>{_b64sha1(dest / name)}" + head[end:] + sep + rest
    pkl.write_text(text)
    return dest


def _check(*args: str):
    result = run("check", *args, "--json")
    return result, json.loads(result.stdout or "[]")


def _plate(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in sorted(PLATE.glob("sh010_plate.*.exr")):
        shutil.copy(frame, folder / frame.name)
    return folder


def _approve_plate(folder: Path) -> None:
    given = run("approve", str(folder / "sh010_plate.####.exr"), "--ref", "NFX-7",
                "--by", "Jo Producer")
    assert given.exit_code == 0, given.output
    ok = run("check", str(folder))
    assert ok.exit_code == 0, ok.stderr  # the approved plate passes as it was approved


# -- IMF packages ---------------------------------------------------------------------------

def test_the_clean_package_passes(tmp_path: Path) -> None:
    """The baseline the package attacks start from (not an attack)."""
    final = _final(tmp_path)
    _clean_package(final / "PKG")
    result, records = _check(str(final))
    assert result.exit_code == 0, result.stderr
    assert [r["unit"] for r in records] == ["imf"]


@pytest.mark.parametrize("name", ["checksum.exr", "sh010_plate.1007.md5", "VOLINDEX.xml",
                                  "shot_checksums.xml"])
def test_a_generated_image_named_like_package_paperwork_holds_the_package(
        tmp_path: Path, name: str) -> None:
    """A generated EXR named like package paperwork (``*.md5``, ``checksum.*``,
    ``*_checksums.xml``, a VOLINDEX) in a package: a name is not proof of what a file is, so
    the package is held by its file's own verdict."""
    final = _final(tmp_path)
    pkg = _clean_package(final / "PKG")
    shutil.copy(AI_FRAME, pkg / name)
    result, records = _check(str(final))
    held = [r for r in records if r["action"] in ("escalate", "block")]
    assert result.exit_code == 1, (
        f"a generated EXR named {name} inside an IMF package passed a final check: "
        f"{result.stderr}")
    assert held and held[0]["path"] == str(pkg)


def test_a_shot_folder_turned_into_a_package_does_not_hide_a_generated_frame(
        tmp_path: Path) -> None:
    """A shot folder turned into a "package" by an ASSETMAP listing one empty PKL, with a
    generated frame renamed ``*.md5`` beside a clean scan: still held."""
    shot = _final(tmp_path) / "sh010"
    shot.mkdir()
    for f in sorted((FILM / "scan_dpx").glob("*.dpx"))[:2]:
        shutil.copy(f, shot / f.name)
    shutil.copy(AI_FRAME, shot / "sh010_plate.1007.exr.md5")
    pkl_id = str(uuid.uuid4())
    (shot / "PKL.xml").write_text(
        '<?xml version="1.0"?><PackingList xmlns="http://www.smpte-ra.org/schemas/2067-2/'
        f'2016/PKL"><Id>urn:uuid:{pkl_id}</Id><AssetList/></PackingList>')
    (shot / "ASSETMAP.xml").write_text(
        '<?xml version="1.0"?><AssetMap xmlns="http://www.smpte-ra.org/schemas/429-9/2007/AM">'
        f'<Id>urn:uuid:{uuid.uuid4()}</Id><AssetList><Asset><Id>urn:uuid:{pkl_id}</Id>'
        '<PackingList>true</PackingList><ChunkList><Chunk><Path>PKL.xml</Path></Chunk>'
        '</ChunkList></Asset></AssetList></AssetMap>')
    result, _records = _check(str(shot.parent))
    assert result.exit_code == 1, f"a generated frame named *.md5 passed: {result.stderr}"


def test_package_tricks_that_stay_held(tmp_path: Path) -> None:
    """CLOSED (kept closed): a generated file not in the asset map, one listed under an XML
    name, an asset path out of the package, a PKL entry for a file that is not there, an
    asset map that is a bomb, too large or too deep, a second ASSETMAP that is an image,
    generated media in a nested folder: each fails the check."""
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            '<AssetMap><Id>&b;</Id></AssetMap>')

    def add_asset(pkg: Path, path: str, in_pkl: bool = False) -> None:
        aid = "urn:uuid:11111111-2222-3333-4444-555555555555"
        am = pkg / "ASSETMAP.xml"
        am.write_text(am.read_text().replace(
            "</AssetList>", f"<Asset><Id>{aid}</Id><ChunkList><Chunk><Path>{path}</Path>"
                            "</Chunk></ChunkList></Asset></AssetList>"))
        if in_pkl:
            pkl = next(pkg.glob("PKL_*.xml"))
            pkl.write_text(pkl.read_text().replace(
                "</AssetList>", f"<Asset><Id>{aid}</Id><Hash>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</Hash>"
                                "<Size>5</Size><Type>application/mxf</Type></Asset>"
                                "</AssetList>"))

    cases = {
        "unlisted": lambda pkg: shutil.copy(AI_FRAME, pkg / "extra.exr"),
        "xml name": lambda pkg: (shutil.copy(AI_FRAME, pkg / "CPL_extra.xml"),
                                 add_asset(pkg, "CPL_extra.xml")),
        "out of the folder": lambda pkg: (shutil.copy(AI_FRAME, pkg.parent / "out.exr"),
                                          add_asset(pkg, "../out.exr")),
        "pkl hash, no file": lambda pkg: add_asset(pkg, "ghost.mxf", in_pkl=True),
        "bomb": lambda pkg: ((pkg / "ASSETMAP.xml").write_text(bomb),
                             shutil.copy(AI_FRAME, pkg / "checksum.exr")),
        "huge": lambda pkg: ((pkg / "ASSETMAP.xml").write_text(
            "<AssetMap>" + "<x/>" * 4_500_000 + "</AssetMap>"),
            shutil.copy(AI_FRAME, pkg / "checksum.exr")),
        "deep": lambda pkg: ((pkg / "ASSETMAP.xml").write_text(
            "<AssetMap>" + "<a>" * 1000 + "</AssetMap>"), shutil.copy(AI_FRAME, pkg / "x.exr")),
        "second ASSETMAP": lambda pkg: shutil.copy(AI_FRAME, pkg / "ASSETMAP"),
        "nested folder": lambda pkg: ((pkg / "sub").mkdir(),
                                      shutil.copy(AI_FRAME, pkg / "sub" / "x.exr")),
    }
    for n, (case, attack) in enumerate(cases.items()):
        final = tmp_path / f"c{n}" / "final"
        final.mkdir(parents=True)
        pkg = _clean_package(final / "PKG")
        attack(pkg)
        result, records = _check(str(final))
        assert result.exit_code == 1, f"{case}: passed: {result.stderr}"
        assert any(r["action"] in ("escalate", "block") for r in records), case


# -- approvals of a sequence ------------------------------------------------------------------

def test_an_approved_sequence_with_an_added_frame_fails_with_frames_too(tmp_path: Path) -> None:
    """A generated frame added to an approved plate fails the gate with ``--frames`` as it
    does by default: the approval clears only the frames it was given, with their content."""
    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    shutil.copy(OTHER_AI_FRAME, shot / "sh010_plate.1013.exr")  # a new generated frame
    assert run("check", str(shot)).exit_code == 1  # by default: the approval is void
    frames = run("check", str(shot), "--frames")
    assert frames.exit_code == 1, (
        "an AI frame added to an approved sequence passed with --frames: " + frames.stderr)


def test_an_approved_sequence_split_by_the_from_order_does_not_clear_a_new_frame(
        tmp_path: Path) -> None:
    """A ``--from`` list that puts the added frame between files of another folder: frames
    are grouped per folder over the whole run, and the frame is not one the approval clears."""
    final = _final(tmp_path)
    shot = _plate(final / "sh010")
    other = final / "sc01"
    other.mkdir()
    scan = sorted((FILM / "scan_dpx").glob("*.dpx"))[0]
    shutil.copy(scan, other / scan.name)
    _approve_plate(shot)
    added = shot / "sh010_plate.1013.exr"
    shutil.copy(OTHER_AI_FRAME, added)
    listing = tmp_path / "delivery.txt"
    listing.write_text("\n".join([str(added), str(other / scan.name),
                                  *(str(p) for p in sorted(shot.iterdir()) if p != added)])
                       + "\n")
    assert run("check", str(final)).exit_code == 1  # the folder walked whole: void
    result, records = _check("--from", str(listing))
    assert result.exit_code == 1, (
        "an AI frame added to an approved sequence passed when the --from list split it off "
        "its sequence: " + result.stderr)


@pytest.mark.parametrize("how", ["other frames removed", "other frames repadded"])
def test_a_lone_new_frame_is_not_cleared_by_a_sequence_approval(tmp_path: Path,
                                                                how: str) -> None:
    """A new frame alone in its folder (the other frames deleted, or renamed with a fifth
    digit so that they fold apart): a sequence approval clears only its own frames, with their
    content, never a single file that merely matches its name."""
    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    for frame in sorted(shot.glob("sh010_plate.*.exr")):
        if how == "other frames removed" or frame.name.endswith(".1007.exr"):
            frame.unlink()
        else:
            frame.rename(shot / frame.name.replace("plate.1", "plate.01"))
    shutil.copy(OTHER_AI_FRAME, shot / "sh010_plate.1007.exr")  # new generated content
    result, records = _check(str(shot.parent))
    lone = [r for r in records if r["path"].endswith("sh010_plate.1007.exr")]
    assert result.exit_code == 1, (
        f"{how}: a new generated frame passed on the plate's sequence approval: "
        + result.stderr)
    assert lone and lone[0]["approval"] is None


def test_the_pre_commit_hook_does_not_clear_a_frame_added_to_an_approved_sequence(
        tmp_path: Path) -> None:
    """pre-commit passes only the staged files: a commit that adds one generated frame to an
    approved plate gates that frame alone, and the approval does not clear it."""
    import subprocess
    import sys

    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    added = shot / "sh010_plate.1013.exr"
    shutil.copy(OTHER_AI_FRAME, added)
    hook = Path(sys.executable).with_name("provgate-pre-commit")
    done = subprocess.run([str(hook), "--zone", "final", str(added)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, (
        "the pre-commit hook let a commit add a generated frame to an approved sequence: "
        + done.stderr)


def test_a_cut_using_a_changed_approved_sequence_fails(tmp_path: Path) -> None:
    """``check --timeline`` gates a cut clip by clip: a cut that uses the approved plate with
    a generated frame 1013 appended fails (the frame is not one the approval was given)."""
    otio = pytest.importorskip("opentimelineio")
    ot = otio.opentime
    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    shutil.copy(OTHER_AI_FRAME, shot / "sh010_plate.1013.exr")
    ref = otio.schema.ImageSequenceReference(
        target_url_base=shot.as_uri() + "/", name_prefix="sh010_plate.", name_suffix=".exr",
        start_frame=1001, frame_step=1, rate=24, frame_zero_padding=4,
        available_range=ot.TimeRange(ot.RationalTime(0, 24), ot.RationalTime(13, 24)))
    v1 = otio.schema.Track(name="V1")
    v1.append(otio.schema.Clip(name="sh010", media_reference=ref,
                               source_range=ot.TimeRange(ot.RationalTime(0, 24),
                                                         ot.RationalTime(13, 24))))
    cut = otio.schema.Timeline(name="ep101_lock")
    cut.tracks.append(v1)
    path = tmp_path / "cut" / "ep101_lock.otio"
    path.parent.mkdir()
    otio.adapters.write_to_file(cut, str(path))
    result = run("check", "--timeline", str(path))
    assert result.exit_code == 1, (
        "a cut using the approved plate plus a generated frame passed: " + result.stderr)


def test_a_sequence_approval_can_be_pinned_to_the_reviewed_digest(tmp_path: Path) -> None:
    """A producer reviews the held plate (its record's digest) and approves it later: with
    ``--fingerprint`` the reviewed digest, a plate changed in between is refused and the plate
    as reviewed is accepted."""
    shot = _plate(_final(tmp_path) / "sh010")
    result, records = _check(str(shot))
    (plate,) = records
    reviewed = plate["digest"]
    frame = shot / "sh010_plate.1003.exr"
    saved = frame.read_bytes()
    shutil.copy(OTHER_AI_FRAME, frame)  # swapped while the producer reads the record
    pattern = str(shot / "sh010_plate.####.exr")
    swapped = run("approve", pattern, "--fingerprint", reviewed, "--ref", "NFX-7", "--by", "Jo")
    assert swapped.exit_code == 2
    frame.write_bytes(saved)
    pinned = run("approve", pattern, "--fingerprint", reviewed, "--ref", "NFX-7", "--by", "Jo")
    assert pinned.exit_code == 0, (
        "a sequence approval cannot be bound to the digest the producer reviewed: "
        + pinned.output)


def test_an_approved_sequence_keeps_voiding_on_changes(tmp_path: Path) -> None:
    """CLOSED (kept closed): after approving the plate, a frame replaced by a link to a
    generated frame, a generated frame added with another padding, another extension case or
    in a subfolder: the folder walked whole fails each time."""
    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    frame = shot / "sh010_plate.1003.exr"
    saved = frame.read_bytes()
    shutil.copy(OTHER_AI_FRAME, shot.parent / "elsewhere.exr")
    frame.unlink()
    frame.symlink_to(shot.parent / "elsewhere.exr")
    assert run("check", str(shot)).exit_code == 1, "a frame replaced by a link passed"
    frame.unlink()
    frame.write_bytes(saved)
    assert run("check", str(shot)).exit_code == 0
    for name in ("sh010_plate.01013.exr", "sh010_plate.1013.EXR", "sub/sh010_plate.1013.exr",
                 "sh010_plate.10000.exr", "sh010_plate.0.exr"):
        added = shot / name
        added.parent.mkdir(exist_ok=True)
        shutil.copy(OTHER_AI_FRAME, added)
        assert run("check", str(shot)).exit_code == 1, f"{name} passed"
        added.unlink()


def test_frame_name_tricks_never_hide_a_generated_frame(tmp_path: Path) -> None:
    """CLOSED (kept closed): a generated frame named to fall out of its shot's sequence (other
    padding, case of the extension, unicode digits, ``_`` for ``.``, a signed number, a
    doubled extension, a wider number, a space) is still held."""
    for n, name in enumerate(["sh.1001.EXR", "sh.01002.exr", "sh.\uff11\uff10\uff10\uff13.exr",
                              "sh_1004.exr", "sh.+1005.exr", "sh.-1006.exr", "sh.1008.exr.exr",
                              "sh.10000.exr", "sh.1009 .exr", "sh.0.exr"]):
        shot = tmp_path / f"t{n}" / "final" / "s"
        shot.mkdir(parents=True)
        for i in range(1001, 1009):
            shutil.copy(CLEAN_FRAME, shot / f"sh.{i}.exr")
        (shot / name).unlink(missing_ok=True)
        shutil.copy(AI_FRAME, shot / name)
        assert run("check", str(shot)).exit_code == 1, f"{name} passed"


# -- the daemon ------------------------------------------------------------------------------

def test_the_daemon_does_not_clear_a_frame_added_to_an_approved_sequence(
        tmp_path: Path) -> None:
    """The daemon decides frame by frame: a new generated frame added to an approved plate is
    not cleared by the plate's approval, so enforce mode does not leave it in final."""
    shot = _plate(_final(tmp_path) / "sh010")
    _approve_plate(shot)
    with Running([tmp_path / "delivery"], settle=0.3, mode="enforce") as w:
        added = shot / "sh010_plate.1013.exr"
        shutil.copy(OTHER_AI_FRAME, added)
        found = wait_for(lambda: [d for d in w.decisions() if d["path"] == str(added)], 30)
    decision = found[-1]
    assert decision["action"] != "allow", (
        "the daemon allowed a new generated frame on the approval of the sequence it was "
        f"added to: {decision.get('reason')}")


def test_a_frame_rewritten_forever_does_not_keep_its_shot_undecided(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vendor who rewrites one frame for ever cannot keep the whole shot (its generated
    frame 1007 included) undecided: a sequence waits for its frames, and a file that keeps
    changing waits, no longer than OPEN_CAP_SECONDS (made short here) from its first event."""
    from provgate.watch import settle

    monkeypatch.setattr(settle, "OPEN_CAP_SECONDS", 3)
    shot = _final(tmp_path) / "sh010"
    shot.mkdir()
    stop = threading.Event()

    def rewrite(frame: Path) -> None:
        data = CLEAN_FRAME.read_bytes()
        while not stop.is_set():
            frame.write_bytes(data)
            time.sleep(0.1)

    with Running([tmp_path / "delivery"], settle=0.5) as w:
        _plate(shot)
        busy = threading.Thread(target=rewrite, args=(shot / "sh010_plate.1013.exr",),
                                daemon=True)
        busy.start()
        try:
            ai = str(shot / "sh010_plate.1007.exr")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    d["path"] == ai for d in w.decisions()):
                time.sleep(0.2)
            decided = any(d["path"] == ai for d in w.decisions())
        finally:
            stop.set()
            busy.join()
    assert decided, ("the generated frame 1007 was still undecided after 20 s while another "
                     "frame of its sequence kept being rewritten")
