#!/usr/bin/env python3
"""Rebuild the sample film delivery under sample_media/film/ from nothing: the OpenEXR
package, numpy and ffmpeg only (FILM-FORMATS.md says how ExifTool reads each format).

- plate_exr/: a 12-frame EXR plate written by a compositing app, with frame 1007 replaced by
  a generated frame whose header carries ComfyUI's prompt graph and workflow;
- comp_exr/: an 8-frame EXR comp whose frame 1004 carries an A1111 inpaint record;
- scan_dpx/: a 6-frame DPX film scan (scanner, project and copyright in the header);
- editorial/: two ProRes MOVs, one whose QuickTime comment says a generator made it;
- audio/: two Broadcast WAVs (bext), a recorder's dialogue and a generated voice;
- imf/: two minimal IMF packages (ASSETMAP, PKL, CPL, MXF track files): in EP101 one video
  track file names a generator as the application that wrote it; in EP102 a track file was
  altered after its packing list was written.

Output is deterministic (fixed seeds, ffmpeg bitexact, UUIDs derived from names). The
per-file kinds go into EXPECTED.json as ``film/...`` entries and the units (sequences,
packages) under its ``units`` key; run after make_samples.py, which rewrites EXPECTED.json:
python sample_media/make_film_samples.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import OpenEXR

HERE = Path(__file__).resolve().parent
FILM = "film"
SIZE = (64, 36)
NUKE = "Foundry Nuke 15.1v3"
COMFY_PROMPT = json.dumps({
    "3": {"class_type": "KSampler", "inputs": {"seed": 918273, "steps": 24, "cfg": 6.0,
                                               "sampler_name": "dpmpp_2m", "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "sdxl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode",
          "inputs": {"text": "storm clouds over a harbour, dusk", "clip": ["4", 1]}},
    "9": {"class_type": "SaveEXR", "inputs": {"filename_prefix": "sh010_plate"}}})
COMFY_WORKFLOW = json.dumps({"last_node_id": 9, "nodes": [
    {"id": 3, "type": "KSampler"}, {"id": 4, "type": "CheckpointLoaderSimple"},
    {"id": 6, "type": "CLIPTextEncode"}, {"id": 9, "type": "SaveEXR"}], "links": []})
A1111_INPAINT = ("replace the sky with storm clouds\nNegative prompt: text, watermark\n"
                 "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3141592, "
                 "Size: 64x36, Model hash: 31e35c80fc, Denoising strength: 0.45, "
                 "Mask blur: 4, Inpaint area: Only masked")
NAMESPACE = uuid.UUID("6f1d3b9e-3c57-4a38-9b0e-5a3c2f7d9e10")  # provgate's sample media


def ffmpeg(*args: str) -> None:
    """ffmpeg with ``args``, the output file last; bitexact output (no random UMIDs, no
    version strings), so every run writes the same bytes."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args[:-1],
                    "-fflags", "+bitexact", args[-1]], check=True)


def urn(name: str) -> str:
    """A stable UUID for a package part: the same name gives the same id on every run."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, name)}"


# -- image sequences ---------------------------------------------------------------------------

def picture(seed: int, frame: int) -> np.ndarray:
    """A small plate frame: a gradient drifting with the frame, and a little grain."""
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed * 10_000 + frame)
    base = np.stack([(x + frame) / w, y / h, 0.5 + 0.25 * np.sin((x + y + frame) / 9)], axis=-1)
    return (base + rng.normal(0, 0.01, base.shape)).astype(np.float16)


def exr(path: Path, pixels: np.ndarray, attributes: dict[str, str]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              **attributes}
    with OpenEXR.File(header, {"RGB": pixels}) as f:
        f.write(str(path))


def dpx_text(data: bytearray, offset: int, size: int, text: str) -> None:
    """Set a DPX header text field (SMPTE ST 268: NUL-padded ASCII at a fixed offset)."""
    raw = text.encode("ascii")
    if len(raw) >= size:
        raise ValueError(f"{text!r} does not fit in {size} bytes")
    data[offset:offset + size] = raw.ljust(size, b"\0")


# ST 268 header fields, (offset, size): generic file header, image source header, and the
# motion-picture film header a scanner fills in
DPX_CREATOR, DPX_PROJECT, DPX_COPYRIGHT = (160, 100), (260, 200), (460, 200)
DPX_SOURCE_FILE, DPX_INPUT_DEVICE = (1432, 100), (1556, 32)
DPX_FILM_FORMAT, DPX_FRAME_ID, DPX_SLATE = (1680, 32), (1732, 32), (1764, 100)
DPX_GENERIC, DPX_INDUSTRY = 1664, 384   # header sizes: ffmpeg writes the generic one only


def scanner_dpx(ffmpeg_dpx: bytes, frame: int, fps: int = 24) -> bytes:
    """A DPX as a film scanner writes it, from ffmpeg's (little-endian, 1664-byte header):
    the industry headers (film and television) inserted before the image data, with the
    offsets and sizes that point past them, and the scanner's text fields and timecode."""
    le = struct.Struct("<I")
    if ffmpeg_dpx[:4] != b"XPDS" or le.unpack_from(ffmpeg_dpx, 4)[0] != DPX_GENERIC:
        raise ValueError("not the DPX ffmpeg writes (little-endian, 1664-byte header)")
    # undefined: numbers all ones, text and reserved bytes NUL (ST 268)
    industry = bytearray(b"\xff" * DPX_INDUSTRY)
    for start, end in ((0, 48), (68, 256), (308, 384)):
        industry[start:end] = bytes(end - start)
    data = bytearray(ffmpeg_dpx[:DPX_GENERIC] + industry + ffmpeg_dpx[DPX_GENERIC:])
    offset = DPX_GENERIC + DPX_INDUSTRY
    le.pack_into(data, 4, offset)            # image data offset
    le.pack_into(data, 16, len(data))        # file size
    le.pack_into(data, 24, DPX_GENERIC)      # generic header size
    le.pack_into(data, 28, DPX_INDUSTRY)     # industry header size
    le.pack_into(data, 32, 0)                # user data size
    le.pack_into(data, 808, offset)          # image element 1 data offset
    for field, text in ((DPX_CREATOR, "ARRISCAN XT 2.4"), (DPX_PROJECT, "SHOW EP101 reel 1"),
                        (DPX_COPYRIGHT, "(c) 2026 Example Pictures"),
                        (DPX_SOURCE_FILE, f"A001R1_{frame:07d}"),
                        (DPX_INPUT_DEVICE, "ARRISCAN XT"), (DPX_FILM_FORMAT, "Super 35"),
                        (DPX_FRAME_ID, f"A001R1 {frame}"), (DPX_SLATE, "SC01 TK3 A-CAM")):
        dpx_text(data, *field, text)
    struct.pack_into("<f", data, 1724, float(fps))   # film frame rate
    struct.pack_into("<f", data, 1940, float(fps))   # television frame rate
    secs, ff = divmod(frame, fps)
    bcd = "".join(f"{v:02d}" for v in (secs // 3600 % 24, secs // 60 % 60, secs % 60, ff))
    le.pack_into(data, 1920, int(bcd, 16))   # SMPTE timecode, BCD: the frame number's
    le.pack_into(data, 1924, 0)              # user bits
    return bytes(data)


# -- IMF ----------------------------------------------------------------------------------------

def b64sha1(path: Path) -> str:
    return base64.b64encode(hashlib.sha1(path.read_bytes()).digest()).decode()


def imf_video(path: Path, colour: str, generator: tuple[str, str, str] | None) -> None:
    """A JPEG 2000 picture track file, OP1a, 12 frames at 24 fps; ``generator`` (company,
    product, version) is written into the MXF identification set instead of ffmpeg's own."""
    ident: list[str] = []
    if generator:
        company, product, version = generator
        ident = ["-metadata", f"company_name={company}", "-metadata", f"product_name={product}",
                 "-metadata", f"product_version={version}"]
    ffmpeg("-f", "lavfi", "-i", f"color=c={colour}:s={SIZE[0]}x{SIZE[1]}:r=24:d=0.5",
           "-c:v", "jpeg2000", "-pix_fmt", "yuv422p10le", "-flags:v", "+bitexact", *ident,
           "-f", "mxf", str(path))


def imf_audio(path: Path, tone: int) -> None:
    """A mono PCM sound track file (OP-Atom, the one audio layout ffmpeg writes alone), 1 s."""
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=48000:duration=1",
           "-c:a", "pcm_s16le", "-ac", "1", "-f", "mxf_opatom", str(path))


def imf_package(folder: Path, title: str, colours: tuple[str, str], tone: int,
                generator_reel: int | None = None) -> dict[str, Path]:
    """A minimal IMF package (ST 2067): two picture track files one after the other in one
    segment, one sound track file under them (no essence descriptors, no signature: what
    provgate reads, not what Photon validates). Returns its files by role: ``reel1``,
    ``reel2``, ``audio`` (track files), ``cpl``, ``pkl``, ``assetmap``."""
    folder.mkdir(parents=True)
    ids = {part: urn(f"{title}/{part}") for part in
           ("cpl", "pkl", "assetmap", "reel1", "reel2", "audio", "segment", "image_seq",
            "audio_seq", "image_track", "audio_track", "res1", "res2", "res3")}
    files = {role: folder / f"{'AUDIO' if role == 'audio' else 'VIDEO'}_{ids[role][9:]}.mxf"
             for role in ("reel1", "reel2", "audio")}
    runway = ("Runway AI, Inc.", "Runway Gen-3 Alpha", "3.0.1")
    imf_video(files["reel1"], colours[0], runway if generator_reel == 1 else None)
    imf_video(files["reel2"], colours[1], runway if generator_reel == 2 else None)
    imf_audio(files["audio"], tone)

    def resource(rid: str, track: str, duration: int, rate: str) -> str:
        return (f'<Resource xsi:type="TrackFileResourceType"><Id>{ids[rid]}</Id>'
                f"<EditRate>{rate}</EditRate><IntrinsicDuration>{duration}</IntrinsicDuration>"
                f"<EntryPoint>0</EntryPoint><SourceDuration>{duration}</SourceDuration>"
                f"<RepeatCount>1</RepeatCount><TrackFileId>{ids[track]}</TrackFileId>"
                "</Resource>")

    cpl = folder / f"CPL_{ids['cpl'][9:]}.xml"
    cpl.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<CompositionPlaylist xmlns="http://www.smpte-ra.org/schemas/2067-3/2016" '
        'xmlns:cc="http://www.smpte-ra.org/schemas/2067-2/2016" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"  <Id>{ids['cpl']}</Id>\n  <Annotation>{title} sample composition</Annotation>\n"
        "  <IssueDate>2026-03-14T12:00:00Z</IssueDate>\n  <Issuer>Example Post</Issuer>\n"
        "  <Creator>Example Post mastering</Creator>\n"
        "  <ContentOriginator>Example Pictures</ContentOriginator>\n"
        f"  <ContentTitle>{title}</ContentTitle>\n  <ContentKind>episode</ContentKind>\n"
        "  <CompositionTimecode><TimecodeDropFrame>false</TimecodeDropFrame>"
        "<TimecodeRate>24</TimecodeRate><TimecodeStartAddress>01:00:00:00"
        "</TimecodeStartAddress></CompositionTimecode>\n"
        "  <EditRate>24 1</EditRate>\n  <SegmentList><Segment>"
        f"<Id>{ids['segment']}</Id><SequenceList>\n"
        f"    <cc:MainImageSequence><Id>{ids['image_seq']}</Id>"
        f"<TrackId>{ids['image_track']}</TrackId><ResourceList>"
        + resource("res1", "reel1", 12, "24 1") + resource("res2", "reel2", 12, "24 1")
        + "</ResourceList></cc:MainImageSequence>\n"
        f"    <cc:MainAudioSequence><Id>{ids['audio_seq']}</Id>"
        f"<TrackId>{ids['audio_track']}</TrackId><ResourceList>"
        + resource("res3", "audio", 48000, "48000 1")
        + "</ResourceList></cc:MainAudioSequence>\n"
        "  </SequenceList></Segment></SegmentList>\n</CompositionPlaylist>\n")

    listed = [(ids["cpl"], cpl, "text/xml"), *((ids[r], files[r], "application/mxf")
                                              for r in ("reel1", "reel2", "audio"))]
    assets = "".join(
        f"    <Asset><Id>{aid}</Id><Hash>{b64sha1(p)}</Hash><Size>{p.stat().st_size}</Size>"
        f"<Type>{kind}</Type><OriginalFileName>{p.name}</OriginalFileName>"
        '<HashAlgorithm Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></Asset>\n'
        for aid, p, kind in listed)
    pkl = folder / f"PKL_{ids['pkl'][9:]}.xml"
    pkl.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<PackingList xmlns="http://www.smpte-ra.org/schemas/2067-2/2016/PKL">\n'
        f"  <Id>{ids['pkl']}</Id>\n  <IssueDate>2026-03-14T12:00:00Z</IssueDate>\n"
        "  <Issuer>Example Post</Issuer>\n  <Creator>Example Post mastering</Creator>\n"
        f"  <AssetList>\n{assets}  </AssetList>\n</PackingList>\n")

    mapped = [(ids["pkl"], pkl, True), *((aid, p, False) for aid, p, _ in listed)]
    entries = "".join(
        f"    <Asset><Id>{aid}</Id>{'<PackingList>true</PackingList>' if is_pkl else ''}"
        f"<ChunkList><Chunk><Path>{p.name}</Path><VolumeIndex>1</VolumeIndex>"
        f"<Offset>0</Offset><Length>{p.stat().st_size}</Length></Chunk></ChunkList></Asset>\n"
        for aid, p, is_pkl in mapped)
    assetmap = folder / "ASSETMAP.xml"
    assetmap.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<AssetMap xmlns="http://www.smpte-ra.org/schemas/429-9/2007/AM">\n'
        f"  <Id>{ids['assetmap']}</Id>\n  <Creator>Example Post mastering</Creator>\n"
        "  <VolumeCount>1</VolumeCount>\n  <IssueDate>2026-03-14T12:00:00Z</IssueDate>\n"
        f"  <Issuer>Example Post</Issuer>\n  <AssetList>\n{entries}  </AssetList>\n"
        "</AssetMap>\n")
    return {**files, "cpl": cpl, "pkl": pkl, "assetmap": assetmap}


# -- the delivery -------------------------------------------------------------------------------

def build(out: Path) -> tuple[dict[str, str], list[dict[str, object]]]:
    """Write the film samples under ``out`` (the folder that becomes sample_media/film);
    returns the per-file kinds (paths from sample_media/) and the units."""
    expected: dict[str, str] = {}
    units: list[dict[str, object]] = []

    def add(rel: str, kind: str) -> Path:
        expected[f"{FILM}/{rel}"] = kind
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # a plate with one generated frame spliced in: a compositing app's EXR says nothing of
    # provenance (unknown: never a clean bill); the spliced frame carries ComfyUI's record
    for frame in range(1001, 1013):
        attrs = {"software": NUKE, "owner": "Example VFX", "comments": "sh010 plate, denoised"}
        kind = "unknown"
        if frame == 1007:
            attrs = {"software": "ComfyUI", "prompt": COMFY_PROMPT, "workflow": COMFY_WORKFLOW}
            kind = "ai_generated"
        exr(add(f"plate_exr/sh010_plate.{frame}.exr", kind),
            picture(1 if frame != 1007 else 2, frame), attrs)
    units.append({"unit": "sequence", "pattern": f"{FILM}/plate_exr/sh010_plate.####.exr",
                  "frames": "1001-1012", "kind": "ai_generated",
                  "frames_with_evidence": "1007"})

    # a comp whose frame 1004 went through an A1111 inpaint pass and kept its record
    for frame in range(1001, 1009):
        attrs = {"software": NUKE, "owner": "Example VFX", "comments": "sh020 comp v012"}
        kind = "unknown"
        if frame == 1004:
            attrs["parameters"] = A1111_INPAINT
            kind = "ai_generated"
        exr(add(f"comp_exr/sh020_comp.{frame}.exr", kind), picture(3, frame), attrs)
    units.append({"unit": "sequence", "pattern": f"{FILM}/comp_exr/sh020_comp.####.exr",
                  "frames": "1001-1008", "kind": "ai_generated",
                  "frames_with_evidence": "1004"})

    # a film scan: frames numbered from the timecode (86400 = 01:00:00:00 at 24 fps), 7 digits,
    # 10-bit DPX from ffmpeg given the scanner's headers (ExifTool cannot write DPX)
    scan = out / "scan_dpx"
    scan.mkdir()
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={SIZE[0]}x{SIZE[1]}:r=24",
           "-frames:v", "6", "-pix_fmt", "gbrp10le", "-flags:v", "+bitexact",
           "-start_number", "86400", str(scan / "sc01_scan_%07d.dpx"))
    for frame in range(86400, 86406):
        path = add(f"scan_dpx/sc01_scan_{frame:07d}.dpx", "unknown")
        path.write_bytes(scanner_dpx(path.read_bytes(), frame))
    units.append({"unit": "sequence", "pattern": f"{FILM}/scan_dpx/sc01_scan_#######.dpx",
                  "frames": "86400-86405", "kind": "unknown", "frames_with_evidence": ""})

    # editorial ProRes: one the generator's text names as its maker, one plain export
    prores = ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le",
              "-vendor", "apl0", "-flags:v", "+bitexact", "-frames:v", "12"]
    ffmpeg("-f", "lavfi", "-i", f"testsrc=s={SIZE[0]}x{SIZE[1]}:r=24", *prores,
           "-metadata", "comment=Generated with Runway Gen-3 Alpha",
           str(add("editorial/sh030_prores.mov", "ai_generated")))
    ffmpeg("-f", "lavfi", "-i", f"smptebars=s={SIZE[0]}x{SIZE[1]}:r=24", *prores,
           "-metadata", "title=SH040 v003 editorial reference",
           "-metadata", "comment=conformed from camera originals A001-A004",
           str(add("editorial/sh040_prores.mov", "unknown")))

    # Broadcast WAV: a production recorder's bext, and a voice the editor generated
    bwf = ["-c:a", "pcm_s24le", "-ar", "48000", "-ac", "1", "-write_bext", "1",
           "-metadata", "origination_date=2026-03-14", "-metadata", "origination_time=10:21:05"]
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000:duration=0.5", *bwf,
           "-metadata", "originator=Sound Devices 888",
           "-metadata", "originator_reference=SD888-0030-0002",
           "-metadata", "description=sc30 tk2 boom, dialogue",
           "-metadata", "coding_history=A=PCM,F=48000,W=24,M=mono,T=Sound Devices 888",
           str(add("audio/sh030_dialogue.wav", "unknown")))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=0.5", *bwf,
           "-metadata", "originator=Pro Tools",
           "-metadata", "description=temp ADR sc50, generated with ElevenLabs Multilingual v2",
           str(add("audio/sh050_voice.wav", "ai_generated")))

    # IMF: EP101 whole, its second picture track file written by a generator; EP102 whole
    # but for a track file altered after its PKL was written (same size, other bytes)
    ep101 = imf_package(out / "imf" / "SHOW_EP101_IMF", "SHOW_EP101", ("0x304050", "0x503040"),
                        1000, generator_reel=2)
    ep102 = imf_package(out / "imf" / "SHOW_EP102_IMF_TAMPERED", "SHOW_EP102",
                        ("0x405030", "0x354535"), 800)
    altered = ep102["reel2"]
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF   # inside the picture essence
    altered.write_bytes(bytes(data))
    for name, files, integrity, kind in (("SHOW_EP101_IMF", ep101, "pass", "ai_generated"),
                                         ("SHOW_EP102_IMF_TAMPERED", ep102, "hold", "unknown")):
        folder = f"{FILM}/imf/{name}"
        for role in ("reel1", "reel2", "audio"):
            generated = files is ep101 and role == "reel2"
            expected[f"{folder}/{files[role].name}"] = "ai_generated" if generated else "unknown"
        units.append({
            "unit": "imf", "path": folder, "title": name[:10], "edit_rate": "24",
            "integrity": integrity, "kind": kind,
            "paperwork": sorted(files[r].name for r in ("assetmap", "pkl", "cpl")),
            "track_files": [files[r].name for r in ("reel1", "reel2", "audio")],
            "record_timecodes": {files["reel1"].name: "01:00:00:00",
                                 files["reel2"].name: "01:00:00:12",
                                 files["audio"].name: "01:00:00:00"},
            "evidence_in": [files["reel2"].name] if files is ep101 else [],
            "altered": [altered.name] if files is ep102 else []})
    return expected, units


def main() -> int:
    if not shutil.which("ffmpeg"):
        print("make_film_samples: ffmpeg is needed to rebuild the film samples", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / FILM
        out.mkdir()
        expected, units = build(out)
        shutil.rmtree(HERE / FILM, ignore_errors=True)
        shutil.copytree(out, HERE / FILM)
    path = HERE / "EXPECTED.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    files = {k: v for k, v in old.items() if k != "units" and not k.startswith(f"{FILM}/")}
    files.update(expected)
    path.write_text(json.dumps({**dict(sorted(files.items())), "units": units}, indent=2) + "\n")
    print(f"make_film_samples: wrote {len(expected)} film samples in {len(units)} units to "
          f"{HERE / FILM} and EXPECTED.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
