"""`check --timeline`: real OpenTimelineIO cuts (and a real EDL) around the sample media."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


from conftest import SAMPLES, run
from provgate import data

import opentimelineio as otio  # noqa: E402
ot = otio.opentime


def _clip(name: str, url: str, start: int = 0, frames: int = 48) -> object:
    return otio.schema.Clip(name=name, media_reference=otio.schema.ExternalReference(
        target_url=url), source_range=ot.TimeRange(ot.RationalTime(start, 24),
                                                  ot.RationalTime(frames, 24)))


def _write(tmp_path: Path, tracks: list[object], name: str = "ep101_lock") -> Path:
    tl = otio.schema.Timeline(name=name, global_start_time=ot.RationalTime(86400, 24))
    for t in tracks:
        tl.tracks.append(t)
    out = tmp_path / "cut" / f"{name}.otio"
    out.parent.mkdir(exist_ok=True)
    otio.adapters.write_to_file(tl, str(out))
    return out


def _check_json(*args: object) -> tuple[int, list[dict]]:
    result = run("check", *args, "--json")
    records = json.loads(result.stdout)
    for rec in records:
        data.validate(rec, "decision", rec["path"])
    return result.exit_code, records


def _media(tmp_path: Path, *names: str) -> Path:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    for n in names:
        shutil.copy2(SAMPLES / n, media / n)
    return media


def test_failing_clips_name_track_and_timecodes(tmp_path: Path) -> None:
    media = _media(tmp_path, "human_capture.jpg", "ai_iptc_generated.jpg", "ai_voice.wav")
    v1 = otio.schema.Track(name="V1")
    v1.append(_clip("sh010", (media / "human_capture.jpg").as_uri()))
    v1.append(otio.schema.Gap(source_range=ot.TimeRange(duration=ot.RationalTime(24, 24))))
    v1.append(_clip("sh020", (media / "ai_iptc_generated.jpg").as_uri(), start=12))
    v1.append(otio.schema.Clip(name="bars", media_reference=otio.schema.GeneratorReference(
        generator_kind="SMPTEBars"), source_range=ot.TimeRange(duration=ot.RationalTime(24, 24))))
    a1 = otio.schema.Track(kind=otio.schema.TrackKind.Audio)
    a1.append(_clip("vo_take3", str(media / "ai_voice.wav")))
    cut = _write(tmp_path, [v1, a1])

    code, records = _check_json("--timeline", cut)
    assert code == 1
    by = {Path(r["path"]).name: r for r in records}
    assert set(by) == {"human_capture.jpg", "ai_iptc_generated.jpg", "ai_voice.wav"}
    assert all(r["zone"] == "final" for r in records)  # a cut's media goes into the deliverable
    assert by["human_capture.jpg"]["action"] == "allow"
    ai = by["ai_iptc_generated.jpg"]
    assert ai["action"] == "block"
    assert ai["clips"] == [{"track": "V1", "name": "sh020", "source_in": "00:00:00:12",
                            "source_out": "00:00:02:12", "record_in": "01:00:03:00",
                            "record_out": "01:00:05:00",
                            "media": (media / "ai_iptc_generated.jpg").as_uri(),
                            "error": None, "missing": []}]
    assert by["ai_voice.wav"]["clips"][0]["track"] == "A1"  # unnamed tracks get V1/A1 labels

    human = run("check", "--timeline", cut)
    assert "used by V1 'sh020': source 00:00:00:12-00:00:02:12, record 01:00:03:00-01:00:05:00" \
        in human.stderr
    assert "gate FAILED" in human.stderr


def test_missing_and_offline_media_fail_the_cut(tmp_path: Path) -> None:
    media = _media(tmp_path, "human_capture.jpg")
    v1 = otio.schema.Track(name="V1")
    v1.append(_clip("sh010", (media / "human_capture.jpg").as_uri()))
    v1.append(_clip("sh030", "file:///Volumes/Show/never_rendered.mov"))
    v1.append(otio.schema.Clip(name="offline", media_reference=otio.schema.MissingReference(),
                               source_range=ot.TimeRange(duration=ot.RationalTime(10, 24))))
    v1.append(_clip("stock", "https://example.com/stock.mov"))
    code, records = _check_json("--timeline", _write(tmp_path, [v1]))
    assert code == 1
    errors = {r["clips"][0]["name"]: r for r in records if r["rule"] == "timeline.missing_media"}
    assert set(errors) == {"sh030", "offline", "stock"}
    assert errors["sh030"]["error"] == "media missing: /Volumes/Show/never_rendered.mov"
    assert errors["sh030"]["action"] == "block" and errors["sh030"]["kind"] == "unreadable"
    assert "V1 'sh030' at 01:00:02:00" in errors["sh030"]["reason"]
    assert errors["offline"]["error"].startswith("media offline")
    assert errors["stock"]["error"] == "media is not a local file: https://example.com/stock.mov"


def test_clean_cut_passes_and_media_root_remaps(tmp_path: Path) -> None:
    media = _media(tmp_path, "human_capture.jpg", "unknown_plate.mov")
    v1 = otio.schema.Track(name="V1")
    v1.append(_clip("sh010", "file:///Volumes/EditorShare/show/human_capture.jpg"))
    v1.append(_clip("plate", "unknown_plate.mov"))  # relative: resolved against --media-root
    cut = _write(tmp_path, [v1])
    assert run("check", "--timeline", cut).exit_code == 1  # not remapped: missing media
    code, records = _check_json("--timeline", cut, "--media-root",
                                f"/Volumes/EditorShare/show={media}", "--media-root", media)
    assert code == 0
    assert sorted(Path(r["path"]).name for r in records) == ["human_capture.jpg",
                                                              "unknown_plate.mov"]


def test_image_sequence_gates_the_frames_the_cut_uses(tmp_path: Path) -> None:
    seq = tmp_path / "renders"
    seq.mkdir()
    for frame in range(1001, 1006):
        src = "ai_a1111_txt2img.png" if frame == 1003 else "algorithmic_procedural.png"
        shutil.copy2(SAMPLES / src, seq / f"sh040.{frame}.png")
    ref = otio.schema.ImageSequenceReference(
        target_url_base=seq.as_uri() + "/", name_prefix="sh040.", name_suffix=".png",
        start_frame=1001, frame_step=1, rate=24, frame_zero_padding=4,
        available_range=ot.TimeRange(ot.RationalTime(0, 24), ot.RationalTime(8, 24)))
    v1 = otio.schema.Track(name="V1")
    v1.append(otio.schema.Clip(name="sh040", media_reference=ref,
                               source_range=ot.TimeRange(ot.RationalTime(1, 24),
                                                         ot.RationalTime(6, 24))))
    code, records = _check_json("--timeline", _write(tmp_path, [v1]))
    assert code == 1
    gated = sorted(Path(r["path"]).name for r in records if r["rule"] != "timeline.missing_media")
    assert gated == [f"sh040.{f}.png" for f in range(1002, 1006)]  # 1001 is not in the cut
    ai = next(r for r in records if r["path"].endswith("sh040.1003.png"))
    assert ai["kind"] == "ai_generated" and ai["clips"][0]["name"] == "sh040"
    missing = [r for r in records if r["rule"] == "timeline.missing_media"]
    assert len(missing) == 1 and missing[0]["error"].startswith("media missing: 2 of 6 frames")
    assert missing[0]["clips"][0]["missing"][0].endswith("sh040.1006.png")


def test_edl_through_the_cmx3600_adapter(tmp_path: Path) -> None:
    import otio_cmx3600_adapter  # noqa: F401
    media = _media(tmp_path, "unknown_camera.jpg", "ai_genfill_composite.jpg")
    edl = tmp_path / "reel1.edl"
    edl.write_text(
        "TITLE: REEL1\nFCM: NON-DROP FRAME\n\n"
        "001  AX       V     C        01:00:00:00 01:00:02:00 00:00:00:00 00:00:02:00\n"
        f"* FROM CLIP NAME:  camera_a\n* FROM CLIP: {media / 'unknown_camera.jpg'}\n\n"
        "002  AX       V     C        01:00:10:00 01:00:11:00 00:00:02:00 00:00:03:00\n"
        f"* FROM CLIP NAME:  genfill\n* FROM CLIP: {media / 'ai_genfill_composite.jpg'}\n")
    code, records = _check_json("--timeline", edl)
    assert code == 1
    comp = next(r for r in records if r["path"].endswith("ai_genfill_composite.jpg"))
    assert comp["action"] == "escalate"
    assert comp["clips"][0]["source_in"] == "01:00:10:00"
    assert comp["clips"][0]["record_in"] == "00:00:02:00"


def test_unreadable_timelines_are_usage_errors(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.otio"
    damaged.write_text('{"OTIO_SCHEMA": "Timeline.1", "tracks": ')
    result = run("check", "--timeline", damaged)
    assert result.exit_code == 2 and "cannot read the timeline" in result.stderr
    odd = tmp_path / "cut.xyz"
    odd.write_text("nothing")
    result = run("check", "--timeline", odd)
    assert result.exit_code == 2 and "no OpenTimelineIO adapter" in result.stderr
    result = run("check", "--timeline", tmp_path / "absent.otio")
    assert result.exit_code == 2 and "timeline not found" in result.stderr
    bad_root = run("check", "--timeline", damaged, "--media-root", "=/x")
    assert bad_root.exit_code == 2 and "OLD=NEW" in bad_root.stderr


def test_fcp_xml_through_its_adapter(tmp_path: Path) -> None:
    import otio_fcp_adapter  # noqa: F401
    media = _media(tmp_path, "human_capture.jpg", "ai_runway_clip.mp4")
    v1 = otio.schema.Track(name="V1")
    v1.append(_clip("sh010", (media / "human_capture.jpg").as_uri()))
    v1.append(_clip("runway", (media / "ai_runway_clip.mp4").as_uri(), start=24))
    for clip in v1:  # FCP XML stores each file's own duration
        clip.media_reference.available_range = ot.TimeRange(ot.RationalTime(0, 24),
                                                             ot.RationalTime(240, 24))
    tl = otio.schema.Timeline(name="fcp_cut", tracks=[v1])
    xml = tmp_path / "fcp_cut.xml"
    otio.adapters.write_to_file(tl, str(xml), adapter_name="fcp_xml")  # as Premiere exports
    code, records = _check_json("--timeline", xml)
    assert code == 1
    runway = next(r for r in records if r["path"].endswith("ai_runway_clip.mp4"))
    assert runway["kind"] == "ai_generated" and runway["clips"][0]["name"] == "runway"
    assert runway["clips"][0]["source_in"] == "00:00:01:00"


def test_media_given_beside_the_cut_is_gated_once(tmp_path: Path) -> None:
    media = _media(tmp_path, "human_capture.jpg", "ai_iptc_generated.jpg")
    v1 = otio.schema.Track(name="V1")
    v1.append(_clip("sh010", (media / "human_capture.jpg").as_uri()))
    code, records = _check_json("--timeline", _write(tmp_path, [v1]), media)
    assert code == 1  # the folder holds an AI file the cut does not use: still gated
    assert sorted(Path(r["path"]).name for r in records) == ["ai_iptc_generated.jpg",
                                                              "human_capture.jpg"]
    used = next(r for r in records if r["path"].endswith("human_capture.jpg"))
    assert used["clips"][0]["name"] == "sh010"
    rows = json.loads(run("ledger", "list", "--json").stdout)
    assert len(rows) == 2  # recorded once each
